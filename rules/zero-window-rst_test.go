package rules

import (
	"strings"
	"testing"
	"time"

	"wiremortem/flows"
)

const (
	agent     = "172.28.72.119:63132"
	nginxAddr = "172.28.72.117:443"
)

// slowReader is the healthy twin of the zero-window rules: a consumer that
// reads slowly under a bulk transfer, closing its window for 50 ms at a
// time, then the connection closes normally.
func slowReader(id int) *flows.Conversation {
	b := conv(id, agent, nginxAddr).handshake(0)
	for i := range 20 {
		d := time.Duration(i)*500*ms + 100*ms
		b.data(flows.Server, d, 65536).zeroWindow(flows.Client, d+ms, d+51*ms, 0, 65536)
	}
	return b.data(flows.Server, 11*s, 1000).fin(flows.Server, 11*s, ms).fin(flows.Client, 11*s+5*ms, -1).done()
}

func TestZeroWindowRST(t *testing.T) {
	tests := []struct {
		name    string
		in      *Input
		want    []string
		summary string
		cause   string // a fragment of the second cause
	}{
		{
			// Seed 001: the agent stops calling recv(), nginx probes, and
			// after send_timeout (60 s) resets the connection.
			name: "the sender resets after its write timeout",
			in: input(80*s, conv(1, agent, nginxAddr).handshake(0).data(flows.Server, 9*s, 108528).
				zeroWindow(flows.Client, 10*s, -1, 9, 108528).rst(flows.Server, 70*s, 108528).done()),
			want:    []string{"high high: " + agent + ">" + nginxAddr},
			summary: "Client 172.28.72.119:63132 stopped reading: it advertised a zero window to 172.28.72.117:443 for 60.0 s (9 probes, 108,528 bytes waiting), then the server reset the connection.",
			cause:   "matches nginx's 60 s defaults",
		},
		{
			name: "the reader resets with unread data",
			in: input(80*s, conv(1, agent, nginxAddr).handshake(0).data(flows.Server, 9*s, 4096).
				zeroWindow(flows.Client, 10*s, -1, 3, 4096).rst(flows.Client, 13*s, 0).done()),
			want:    []string{"high high: " + agent + ">" + nginxAddr},
			summary: "Client 172.28.72.119:63132 stopped reading: it advertised a zero window to 172.28.72.117:443 for 3.0 s (3 probes, 4,096 bytes waiting), then it reset the connection itself.",
			cause:   "closed its socket with unread data",
		},
		{
			name: "a reset soon after the window reopened",
			in: input(80*s, conv(1, agent, nginxAddr).handshake(0).data(flows.Server, 9*s, 4096).
				zeroWindow(flows.Client, 10*s, 12*s, 2, 4096).rst(flows.Server, 14*s, 100).done()),
			want:    []string{"high high: " + agent + ">" + nginxAddr},
			summary: "then the server reset the connection 2.0 s after the window reopened.",
			cause:   "A write timeout in the server's application expired",
		},
		{
			name: "healthy twin: a slow but reading consumer",
			in:   input(20*s, slowReader(1)),
		},
		{
			name: "a reset long after the window reopened is another story",
			in: input(80*s, conv(1, agent, nginxAddr).handshake(0).data(flows.Server, 9*s, 4096).
				zeroWindow(flows.Client, 10*s, 12*s, 2, 4096).rst(flows.Server, 40*s, 100).done()),
		},
		{
			name: "a brief zero window without probes does not count",
			in: input(80*s, conv(1, agent, nginxAddr).handshake(0).data(flows.Server, 9*s, 4096).
				zeroWindow(flows.Client, 10*s, -1, 0, 4096).rst(flows.Client, 10*s+200*ms, 0).done()),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runRule(t, "zero-window-rst", tt.in)
			if len(got) != len(tt.want) {
				t.Fatalf("%d incidents, want %d: %+v", len(got), len(tt.want), got)
			}
			for i, inc := range got {
				checkIncident(t, inc)
				if g := inc.Severity.String() + " " + inc.Confidence + ": " + flowSet(inc); g != tt.want[i] {
					t.Errorf("got %s\nwant %s", g, tt.want[i])
				}
				if !strings.Contains(inc.Summary, tt.summary) {
					t.Errorf("summary\n got %q\nwant %q", inc.Summary, tt.summary)
				}
				if !strings.HasPrefix(inc.Causes[0].Text, "The client's application stopped reading") || !strings.Contains(inc.Causes[1].Text, tt.cause) {
					t.Errorf("causes %+v", inc.Causes)
				}
			}
		})
	}
}
