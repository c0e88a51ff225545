package rules

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"wiremortem/flows"
)

// idlePeers builds seed 003: n peers open connections to a server, make
// one request each, fall idle and close after 60 s; the server
// acknowledges each FIN and never closes.
func idlePeers(n int, server string) []*flows.Conversation {
	var convs []*flows.Conversation
	for i := 1; i <= n; i++ {
		d := time.Duration(i) * s
		convs = append(convs, conv(i, fmt.Sprintf("10.0.2.%d:50000", i), server).handshake(d).
			data(flows.Client, d+10*ms, 200).data(flows.Server, d+20*ms, 800).
			fin(flows.Client, d+60*s+20*ms, ms).done())
	}
	return convs
}

func TestCloseWait(t *testing.T) {
	const server = "10.0.0.9:9501"
	tests := []struct {
		name    string
		in      *Input
		want    []string
		summary string
		cause   string // a fragment some cause must hold
	}{
		{
			name:    "seed 003: a server that never closes after its idle peers' FIN",
			in:      input(200*s, idlePeers(12, server)...),
			want:    []string{"high: " + flowList(12, "10.0.2.%d:50000>"+server)},
			summary: "Server 10.0.0.9:9501 left 12 connections in CLOSE_WAIT after their peers closed, ages 128 s to 139 s (median 134 s); 12 still open when the capture ended.",
			cause:   "silent for 60.0 s (median) before the peer's FIN, which matches nginx's 60 s defaults",
		},
		{
			name:    "one connection",
			in:      input(200*s, idlePeers(1, server)...),
			want:    []string{"medium: 10.0.2.1:50000>" + server},
			summary: "Server 10.0.0.9:9501 stayed in CLOSE_WAIT for 139 s after client 10.0.2.1:50000 closed (FIN acknowledged, no FIN back; still open when the capture ended).",
			cause:   "did not call close() after read() returned 0",
		},
		{
			name: "a late close",
			in: input(20*s, conv(1, "10.0.2.1:50000", server).handshake(0).data(flows.Client, 10*ms, 100).
				fin(flows.Client, 1*s, ms).fin(flows.Server, 4*s, -1).done()),
			want:    []string{"medium: 10.0.2.1:50000>" + server},
			summary: "Server 10.0.0.9:9501 stayed in CLOSE_WAIT for 3.0 s after client 10.0.2.1:50000 closed (FIN acknowledged, its own FIN came only then).",
			cause:   "The application closes, but late",
		},
		{
			name: "a client host leaking connections to one service",
			in: input(100*s,
				conv(1, "10.0.0.5:41000", "10.0.0.20:6379").handshake(0).fin(flows.Server, 30*s, ms).done(),
				conv(2, "10.0.0.5:41001", "10.0.0.20:6379").handshake(0).fin(flows.Server, 31*s, ms).done()),
			want:    []string{"medium: 10.0.0.5:41000>10.0.0.20:6379 10.0.0.5:41001>10.0.0.20:6379"},
			summary: "Client host 10.0.0.5 (talking to 10.0.0.20:6379) left 2 connections in CLOSE_WAIT after their peers closed, ages 69.0 s to 70.0 s (median 70.0 s); 2 still open when the capture ended.",
			cause:   "The application at 10.0.0.5 did not call close()",
		},
		{
			name: "healthy twin: CLOSE_WAIT closed after 200 ms",
			in: input(20*s, conv(1, "10.0.2.1:50000", server).handshake(0).data(flows.Client, 10*ms, 100).
				fin(flows.Client, 1*s, ms).fin(flows.Server, 1200*ms, -1).done()),
		},
		{
			name: "a deliberate half-close: the server keeps sending its answer",
			in: input(20*s, conv(1, "10.0.2.1:50000", server).handshake(0).data(flows.Client, 10*ms, 100).
				fin(flows.Client, 20*ms, ms).data(flows.Server, 5*s, 1<<20).data(flows.Server, 10*s, 1<<20).
				fin(flows.Server, 10*s+100*ms, -1).done()),
		},
		{
			name: "a FIN never acknowledged (one direction captured)",
			in: input(200*s, conv(1, "10.0.2.1:50000", server).syn(0).data(flows.Client, 10*ms, 100).
				fin(flows.Client, 1*s, -1).done()),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runRule(t, "close-wait", tt.in)
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
				var causes []string
				for _, c := range inc.Causes {
					causes = append(causes, c.Text)
				}
				if !strings.Contains(strings.Join(causes, "\n"), tt.cause) {
					t.Errorf("no cause holds %q:\n%s", tt.cause, strings.Join(causes, "\n"))
				}
			}
		})
	}
}

// flowList writes n flows from a pattern with one %d, sorted as flowSet
// sorts them.
func flowList(n int, pattern string) string {
	var parts []string
	for i := 1; i <= n; i++ {
		parts = append(parts, fmt.Sprintf(pattern, i))
	}
	return sortedJoin(parts)
}
