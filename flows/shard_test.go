package flows

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"wiremortem/flows/capture"
	"wiremortem/internal/testenv"
)

// TestPeekAgreesWithTheDecoder: on every packet of the lab's and the
// public corpus's captures that the sharded reader's fast path accepts,
// the decoder finds a TCP packet with the same endpoints and flags, so
// routing and the listener log see what one tracker sees.
func TestPeekAgreesWithTheDecoder(t *testing.T) {
	var files []string
	for _, root := range []string{filepath.Join(testenv.RepoRoot(), "testdata", "captures"), testenv.Corpus(t, ".")} {
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			switch filepath.Ext(p) {
			case ".pcap", ".pcapng", ".cap", ".trace", ".gz", ".zst":
				files = append(files, p)
			}
			return nil
		})
	}
	dec := newDecoder()
	peeked, total, mutants := 0, 0, 0
	for _, f := range files {
		r, err := capture.Open(f)
		if err != nil {
			continue // not a capture, or damaged from its first byte: tested elsewhere
		}
		for {
			var p capture.Packet
			if err := r.Next(&p); err == io.EOF || err != nil {
				break
			}
			total++
			src, dst, flags, ok := peekIPv4TCP(&p)
			if !ok {
				continue
			}
			peeked++
			var seg segment
			if kind := dec.decode(&p, &seg); kind != kindTCP || seg.src != src || seg.dst != dst || seg.flags != flags {
				t.Fatalf("%s packet %d: peek %v -> %v flags %02x; decoder kind %v %v -> %v flags %02x", f, p.Ref.Packet, src, dst, flags, kind, seg.src, seg.dst, seg.flags)
			}
			// Hostile variants: each byte of the IP and TCP headers
			// changed in turn; where the fast path still accepts the
			// packet, the decoder must agree.
			orig := p.Data
			for k := 14; k < min(len(orig), 14+20+20); k++ {
				for _, x := range []byte{0xff, 0x0f, 0x40, 0x01} {
					mutated := append([]byte(nil), orig...)
					mutated[k] ^= x
					q := p
					q.Data, q.OrigLen = mutated, len(mutated)
					src, dst, flags, ok := peekIPv4TCP(&q)
					if !ok {
						continue
					}
					mutants++
					if kind := dec.decode(&q, &seg); kind != kindTCP || seg.src != src || seg.dst != dst || seg.flags != flags {
						t.Fatalf("%s packet %d, byte %d ^ %02x: peek %v -> %v flags %02x; decoder kind %v %v -> %v flags %02x", f, p.Ref.Packet, k, x, src, dst, flags, kind, seg.src, seg.dst, seg.flags)
					}
				}
			}
		}
		r.Close()
	}
	if peeked < 5000 || peeked == total || mutants < 100000 {
		t.Errorf("the fast path took %d of %d packets: the comparison proves little", peeked, total)
	}
	t.Logf("%d of %d packets through the fast path, and %d altered ones", peeked, total, mutants)
}
