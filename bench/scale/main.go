// Command scale writes a large capture made of copies of real conversations
// (internal/scale): it reads seed captures (made by the real Linux stack,
// e.g. by the lab), and replays their packets over and over with fresh
// client addresses and shifted times, interleaving copies so that a chosen
// number of conversations are live at once.
//
//	go run ./bench/scale -o big.pcap -size 2GB -concurrent 10000 -stretch 1000 seed1.pcap seed2.pcap
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"wiremortem/internal/scale"
)

func main() {
	out := flag.String("o", "", "output pcap `file`")
	sizeFlag := flag.String("size", "500MB", "stop after writing this much (e.g. 500MB, 2GB)")
	concurrent := flag.Int("concurrent", 1000, "conversations live at once")
	stretch := flag.Float64("stretch", 1, "multiply the seeds' packet times by this: loopback conversations last milliseconds, so 1000 makes a 4 ms conversation last 4 s and spreads the copies over real time, as a busy server's traffic is")
	flag.Parse()
	if *out == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: scale -o OUT.pcap [-size 500MB] [-concurrent N] SEED.pcap...")
		os.Exit(2)
	}
	size, err := parseSize(*sizeFlag)
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(2)
	}
	var seeds []scale.Seed
	for _, p := range flag.Args() {
		s, err := scale.Load(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, "scale:", err)
			os.Exit(1)
		}
		seeds = append(seeds, s...)
	}
	if len(seeds) == 0 {
		fmt.Fprintln(os.Stderr, "scale: no IPv4 Ethernet TCP conversation in the seeds")
		os.Exit(1)
	}
	if *stretch <= 0 {
		fmt.Fprintln(os.Stderr, "scale: -stretch must be positive")
		os.Exit(2)
	}
	for i := range seeds {
		seeds[i].Stretch(*stretch)
	}
	res, err := scale.Write(*out, seeds, scale.Options{Size: size, Concurrent: *concurrent})
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "scale: wrote %d MB, %d conversations over %s of capture time\n", res.Bytes>>20, res.Conversations, res.Span.Round(time.Millisecond))
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.m
			break
		}
	}
	n, err := strconv.ParseFloat(s, 64)
	return int64(n * float64(mult)), err
}
