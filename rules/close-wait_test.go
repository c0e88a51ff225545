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

// TestCloseWaitProvenByLogs: the capture stopped 300 ms after the peer's
// FIN, too soon to call the CLOSE_WAIT a leak; the server's trace or an
// ss snapshot shows the socket still open long after.
func TestCloseWaitProvenByLogs(t *testing.T) {
	const server, peer = "10.0.0.9:9501", "10.0.2.1:50000"
	young := func() *Input {
		return input(1300*ms, conv(1, peer, server).handshake(0).data(flows.Client, 10*ms, 6).fin(flows.Client, 1*s, ms).done())
	}
	// The server binds and listens, accepts the peer, reads its PING,
	// then reads the EOF at the FIN; what follows is the case's.
	const accepted = `500  11:59:59.000000 bind(3, {sa_family=AF_INET, sin_port=htons(9501), sin_addr=inet_addr("0.0.0.0")}, 16) = 0 <0.000010>
500  11:59:59.000100 listen(3, 128) = 0 <0.000010>
500  12:00:00.000200 accept4(3, {sa_family=AF_INET, sin_port=htons(50000), sin_addr=inet_addr("10.0.2.1")}, [16], SOCK_CLOEXEC) = 5 <0.000010>
500  12:00:00.010100 read(5, "PING\r\n", 4096) = 6 <0.000010>
500  12:00:01.000100 read(5, "", 4096) = 0 <0.000010>
`
	const laterAccept = `500  12:00:06.000100 accept4(3, {sa_family=AF_INET, sin_port=htons(50001), sin_addr=inet_addr("10.0.2.1")}, [16], SOCK_CLOEXEC) = 6 <0.000010>
`
	ss := func(at string, recvQ int) logText {
		return logText{"ss", "ss.txt", at + "\nState      Recv-Q Send-Q Local Address:Port  Peer Address:Port Process\n" +
			fmt.Sprintf("CLOSE-WAIT %-6d 0          10.0.0.9:9501     10.0.2.1:50000\n", recvQ)}
	}
	tests := []struct {
		name     string
		logs     []logText
		summary  string // "" when nothing is reported
		cause    string
		evidence string // a fragment some evidence item holds
	}{
		{
			name:     "the trace goes on 5 s without close()",
			logs:     []logText{{"strace", "server.strace", accepted + laterAccept}},
			summary:  "Server 10.0.0.9:9501 stayed in CLOSE_WAIT for 5.0 s after client 10.0.2.1:50000 closed (FIN acknowledged, no FIN back; still open when the capture ended).",
			cause:    "the trace shows it on 1 socket: read() returned 0 and no close() followed",
			evidence: "strace: read(5) returned 0 on the socket from 10.0.2.1:50000 (pid 500): the application saw the FIN; no close(5) followed in the 5.0 s the trace went on",
		},
		{
			name: "the trace ends at the EOF: it proves nothing",
			logs: []logText{{"strace", "server.strace", accepted}},
		},
		{
			name: "the server closes 200 ms after the EOF",
			logs: []logText{{"strace", "server.strace", accepted + "500  12:00:01.200100 close(5) = 0 <0.000010>\n" + laterAccept}},
		},
		{
			name:     "ss still shows it 3 s after the FIN, with bytes unread",
			logs:     []logText{ss("2024-05-01 12:00:04.000000000+00:00", 120)},
			summary:  "Server 10.0.0.9:9501 stayed in CLOSE_WAIT for 3.0 s after client 10.0.2.1:50000 closed",
			cause:    "The application stopped reading these sockets altogether: ss shows 120 bytes still unread in CLOSE_WAIT",
			evidence: "ss: 10.0.0.9:9501 -> 10.0.2.1:50000 still in CLOSE_WAIT 3.0 s after the FIN (Recv-Q 120)",
		},
		{
			name: "ss sees it 500 ms after the FIN: too young",
			logs: []logText{ss("2024-05-01 12:00:01.500000000+00:00", 0)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runRule(t, "close-wait", withLogs(t, young(), tt.logs...))
			if tt.summary == "" {
				if len(got) > 0 {
					t.Fatalf("fired: %q", got[0].Summary)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("%d incidents, want 1", len(got))
			}
			inc := got[0]
			checkIncident(t, inc)
			if !strings.HasPrefix(inc.Summary, tt.summary) {
				t.Errorf("summary\n got %q\nwant %q", inc.Summary, tt.summary)
			}
			var causes, items []string
			for _, c := range inc.Causes {
				causes = append(causes, c.Text)
			}
			for _, e := range inc.Evidence {
				items = append(items, e.What)
			}
			if !strings.Contains(strings.Join(causes, "\n"), tt.cause) {
				t.Errorf("no cause holds %q:\n%s", tt.cause, strings.Join(causes, "\n"))
			}
			if !strings.Contains(strings.Join(items, "\n"), tt.evidence) {
				t.Errorf("no evidence holds %q:\n%s", tt.evidence, strings.Join(items, "\n"))
			}
		})
	}
}
