package rules

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"wiremortem/flows"
)

func TestIdleTimeoutTeardown(t *testing.T) {
	const client, server = "10.0.0.5:5000", "10.0.0.9:80"
	keepAlive := func(id int, idle time.Duration) *flows.Conversation {
		return conv(id, fmt.Sprintf("10.0.0.%d:5000", id), server).handshake(0).data(flows.Client, 10*ms, 300).data(flows.Server, 20*ms, 900).
			fin(flows.Server, 20*ms+idle, ms).fin(flows.Client, 20*ms+idle+5*ms, -1).done()
	}
	tests := []struct {
		name, want, summary, cause string
		in                         *Input
	}{
		{
			name:    "nginx closes an idle keep-alive connection after 75 s",
			in:      input(100*s, keepAlive(1, 75*s)),
			want:    "low: 10.0.0.1:5000>10.0.0.9:80",
			summary: "Server 10.0.0.9:80 closed its connection with client 10.0.0.1:5000 with FIN after 75.0 s of silence (the last data came from the server), matching a 75s timeout.",
			cause:   "An idle or read timeout of 75s on the server: nginx keepalive_timeout (75 s by default): the connection sat idle",
		},
		{
			name: "a proxy gives up on an upstream that never answered",
			in: input(100*s, conv(1, client, server).handshake(0).data(flows.Client, 10*ms, 300).
				fin(flows.Client, 60*s+10*ms, ms).fin(flows.Server, 60*s+20*ms, -1).done()),
			want:    "medium: " + client + ">" + server,
			summary: "Client 10.0.0.5:5000 closed its connection with server 10.0.0.9:80 with FIN after 60.0 s of silence (the last data came from the client), matching a 60s timeout.",
			cause:   "An idle or read timeout of 60s on the client: nginx's 60 s defaults",
		},
		{
			name:    "a load balancer resets idle connections: one incident per closer and timeout",
			in:      input(400*s, conv(1, client, server).handshake(0).data(flows.Client, 10*ms, 300).data(flows.Server, 20*ms, 900).rst(flows.Server, 350*s, 0).done(), conv(2, "10.0.0.6:5000", server).handshake(5*s).data(flows.Client, 5*s+10*ms, 300).data(flows.Server, 5*s+20*ms, 900).rst(flows.Server, 355*s+500*ms, 0).done()),
			want:    "medium: 10.0.0.5:5000>10.0.0.9:80 10.0.0.6:5000>10.0.0.9:80",
			summary: "Server 10.0.0.9:80 closed 2 connections with RST after 350 s of silence, matching a 350s timeout; in 0 of them the client's last bytes were unanswered.",
			cause:   "A load balancer, NAT or firewall between them dropped the idle connection after 350s",
		},
		{
			name: "healthy twin: a long-lived idle connection that was not closed",
			in: input(600*s, conv(1, client, server).handshake(0).data(flows.Client, 10*ms, 300).data(flows.Server, 20*ms, 900).
				until(60*s).until(120*s).until(180*s).done()),
		},
		{
			name: "healthy twin: a close after 45 s of silence matches no timeout",
			in:   input(100*s, keepAlive(1, 45*s)),
		},
		{
			name: "retransmitting is not idle",
			in: input(100*s, conv(1, client, server).handshake(0).data(flows.Server, 20*ms, 900).
				retransmit(flows.Server, 1*s, 3*s, 7*s, 15*s, 31*s).rst(flows.Server, 60*s+20*ms, 900).done()),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sets := []string{}
			if strings.Contains(tt.name, "load balancer") {
				sets = append(sets, "idle-timeout-teardown.timeouts=60s,350s")
			}
			got := runRule(t, "idle-timeout-teardown", tt.in, sets...)
			if tt.want == "" {
				if len(got) != 0 {
					t.Fatalf("fired: %q", got[0].Summary)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("%d incidents, want 1: %+v", len(got), got)
			}
			inc := got[0]
			checkIncident(t, inc)
			if g := inc.Severity.String() + ": " + flowSet(inc); g != tt.want {
				t.Errorf("got %s, want %s", g, tt.want)
			}
			if inc.Summary != tt.summary {
				t.Errorf("summary\n got %q\nwant %q", inc.Summary, tt.summary)
			}
			if !strings.HasPrefix(inc.Causes[0].Text, tt.cause) && !strings.HasPrefix(inc.Causes[len(inc.Causes)-1].Text, tt.cause) {
				t.Errorf("causes %+v", inc.Causes)
			}
		})
	}
}

