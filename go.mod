module wiremortem

go 1.26

require (
	github.com/go-echarts/go-echarts/v2 v2.6.7
	github.com/gopacket/gopacket v1.7.7
	github.com/klauspost/compress v1.20.3
	github.com/spf13/pflag v1.0.10
	golang.org/x/net v0.55.0
)

require golang.org/x/sys v0.45.0 // indirect
