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