// TestIdleTimeoutNamedByNginx: an idle WebSocket through nginx, closed by
// proxy_read_timeout at a value no default names; nginx's error line
// names the timer.
func TestIdleTimeoutNamedByNginx(t *testing.T) {
	const idleLine = "upstream timed out (110: Connection timed out) while proxying upgraded connection"
	webSocket := func(silence time.Duration) []*flows.Conversation {
		end := 11*ms + silence
		client := conv(1, proxyClient, proxyNginx).handshake(0).data(flows.Client, 3*ms, 300).data(flows.Server, 5*ms, 200).
			data(flows.Client, 10*ms, 11).data(flows.Server, 11*ms, 7).fin(flows.Server, end+ms, ms).fin(flows.Client, end+2*ms, -1).done()
		upstream := conv(2, nginxOut, proxyUpstream).handshake(4*ms).data(flows.Client, 6*ms, 300).data(flows.Server, 8*ms, 200).
			data(flows.Client, 10*ms, 11).data(flows.Server, 11*ms, 7).fin(flows.Client, end, ms).fin(flows.Server, end+ms, -1).done()
		return []*flows.Conversation{client, upstream}
	}
	access := logText{"nginx-access", "access.log", nginxAccess(7*s, proxyClient, 7, "GET /ws HTTP/1.1", 101, proxyUpstream, "101", "7.512", "7.512")}
	errorAt := func(d time.Duration, message string) logText {
		return logText{"nginx-error", "error.log", nginxError(d, "info", 7, message, "GET /ws HTTP/1.1", "http://"+proxyUpstream+"/ws")}
	}
	both := sortedJoin([]string{proxyClient + ">" + proxyNginx, nginxOut + ">" + proxyUpstream})
	tests := []struct {
		name string
		in   func(t *testing.T) *Input
		// want is the idle-timeout-teardown incident ("" none), and
		// upstreamTimeout whether upstream-timeout reports too.
		want, summary   string
		upstreamTimeout bool
	}{
		{
			name: "proxy_read_timeout 7.5s",
			in: func(t *testing.T) *Input {
				return withLogs(t, input(20*s, webSocket(7500*ms)...), access, errorAt(7*s, idleLine))
			},
			want:    "medium: " + both,
			summary: "nginx closed the idle WebSocket of client 10.0.0.5:41000 and its own connection to upstream 10.0.0.11:8080 after 7.5 s of silence: proxy_read_timeout fired (upstream timed out (110: Connection timed out) while proxying upgraded connection).",
		},
		{
			name: "without the error log, 7.5 s is no known timeout",
			in:   func(t *testing.T) *Input { return input(20*s, webSocket(7500*ms)...) },
		},
		{
			// A line written long after the close belongs to another
			// moment: upstream-timeout tells it from the logs.
			name: "an error line far from the close",
			in: func(t *testing.T) *Input {
				return withLogs(t, input(30*s, webSocket(7500*ms)...), access, errorAt(15*s, idleLine))
			},
			upstreamTimeout: true,
		},
		{
			// send_timeout towards a client that stopped reading is no idle
			// timer.
			name: "client timed out is a blocked write",
			in: func(t *testing.T) *Input {
				return withLogs(t, input(20*s, webSocket(7500*ms)...), access, errorAt(7*s, "client timed out (110: Connection timed out) while proxying upgraded connection"))
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runRule(t, "idle-timeout-teardown", tt.in(t))
			switch {
			case tt.want == "" && len(got) > 0:
				t.Fatalf("fired: %q", got[0].Summary)
			case tt.want != "" && len(got) != 1:
				t.Fatalf("%d incidents, want 1", len(got))
			case tt.want != "":
				checkIncident(t, got[0])
				if g := got[0].Severity.String() + ": " + flowSet(got[0]); g != tt.want {
					t.Errorf("got %s, want %s", g, tt.want)
				}
				if got[0].Summary != tt.summary {
					t.Errorf("summary\n got %q\nwant %q", got[0].Summary, tt.summary)
				}
			}
			if up := runRule(t, "upstream-timeout", tt.in(t)); (len(up) > 0) != tt.upstreamTimeout {
				t.Errorf("upstream-timeout: %d incidents, want %v", len(up), tt.upstreamTimeout)
			}
		})
	}
}

// TestIdleTimeoutLeavesRequestTimeouts: nginx gave up on an upstream that
// never answered a request after 60 s; the silence matches a default
// timeout, but the error log says it was a request's read timeout, which
// upstream-timeout tells.
func TestIdleTimeoutLeavesRequestTimeouts(t *testing.T) {
	build := func() *Input {
		client := conv(1, proxyClient, proxyNginx).handshake(0).data(flows.Client, 3*ms, 80).
			data(flows.Server, 60*s+10*ms, 300).fin(flows.Client, 60*s+20*ms, ms).done()
		upstream := conv(2, nginxOut, proxyUpstream).handshake(4*ms).data(flows.Client, 6*ms, 300).
			fin(flows.Client, 60*s+6*ms, ms).fin(flows.Server, 60*s+7*ms, -1).done()
		return answered(input(100*s, client, upstream), client, 3*ms, 60*s+10*ms, 504)
	}
	if got := runRule(t, "idle-timeout-teardown", build()); len(got) != 1 {
		t.Fatalf("without logs: %d idle-timeout-teardown incidents, want 1", len(got))
	}
	in := withLogs(t, build(),
		logText{"nginx-error", "error.log", nginxError(60*s, "error", 7, "upstream timed out (110: Connection timed out) while reading response header from upstream", "GET /api HTTP/1.1", "http://"+proxyUpstream+"/api")},
		logText{"nginx-access", "access.log", nginxAccess(60*s, proxyClient, 7, "GET /api HTTP/1.1", 504, proxyUpstream, "504", "60.006", "60.002")})
	if got := runRule(t, "idle-timeout-teardown", in); len(got) != 0 {
		t.Errorf("with nginx's line: idle-timeout-teardown fired: %q", got[0].Summary)
	}
	got := runRule(t, "upstream-timeout", in)
	if len(got) != 1 {
		t.Fatalf("%d upstream-timeout incidents, want 1", len(got))
	}
	if want := "nginx timed out waiting for the response header from upstream 10.0.0.11:8080 after 60.0 s (proxy_read_timeout, about 60.0 s here); client 10.0.0.5:41000 got 504 for GET /api."; got[0].Summary != want {
		t.Errorf("summary\n got %q\nwant %q", got[0].Summary, want)
	}
}
