package rules

import (
	"strings"
	"testing"

	"wiremortem/flows"
)

func TestZeroWindowStall(t *testing.T) {
	tests := []struct {
		name    string
		in      *Input
		want    []string
		summary string
	}{
		{
			name: "a reader that stopped for 4.2 s",
			in: input(30*s, conv(1, agent, nginxAddr).handshake(0).data(flows.Server, 1*s, 65536).
				zeroWindow(flows.Client, 2*s, 6200*ms, 3, 65536).data(flows.Server, 7*s, 100).fin(flows.Client, 8*s, ms).fin(flows.Server, 8*s+2*ms, -1).done()),
			want:    []string{"medium: " + agent + ">" + nginxAddr},
			summary: "Client 172.28.72.119:63132 stopped reading: it held a zero window to 172.28.72.117:443 for 4.2 s (3 probes, 65,536 bytes waiting) and then reopened it.",
		},
		{
			name: "still closed when the capture ended",
			in: input(30*s, conv(1, agent, nginxAddr).handshake(0).data(flows.Server, 1*s, 65536).
				zeroWindow(flows.Client, 10*s, -1, 5, 65536).done()),
			want:    []string{"medium: " + agent + ">" + nginxAddr},
			summary: "for 20.0 s (5 probes, 65,536 bytes waiting) and it was still closed when the capture ended.",
		},
		{
			name: "healthy twin: a slow but reading consumer",
			in:   input(20*s, slowReader(1)),
		},
		{
			name: "a stall that ended in a reset belongs to zero-window-rst",
			in: input(80*s, conv(1, agent, nginxAddr).handshake(0).data(flows.Server, 9*s, 108528).
				zeroWindow(flows.Client, 10*s, -1, 9, 108528).rst(flows.Server, 70*s, 108528).done()),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runRule(t, "zero-window-stall", tt.in)
			if len(got) != len(tt.want) {
				t.Fatalf("%d incidents, want %d: %+v", len(got), len(tt.want), got)
			}
			for i, inc := range got {
				checkIncident(t, inc)
				if g := inc.Severity.String() + ": " + flowSet(inc); g != tt.want[i] {
					t.Errorf("got %s\nwant %s", g, tt.want[i])
				}
				if !strings.Contains(inc.Summary, tt.summary) {
					t.Errorf("summary\n got %q\nwant %q", inc.Summary, tt.summary)
				}
			}
		})
	}
}
