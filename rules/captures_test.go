package rules

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoopbackCaptures runs every rule over small real captures made by
// the Linux TCP stack on loopback (testdata/lab/make_captures.py says how
// each was made): each planted incident must be found by the right rule
// with the right flows, and the healthy twins must stay quiet. Flows are
// counted rather than listed: their client ports are ephemeral.
func TestLoopbackCaptures(t *testing.T) {
	tests := []struct {
		capture string
		sets    []string
		// want lists "rule severity: N flows to SERVER", in report order.
		want []string
	}{
		// seed 001: the reader stops; the sender probes, then resets.
		{"zero-window-rst.pcap", nil, []string{"zero-window-rst high: 1 flows to 127.0.0.2:47001"}},
		// its healthy twin: a slow reader whose window closes for moments.
		{"slow-reader.pcap", nil, nil},
		{"zero-window-stall.pcap", nil, []string{"zero-window-stall medium: 1 flows to 127.0.0.2:47003"}},
		// seed 003: three peers close, the server never does.
		{"close-wait.pcap", nil, []string{"close-wait medium: 3 flows to 127.0.0.2:47004"}},
		{"close-wait-prompt.pcap", nil, nil},
		// seed 002: backlog 1, no accept(), 20 clients with a 300 ms
		// connect timeout. Two handshakes completed into the accept queue
		// and sit there in CLOSE_WAIT after their clients gave up.
		{"syn-storm.pcap", nil, []string{
			"syn-unanswered high: 18 flows to 127.0.0.2:47006",
			"close-wait medium: 2 flows to 127.0.0.2:47006",
		}},
		{"syn-prompt.pcap", nil, nil},
		{"syn-refused.pcap", nil, []string{"syn-refused low: 2 flows to 127.0.0.2:47008"}},
		{"rst-unread.pcap", nil, []string{"rst-mid-stream medium: 1 flows to 127.0.0.2:47009"}},
		// An idle close after 2 s matches no default timeout...
		{"idle-close.pcap", nil, nil},
		// ...and is found when 2 s is one.
		{"idle-close.pcap", []string{"idle-timeout-teardown.timeouts=2s"}, []string{"idle-timeout-teardown low: 1 flows to 127.0.0.2:47010"}},
	}
	for _, tt := range tests {
		t.Run(tt.capture+strings.Join(tt.sets, ","), func(t *testing.T) {
			in := trackCapture(t, filepath.Join("testdata", tt.capture))
			cfg, _ := NewConfig()
			for _, s := range tt.sets {
				if err := ParseSet(cfg, s); err != nil {
					t.Fatal(err)
				}
			}
			var got []string
			for _, inc := range Evaluate(in, cfg).Incidents {
				checkIncident(t, inc)
				got = append(got, fmt.Sprintf("%s %s: %d flows to %s", inc.Rule, inc.Severity, len(inc.Flows), inc.Flows[0].Server))
				t.Log(inc.Summary)
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("incidents\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}
