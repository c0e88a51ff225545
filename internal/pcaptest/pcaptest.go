// Package pcaptest reads a capture's packets into memory and writes
// packets back out as a pcap file, for tests that derive a capture from a
// real one (rotated parts, a packet cut out or moved, a clock that steps
// back), and opens captures for tests that track them.
package pcaptest

import (
	"io"
	"os"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/pcapgo"

	"wiremortem/flows/capture"
)

// Read returns every packet of the capture at path, each with its own copy
// of its bytes.
func Read(t testing.TB, path string) []capture.Packet {
	t.Helper()
	r, err := capture.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var pkts []capture.Packet
	for {
		var p capture.Packet
		if err := r.Next(&p); err == io.EOF {
			return pkts
		} else if err != nil {
			t.Fatal(err)
		}
		p.Data = append([]byte(nil), p.Data...)
		pkts = append(pkts, p)
	}
}

// Merge opens the captures at paths (closed when the test ends) and
// merges them as the tracker reads them, telling onDamage where a file is
// damaged.
func Merge(t testing.TB, onDamage func(*capture.Error), paths ...string) *capture.Merger {
	t.Helper()
	var readers []*capture.Reader
	for _, p := range paths {
		r, err := capture.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		readers = append(readers, r)
	}
	return capture.Merge(readers, onDamage)
}

// Write writes pkts, in their order, with their times and wire lengths, as
// a pcap file at path; the link type is the first packet's.
func Write(t testing.TB, path string, pkts []capture.Packet) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	for i, p := range pkts {
		if i == 0 {
			if err := w.WriteFileHeader(262144, p.LinkType); err != nil {
				t.Fatal(err)
			}
		}
		ci := gopacket.CaptureInfo{Timestamp: p.Time, CaptureLength: len(p.Data), Length: max(p.OrigLen, len(p.Data))}
		if err := w.WritePacket(ci, p.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
