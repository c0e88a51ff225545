package rules

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"wiremortem/flows"
)

func TestSYNACKRetransmitted(t *testing.T) {
	ignoredACKs := func(n int) []*flows.Conversation {
		var convs []*flows.Conversation
		for i := 1; i <= n; i++ {
			d := 10 * ms * time.Duration(i)
			convs = append(convs, conv(i, fmt.Sprintf("10.0.0.%d:5000", i), "10.0.0.9:80").syn(d).synack(d+ms, d+1001*ms, d+3001*ms).ack(d+2*ms).done())
		}
		return convs
	}
	cases := []struct {
		name       string
		in         *Input
		want       []string
		summary    string
		firstCause string
	}{
		{
			name:       "the server ignored the final ACK",
			in:         input(10*s, ignoredACKs(1)...),
			want:       []string{"medium high: 10.0.0.1:5000>10.0.0.9:80"},
			summary:    "10.0.0.9:80 sent its SYN-ACK to 10.0.0.1:5000 3 times although the client's final ACK came 1 ms after the first one.",
			firstCause: "The accept queue of 10.0.0.9:80 was full",
		},
		{
			name:       "no final ACK in the capture",
			in:         input(10*s, conv(1, "10.0.0.1:5000", "10.0.0.9:80").syn(0).synack(ms, 1001*ms).done()),
			want:       []string{"medium medium: 10.0.0.1:5000>10.0.0.9:80"},
			summary:    "10.0.0.9:80 sent its SYN-ACK to 10.0.0.1:5000 twice and the client's final ACK never showed in the capture.",
			firstCause: "The SYN-ACK or the client's final ACK was lost",
		},
		{
			name:       "many handshakes on one listener",
			in:         input(10*s, ignoredACKs(5)...),
			want:       []string{"high high: 10.0.0.1:5000>10.0.0.9:80 10.0.0.2:5000>10.0.0.9:80 10.0.0.3:5000>10.0.0.9:80 10.0.0.4:5000>10.0.0.9:80 10.0.0.5:5000>10.0.0.9:80"},
			summary:    "10.0.0.9:80 repeated its SYN-ACK 10 times on 5 handshakes from 5 client hosts within 40 ms; 5 of the clients had already sent their final ACK.",
			firstCause: "The accept queue of 10.0.0.9:80 was full",
		},
		{
			name: "healthy twin: each SYN-ACK answers a retransmitted SYN",
			in:   input(10*s, conv(1, "10.0.0.1:5000", "10.0.0.9:80").syn(0, 1*s).synack(ms, 1001*ms).ack(1002*ms).done()),
		},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			got := runRule(t, "synack-retransmitted", tt.in)
			if len(got) != len(tt.want) {
				t.Fatalf("%d incidents, want %d", len(got), len(tt.want))
			}
			for i, inc := range got {
				checkIncident(t, inc)
				if g := inc.Severity.String() + " " + inc.Confidence + ": " + flowSet(inc); g != tt.want[i] {
					t.Errorf("got %s\nwant %s", g, tt.want[i])
				}
				if inc.Summary != tt.summary {
					t.Errorf("summary\n got %q\nwant %q", inc.Summary, tt.summary)
				}
				if !strings.HasPrefix(inc.Causes[0].Text, tt.firstCause) {
					t.Errorf("first cause %q", inc.Causes[0].Text)
				}
			}
		})
	}
}
