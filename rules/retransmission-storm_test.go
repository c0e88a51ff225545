package rules

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"wiremortem/flows"
)

func TestRetransmissionStorm(t *testing.T) {
	const server = "10.0.0.9:443"
	// lossyDownload: the server sends 200 packets, resending n of them;
	// the client ACKs with dupACKs duplicates.
	lossyDownload := func(id int, n, dupACKs int64) *flows.Conversation {
		b := conv(id, fmt.Sprintf("10.0.0.%d:5000", id), server).handshake(0).data(flows.Client, 10*ms, 300).
			packets(flows.Server, 20*ms, 200-n)
		var offsets []time.Duration
		for i := range n {
			offsets = append(offsets, 100*ms+time.Duration(i)*10*ms)
		}
		c := b.retransmit(flows.Server, offsets...).fin(flows.Server, 5*s, ms).fin(flows.Client, 5*s+ms, -1).done()
		c.FromClient.DuplicateACKs = dupACKs
		return c
	}
	tests := []struct {
		name, want, summary string
		in                  *Input
	}{
		{
			name:    "one lossy download",
			in:      input(10*s, lossyDownload(1, 40, 60)),
			want:    "medium: 10.0.0.1:5000>10.0.0.9:443",
			summary: "Server 10.0.0.9:443 retransmitted 40 of its 202 packets (20%) to 10.0.0.1:5000 over 5.0 s.",
		},
		{
			name:    "a server whose every client loses packets",
			in:      input(10*s, lossyDownload(1, 40, 0), lossyDownload(2, 30, 0), lossyDownload(3, 25, 0), lossyDownload(4, 50, 0), lossyDownload(5, 22, 0)),
			want:    "high: 10.0.0.1:5000>10.0.0.9:443 10.0.0.2:5000>10.0.0.9:443 10.0.0.3:5000>10.0.0.9:443 10.0.0.4:5000>10.0.0.9:443 10.0.0.5:5000>10.0.0.9:443",
			summary: "5 conversations with 10.0.0.9:443 retransmitted 167 of 1010 packets (17%); the worst, server 10.0.0.9:443, 25%.",
		},
		{
			name: "healthy twin: a few retransmissions on a long transfer",
			in:   input(10*s, lossyDownload(1, 8, 8)),
		},
		{
			name: "SYN retransmissions are not data retransmissions",
			in:   input(60*s, conv(1, "10.0.0.5:5000", server).syn(0, 1*s, 3*s, 7*s, 15*s, 31*s).synack(31*s+ms).ack(31*s+2*ms).done()),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runRule(t, "retransmission-storm", tt.in, "retransmission-storm.min_retransmissions=10")
			if tt.want == "" {
				if len(got) != 0 {
					t.Fatalf("fired: %q", got[0].Summary)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("%d incidents, want 1", len(got))
			}
			inc := got[0]
			checkIncident(t, inc)
			if g := inc.Severity.String() + ": " + flowSet(inc); g != tt.want {
				t.Errorf("got %s, want %s", g, tt.want)
			}
			if inc.Summary != tt.summary {
				t.Errorf("summary\n got %q\nwant %q", inc.Summary, tt.summary)
			}
			dup := strings.HasPrefix(inc.Causes[0].Text, "Packets were lost on the path")
			if dup != strings.Contains(tt.name, "one lossy") {
				t.Errorf("first cause %q", inc.Causes[0].Text)
			}
		})
	}
}
