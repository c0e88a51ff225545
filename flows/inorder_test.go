package flows

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"wiremortem/evidence"
	"wiremortem/flows/capture"
	"wiremortem/internal/pcaptest"
	"wiremortem/internal/testenv"
)

// callSink records every call a sink gets, with the packet behind each
// byte.
type callSink struct{ calls []string }

func (s *callSink) Data(from Side, b []byte, loc evidence.Locator) {
	at := make([]evidence.Stamp, len(b))
	for i := range b {
		at[i] = loc.At(i)
	}
	s.calls = append(s.calls, fmt.Sprintf("data %v %q %v", from, b, at))
}
func (s *callSink) Gap(from Side, missing int, at evidence.Stamp) {
	s.calls = append(s.calls, fmt.Sprintf("gap %v %d %v", from, missing, at))
}
func (s *callSink) End(from Side, at evidence.Stamp) {
	s.calls = append(s.calls, fmt.Sprintf("end %v %v", from, at))
}
func (s *callSink) Done() bool { return false }

// TestInOrderPath: on real captures, the sinks get the same calls, with
// the same bytes and the same packet behind each byte, whether in-order
// bytes bypass gopacket's reassembly or not, and most packets with data
// do bypass it. The captures hold handshakes, FINs and RSTs, a server
// that never answers, retransmissions after a zero window, and
// conversations that begin mid-stream; analysis's
// TestInOrderPathGivesTheSameDocument compares whole documents on every
// lab and corpus capture.
func TestInOrderPath(t *testing.T) {
	for _, name := range []string{"ws-chatty", "ws-deflate", "nginx-proxy", "zero-window", "ws-no-101", "close-wait", "idle-timeout"} {
		t.Run(name, func(t *testing.T) {
			packets := pcaptest.Read(t, filepath.Join(testenv.RepoRoot(), "testdata", "captures", name, "capture.pcap"))
			want, none := sinkCalls(t, packets, true)
			got, inOrder := sinkCalls(t, packets, false)
			if none != 0 {
				t.Errorf("%d packets took the in-order path with ReassembleAll", none)
			}
			if d := callDifference(got, want); d != "" {
				t.Fatal(d)
			}
			t.Logf("%d calls, %d packets on the in-order path", len(want), inOrder)
			if inOrder == 0 || (name == "ws-chatty" && inOrder < len(want)*9/10) {
				t.Errorf("%d packets took the in-order path, for %d calls", inOrder, len(want))
			}
		})
	}
}

// sinkCalls tracks packets with or without the in-order path and returns
// every call the sinks got, then the tracker's counters, and how many
// packets took the in-order path.
func sinkCalls(t *testing.T, packets []capture.Packet, reassembleAll bool) ([]string, int) {
	var sinks []*callSink
	tr := NewTracker(Options{
		ReassembleAll: reassembleAll,
		NewSink:       func(*Conversation) Sink { s := &callSink{}; sinks = append(sinks, s); return s },
		OnDone:        func(*Conversation, Sink) {},
	})
	if err := tr.Run(&packetSource{packets: packets}); err != nil {
		t.Fatal(err)
	}
	var calls []string
	for i, s := range sinks {
		for _, c := range s.calls {
			calls = append(calls, fmt.Sprintf("conversation %d: %s", i, c))
		}
	}
	return append(calls, fmt.Sprintf("stats %+v", tr.Stats())), tr.inOrder
}

func callDifference(got, want []string) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("call %d of %d:\n%.600s\nwant:\n%.600s", i, len(want), got[i], want[i])
		}
	}
	if len(got) != len(want) {
		return fmt.Sprintf("%d calls, want %d", len(got), len(want))
	}
	return ""
}

// TestInOrderPathOnDamagedCaptures: real captures damaged the ways
// networks and capture points damage them, at random places (a packet
// moved a few places later, lost, sent twice, cut by the snap length, or
// stamped earlier), give the sinks the same calls and the tracker the
// same counters with the in-order path as without: the hand-over to
// gopacket happens at every kind of packet, at every point of a
// conversation.
func TestInOrderPathOnDamagedCaptures(t *testing.T) {
	var seeds [][]capture.Packet
	for _, name := range []string{"ws-chatty", "ws-deflate", "nginx-proxy", "zero-window", "tcp-clean", "close-wait", "ws-no-101", "syn-refused"} {
		seeds = append(seeds, pcaptest.Read(t, filepath.Join(testenv.RepoRoot(), "testdata", "captures", name, "capture.pcap")))
	}
	rng := rand.New(rand.NewPCG(7, 11))
	handedOver := 0
	for iter := range 400 {
		seed := seeds[iter%len(seeds)]
		packets := slices.Clone(seed)
		var did []string
		for range 1 + rng.IntN(6) {
			i := rng.IntN(len(packets))
			switch kind := rng.IntN(5); kind {
			case 0: // reordered
				j := min(len(packets)-1, i+1+rng.IntN(3))
				p := packets[i]
				copy(packets[i:j], packets[i+1:j+1])
				packets[j] = p
				did = append(did, fmt.Sprintf("moved %d to %d", i, j))
			case 1: // lost
				packets = slices.Delete(packets, i, i+1)
				did = append(did, fmt.Sprintf("dropped %d", i))
			case 2: // retransmitted
				j := min(len(packets), i+1+rng.IntN(5))
				packets = slices.Insert(packets, j, packets[i])
				did = append(did, fmt.Sprintf("copied %d to %d", i, j))
			case 3: // cut by the snap length
				p := packets[i]
				if len(p.Data) > 60 {
					p.Data = p.Data[:54+rng.IntN(len(p.Data)-54)]
					packets[i] = p
					did = append(did, fmt.Sprintf("cut %d", i))
				}
			case 4: // stamped earlier
				packets[i].Time = packets[i].Time.Add(-time.Duration(rng.IntN(2000)) * time.Millisecond)
				did = append(did, fmt.Sprintf("stamped %d earlier", i))
			}
			if len(packets) < 2 {
				break
			}
		}
		want, _ := sinkCalls(t, packets, true)
		got, inOrder := sinkCalls(t, packets, false)
		if d := callDifference(got, want); d != "" {
			t.Fatalf("iteration %d (%v): %s", iter, did, d)
		}
		if inOrder > 0 {
			handedOver++
		}
	}
	if handedOver < 300 {
		t.Errorf("the in-order path took packets in only %d of 400 damaged captures", handedOver)
	}
}
