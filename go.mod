module wiremortem

go 1.26

require (
	github.com/coder/websocket v1.8.14
	github.com/gopacket/gopacket v1.7.7 // indirect
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/spf13/pflag v1.0.10 // indirect
)
