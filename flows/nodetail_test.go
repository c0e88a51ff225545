package flows

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"wiremortem/flows/capture"
	"wiremortem/internal/testenv"
)

// TestNoDetailChangesOnlyTheDetail: without key packets and window
// samples every other field of every conversation is the same, on every
// lab capture.
func TestNoDetailChangesOnlyTheDetail(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join(testenv.RepoRoot(), "testdata", "captures", "*", "capture.pcap"))
	if len(paths) < 20 {
		t.Fatalf("only %d lab captures", len(paths))
	}
	withDetail := 0
	for _, path := range paths {
		var docs [2][]*Conversation
		for i, noDetail := range []bool{false, true} {
			r, err := capture.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			tr := NewTracker(Options{NoDetail: noDetail, OnDone: func(c *Conversation, _ Sink) { docs[i] = append(docs[i], c) }})
			if err := tr.Run(r); err != nil {
				t.Fatal(err)
			}
			r.Close()
		}
		if len(docs[0]) != len(docs[1]) {
			t.Fatalf("%s: %d conversations with detail, %d without", path, len(docs[0]), len(docs[1]))
		}
		for k, full := range docs[0] {
			lean := docs[1][k]
			if len(lean.KeyPackets) != 0 || lean.KeyPacketsDropped != 0 || len(lean.Windows.Client)+len(lean.Windows.Server) != 0 {
				t.Errorf("%s #%d: detail kept with NoDetail", path, lean.ID)
			}
			if len(full.KeyPackets) > 0 {
				withDetail++
			}
			stripped := *full
			stripped.KeyPackets, stripped.KeyPacketsDropped, stripped.Windows = nil, 0, WindowSeries{}
			a, _ := json.Marshal(&stripped)
			b, _ := json.Marshal(lean)
			if string(a) != string(b) {
				t.Errorf("%s #%d differs beyond the detail:\n%s\n%s", path, full.ID, a, b)
			}
		}
	}
	if withDetail == 0 {
		t.Error("no conversation had key packets: the comparison proved nothing")
	}
}
