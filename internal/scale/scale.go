// Package scale writes large captures made of copies of real
// conversations, for benchmarks and for tests that need many conversations:
// it splits seed captures (made by the real Linux stack, e.g. by the lab)
// into their TCP conversations and replays them over and over with fresh
// client addresses and shifted times, interleaving copies so that a chosen
// number are live at once. Checksums are not recomputed: wiremortem, tshark
// and tcptrace (run without checksum checks) do not need them.
package scale

import (
	"bufio"
	"container/heap"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"wiremortem/flows/capture"
)

type seedPacket struct {
	offset time.Duration // since the seed's first packet
	data   []byte        // Ethernet frame
	fromA  bool          // sent by the seed's first-seen endpoint (A: address and port)
	// offsets of the IPv4 source/destination addresses in data
	ipOff int
}

// Seed is one conversation to replay.
type Seed struct {
	packets  []seedPacket
	duration time.Duration
	bytes    int64
}

// Load splits a capture into its TCP conversations (IPv4 over
// Ethernet only: enough for benchmarks).
func Load(path string) ([]Seed, error) {
	r, err := capture.Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	byKey := map[string]*Seed{}
	first := map[string]time.Time{}
	// a is each conversation's first sender, address and port: on
	// loopback both ends have the same address.
	a := map[string]string{}
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
		k1src := k1
		if k1 > k2 {
			k1, k2 = k2, k1
		}
		key := k1 + k2
		s := byKey[key]
		if s == nil {
			s = &Seed{}
			byKey[key] = s
			first[key] = p.Time
			a[key] = k1src
			order = append(order, key)
		}
		s.packets = append(s.packets, seedPacket{offset: p.Time.Sub(first[key]), data: append([]byte(nil), d...), fromA: k1src == a[key], ipOff: 26})
		s.bytes += int64(len(d)) + 16
	}
	var out []Seed
	for _, k := range order {
		s := byKey[k]
		s.duration = s.packets[len(s.packets)-1].offset
		out = append(out, *s)
	}
	return out, nil
}

// Clone returns a copy whose times can be changed apart from s's.
func (s Seed) Clone() Seed {
	s.packets = append([]seedPacket(nil), s.packets...)
	return s
}

// Stretch multiplies the seed's packet times by f.
func (s *Seed) Stretch(f float64) {
	for i := range s.packets {
		s.packets[i].offset = time.Duration(float64(s.packets[i].offset) * f)
	}
	s.duration = time.Duration(float64(s.duration) * f)
}

// Options says how much to write and how.
type Options struct {
	// Size stops writing after this many bytes.
	Size int64
	// Concurrent copies are live at once.
	Concurrent int
	// Clients, when positive, is how many client addresses the copies
	// share (copy i uses the (i mod Clients)-th), so that 4-tuples repeat:
	// port reuse. Zero gives every copy its own address.
	Clients int
}

// Result says what was written.
type Result struct {
	Bytes int64
	// Conversations counts the copies written whole.
	Conversations int
	// Span is the capture time from the first packet to the last.
	Span time.Duration
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

// Write interleaves copies: copy i starts at i*gap so that about
// `concurrent` copies overlap; copy i's client is 10.x.y.z from i and its
// server 10.200.x.y from the seed's number, so every copy is its own
// 4-tuple.
func Write(path string, seeds []Seed, o Options) (Result, error) {
	size, concurrent := o.Size, o.Concurrent
	if len(seeds) == 0 {
		return Result{}, fmt.Errorf("no seed conversation")
	}
	f, err := os.Create(path)
	if err != nil {
		return Result{}, err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	w := pcapgo.NewWriter(bw)
	if err := w.WriteFileHeader(262144, layers.LinkTypeEthernet); err != nil {
		return Result{}, err
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
		n := c.copy
		if o.Clients > 0 {
			n %= o.Clients
		}
		client := [4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)}
		server := [4]byte{10, 200, byte(c.seed >> 8), byte(c.seed)}
		src, dst := client, server
		if !sp.fromA {
			src, dst = server, client
		}
		copy(buf[sp.ipOff:sp.ipOff+4], src[:])
		copy(buf[sp.ipOff+4:sp.ipOff+8], dst[:])
		ci := gopacket.CaptureInfo{Timestamp: c.at, CaptureLength: len(buf), Length: len(buf)}
		if err := w.WritePacket(ci, buf); err != nil {
			return Result{}, err
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
		return Result{}, err
	}
	var end time.Time
	if h.Len() > 0 {
		end = (*h)[0].at
	}
	return Result{Bytes: written, Conversations: started - h.Len(), Span: end.Sub(start)}, f.Close()
}
