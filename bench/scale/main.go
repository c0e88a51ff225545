// Command scale writes a large capture made of copies of real conversations:
// it reads seed captures (made by the real Linux stack, e.g. by the lab),
// and replays their packets over and over with fresh client addresses and
// ports and shifted times, interleaving copies so that a chosen number of
// conversations are live at once. Checksums are not recomputed: wiremortem,
// tshark and tcptrace (run without checksum checks) do not need them.
//
//	go run ./bench/scale -o big.pcap -size 2GB -concurrent 10000 -stretch 1000 seed1.pcap seed2.pcap
package main

import (
	"bufio"
	"container/heap"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"wiremortem/flows/capture"
)

type seedPacket struct {
	offset time.Duration // since the seed's first packet
	data   []byte        // Ethernet frame
	fromA  bool          // sent by the seed's first-seen endpoint (address A)
	// offsets of the IPv4 source/destination addresses in data
	ipOff int
}

type seed struct {
	packets  []seedPacket
	duration time.Duration
	bytes    int64
}

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
	var seeds []seed
	for _, p := range flag.Args() {
		s, err := loadSeeds(p)
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
		seeds[i].stretch(*stretch)
	}
	if err := write(*out, seeds, size, *concurrent); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
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

// loadSeeds splits a capture into its TCP conversations (IPv4 over
// Ethernet only: enough for benchmarks).
func loadSeeds(path string) ([]seed, error) {
	r, err := capture.Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	byKey := map[string]*seed{}
	first := map[string]time.Time{}
	aAddr := map[string][4]byte{}
	var order []string
	for {
		var p capture.Packet
		if err := r.Next(&p); err == io.EOF {
			break
		} else if err != nil {
			return nil, err
		}
		d := p.Data
		if p.LinkType != layers.LinkTypeEthernet || len(d) < 54 || binary.BigEndian.Uint16(d[12:14]) != 0x0800 || d[23] != 6 {
			continue
		}
		var src, dst [4]byte
		copy(src[:], d[26:30])
		copy(dst[:], d[30:34])
		ihl := int(d[14]&0x0f) * 4
		sp := binary.BigEndian.Uint16(d[14+ihl:])
		dp := binary.BigEndian.Uint16(d[16+ihl:])
		k1, k2 := fmt.Sprint(src, sp), fmt.Sprint(dst, dp)
		if k1 > k2 {
			k1, k2 = k2, k1
		}
		key := k1 + k2
		s := byKey[key]
		if s == nil {
			s = &seed{}
			byKey[key] = s
			first[key] = p.Time
			aAddr[key] = src
			order = append(order, key)
		}
		s.packets = append(s.packets, seedPacket{offset: p.Time.Sub(first[key]), data: append([]byte(nil), d...), fromA: src == aAddr[key], ipOff: 26})
		s.bytes += int64(len(d)) + 16
	}
	var out []seed
	for _, k := range order {
		s := byKey[k]
		s.duration = s.packets[len(s.packets)-1].offset
		out = append(out, *s)
	}
	return out, nil
}

// stretch multiplies the seed's packet times by f.
func (s *seed) stretch(f float64) {
	for i := range s.packets {
		s.packets[i].offset = time.Duration(float64(s.packets[i].offset) * f)
	}
	s.duration = time.Duration(float64(s.duration) * f)
}

// copyState is one replayed copy of a seed conversation.
type copyState struct {
	base             time.Time
	copy, seed, next int
	at               time.Time // time of the next packet to write
}

type copyHeap []*copyState

func (h copyHeap) Len() int           { return len(h) }
func (h copyHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h copyHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *copyHeap) Push(x any)        { *h = append(*h, x.(*copyState)) }
func (h *copyHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// write interleaves copies: copy i starts at i*gap so that about
// `concurrent` copies overlap; copy i's client is 10.x.y.z from i and its
// server 10.200.x.y from the seed's number, so every copy is its own
// 4-tuple.
func write(path string, seeds []seed, size int64, concurrent int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	w := pcapgo.NewWriter(bw)
	if err := w.WriteFileHeader(262144, layers.LinkTypeEthernet); err != nil {
		return err
	}
	var avg time.Duration
	for _, s := range seeds {
		avg += s.duration
	}
	avg /= time.Duration(len(seeds))
	gap := max(avg/time.Duration(max(concurrent, 1)), time.Microsecond)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := &copyHeap{}
	started := 0
	startCopy := func() {
		c := &copyState{base: start.Add(time.Duration(started) * gap), copy: started, seed: started % len(seeds)}
		c.at = c.base
		heap.Push(h, c)
		started++
	}
	for i := 0; i < max(concurrent, 1); i++ {
		startCopy()
	}
	var written int64
	buf := make([]byte, 0, 65536)
	for h.Len() > 0 && written < size {
		c := (*h)[0]
		s := &seeds[c.seed]
		sp := s.packets[c.next]
		buf = append(buf[:0], sp.data...)
		client := [4]byte{10, byte(c.copy >> 16), byte(c.copy >> 8), byte(c.copy)}
		server := [4]byte{10, 200, byte(c.seed >> 8), byte(c.seed)}
		src, dst := client, server
		if !sp.fromA {
			src, dst = server, client
		}
		copy(buf[sp.ipOff:sp.ipOff+4], src[:])
		copy(buf[sp.ipOff+4:sp.ipOff+8], dst[:])
		ci := gopacket.CaptureInfo{Timestamp: c.at, CaptureLength: len(buf), Length: len(buf)}
		if err := w.WritePacket(ci, buf); err != nil {
			return err
		}
		written += int64(len(buf)) + 16
		c.next++
		if c.next == len(s.packets) {
			heap.Pop(h)
			startCopy()
			continue
		}
		c.at = c.base.Add(s.packets[c.next].offset)
		heap.Fix(h, 0)
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	var end time.Time
	if h.Len() > 0 {
		end = (*h)[0].at
	}
	fmt.Fprintf(os.Stderr, "scale: wrote %d MB, %d conversations over %s of capture time\n", written>>20, started-h.Len(), end.Sub(start).Round(time.Millisecond))
	return nil
}
