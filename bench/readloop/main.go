// Command readloop reads a pcap with gopacket's pcapgo zero-copy loop and
// does nothing else: the floor any capture analyser stands on, measured by
// the benchmark harness beside wiremortem, tshark and tcptrace.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"

	"github.com/gopacket/gopacket/pcapgo"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: readloop FILE.pcap")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "readloop:", err)
		os.Exit(1)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(bufio.NewReaderSize(f, 256<<10))
	if err != nil {
		fmt.Fprintln(os.Stderr, "readloop:", err)
		os.Exit(1)
	}
	var packets, bytes int64
	for {
		data, _, err := r.ZeroCopyReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "readloop:", err)
			os.Exit(1)
		}
		packets++
		bytes += int64(len(data))
	}
	fmt.Println(packets, "packets", bytes, "bytes")
}
