package flows

import (
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"wiremortem/evidence"
	"wiremortem/flows/capture"
	"wiremortem/internal/testenv"
)

// fuzzLinkTypes are the link types a fuzz input's first byte per packet
// chooses from.
var fuzzLinkTypes = []layers.LinkType{layers.LinkTypeEthernet, layers.LinkTypeRaw, layers.LinkTypeLinuxSLL, layers.LinkTypeLinuxSLL2, layers.LinkTypeNull}

// packetsFromFuzz splits fuzz input into packets: per packet one byte of
// link type, one byte of time step (ms), two bytes of length, the bytes.
func packetsFromFuzz(data []byte) []capture.Packet {
	var out []capture.Packet
	t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for n := int64(1); len(data) >= 4; n++ {
		lt := fuzzLinkTypes[int(data[0])%len(fuzzLinkTypes)]
		t = t.Add(time.Duration(data[1]) * time.Millisecond)
		size := int(binary.BigEndian.Uint16(data[2:4]))
		data = data[4:]
		size = min(size, len(data))
		out = append(out, capture.Packet{Data: data[:size], Time: t, OrigLen: size, LinkType: lt, Ref: evidence.Ref{Source: "fuzz", Packet: n}})
		data = data[size:]
	}
	return out
}

// encodeForFuzz is the inverse, for seeds made of real packets.
func encodeForFuzz(pkts []capture.Packet) []byte {
	var b []byte
	var last time.Time
	for i, p := range pkts {
		sel := 0
		for j, lt := range fuzzLinkTypes {
			if lt == p.LinkType {
				sel = j
			}
		}
		step := 0
		if i > 0 {
			step = int(min(255, p.Time.Sub(last).Milliseconds()))
		}
		last = p.Time
		b = append(b, byte(sel), byte(step), byte(len(p.Data)>>8), byte(len(p.Data)))
		b = append(b, p.Data...)
	}
	return b
}

// checkingSink checks the Sink contract: no data after End, offsets the
// locator can resolve.
type checkingSink struct {
	t     *testing.T
	ended [2]bool
	bytes [2]int
}

func (s *checkingSink) Data(from Side, b []byte, loc evidence.Locator) {
	if s.ended[from] {
		s.t.Fatalf("data from %s after its end", from)
	}
	s.bytes[from] += len(b)
	if len(b) > 0 {
		loc.At(0)
		loc.At(len(b) - 1)
	}
}
func (s *checkingSink) Gap(from Side, missing int, at evidence.Stamp) {
	if missing <= 0 {
		s.t.Fatalf("gap of %d bytes", missing)
	}
	if s.ended[from] {
		s.t.Fatalf("gap from %s after its end", from)
	}
}
func (s *checkingSink) End(from Side, at evidence.Stamp) {
	if s.ended[from] {
		s.t.Fatalf("end of %s said twice", from)
	}
	s.ended[from] = true
}
func (s *checkingSink) Done() bool { return false }

// FuzzTracker feeds arbitrary packet sequences to the tracker and to
// reassembly: no panic, every packet accounted for, every conversation
// finished exactly once.
func FuzzTracker(f *testing.F) {
	addFuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		defer testenv.Watchdog(3*time.Second, data)()
		done := map[int]bool{}
		tr := NewTracker(Options{
			NewSink: func(*Conversation) Sink { return &checkingSink{t: t} },
			OnDone: func(c *Conversation, _ Sink) {
				if done[c.ID] {
					t.Fatalf("conversation %d finished twice", c.ID)
				}
				done[c.ID] = true
				if c.ConnState == "" {
					t.Fatalf("conversation %d has no conn_state", c.ID)
				}
			},
		})
		pkts := packetsFromFuzz(data)
		for i := range pkts {
			tr.Packet(&pkts[i])
		}
		tr.Finish()
		st := tr.Stats()
		if sum := st.TCP + st.NotTCP + st.Fragments + st.Malformed + st.UnsupportedLink; sum != st.Packets || st.Packets != int64(len(pkts)) {
			t.Fatalf("packets %d, accounted %d, fed %d", st.Packets, sum, len(pkts))
		}
		if int64(len(done)) != st.Conversations {
			t.Fatalf("%d conversations started, %d finished", st.Conversations, len(done))
		}
	})
}

// addFuzzSeeds adds the first packets of public traces of handshakes
// reordered, data missed, FINs retransmitted, WebSocket fragments and
// tunnels as seeds.
func addFuzzSeeds(f *testing.F) {
	for _, rel := range []string{
		"zeek/testing/btest/Traces/tcp/miss_end_data.pcap",
		"zeek/testing/btest/Traces/tcp/handshake-reorder.pcap",
		"zeek/testing/btest/Traces/tcp/fin_retransmission.pcap",
		"zeek/testing/btest/Traces/websocket/two-binary-fragments.pcap",
		"zeek/testing/btest/Traces/mixed-vlan-mpls.pcap",
		"zeek/testing/btest/Traces/pop3/pop3.pcap",
	} {
		path := filepath.Join(testenv.RepoRoot(), "..", "shared", "corpus", rel)
		if _, err := os.Stat(path); err != nil {
			continue
		}
		r, err := capture.Open(path)
		if err != nil {
			f.Fatal(err)
		}
		var pkts []capture.Packet
		for {
			var p capture.Packet
			if err := r.Next(&p); err == io.EOF {
				break
			} else if err != nil {
				f.Fatal(err)
			}
			p.Data = append([]byte(nil), p.Data...)
			pkts = append(pkts, p)
			if len(pkts) == 24 {
				// Small seeds keep the fuzzer's minimisation of new
				// inputs quick.
				break
			}
		}
		r.Close()
		f.Add(encodeForFuzz(pkts))
	}
}

// FuzzInOrderPath: whatever the packets, the sinks get the same calls and
// the tracker the same counters with the in-order path (fastState) as
// with gopacket's reassembly alone.
func FuzzInOrderPath(f *testing.F) {
	addFuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		defer testenv.Watchdog(3*time.Second, data)()
		want, _ := sinkCalls(t, packetsFromFuzz(data), true)
		got, _ := sinkCalls(t, packetsFromFuzz(data), false)
		if d := callDifference(got, want); d != "" {
			t.Fatal(d)
		}
	})
}
