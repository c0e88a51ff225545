package flows

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"wiremortem/evidence"
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
			run := func(all bool) ([]string, int) {
				var sinks []*callSink
				tr := NewTracker(Options{
					ReassembleAll: all,
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
				return calls, tr.inOrder
			}
			want, none := run(true)
			got, inOrder := run(false)
			if none != 0 {
				t.Errorf("%d packets took the in-order path with ReassembleAll", none)
			}
			if !slices.Equal(got, want) {
				for i := range min(len(got), len(want)) {
					if got[i] != want[i] {
						t.Fatalf("call %d of %d:\n%.600s\nwant:\n%.600s", i, len(want), got[i], want[i])
					}
				}
				t.Fatalf("%d calls, want %d", len(got), len(want))
			}
			t.Logf("%d calls, %d packets on the in-order path", len(want), inOrder)
			if inOrder == 0 || (name == "ws-chatty" && inOrder < len(want)*9/10) {
				t.Errorf("%d packets took the in-order path, for %d calls", inOrder, len(want))
			}
		})
	}
}
