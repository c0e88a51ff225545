package rules

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"wiremortem/flows"
	"wiremortem/internal/testenv"
)

func TestSYNRefused(t *testing.T) {
	refusedClients := func(n int) []*flows.Conversation {
		var convs []*flows.Conversation
		for i := 1; i <= n; i++ {
			d := 100 * ms * time.Duration(i)
			convs = append(convs, conv(i, fmt.Sprintf("10.0.0.%d:5000", i), "10.0.0.9:80").syn(d).refused(d+ms).done())
		}
		return convs
	}
	overflow := append(refusedClients(3),
		conv(10, "10.0.0.50:6000", "10.0.0.9:80").handshake(150*ms).done(),
		conv(11, "10.0.0.51:6000", "10.0.0.9:80").handshake(250*ms).done())
	tests := []struct {
		name        string
		in          *Input
		want        []string
		firstCause  string
		summaryPart string
	}{
		{
			name:        "one refused SYN",
			in:          input(5*s, refusedClients(1)...),
			want:        []string{"low: 10.0.0.1:5000>10.0.0.9:80"},
			firstCause:  "Nothing listens on port 80 at 10.0.0.9",
			summaryPart: "10.0.0.9:80 answered the SYN from 10.0.0.1:5000 with RST after 1 ms",
		},
		{
			name:        "many clients refused",
			in:          input(5*s, refusedClients(5)...),
			want:        []string{"medium: 10.0.0.1:5000>10.0.0.9:80 10.0.0.2:5000>10.0.0.9:80 10.0.0.3:5000>10.0.0.9:80 10.0.0.4:5000>10.0.0.9:80 10.0.0.5:5000>10.0.0.9:80"},
			summaryPart: "10.0.0.9:80 refused 5 SYNs from 5 client hosts with RST over 401 ms (5 connection attempts)",
		},
		{
			name:       "a listener that resets under overflow",
			in:         input(5*s, overflow...),
			want:       []string{"high: 10.0.0.1:5000>10.0.0.9:80 10.0.0.2:5000>10.0.0.9:80 10.0.0.3:5000>10.0.0.9:80"},
			firstCause: "A listener on 10.0.0.9:80 resets when its accept queue is full: it completed 2 other handshakes",
		},
		{
			name: "healthy twin: answered handshakes",
			in:   input(5*s, conv(1, "10.0.0.1:5000", "10.0.0.9:80").handshake(0).done()),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runRule(t, "syn-refused", tt.in)
			if len(got) != len(tt.want) {
				t.Fatalf("%d incidents, want %d", len(got), len(tt.want))
			}
			for i, inc := range got {
				checkIncident(t, inc)
				if g := inc.Severity.String() + ": " + flowSet(inc); g != tt.want[i] {
					t.Errorf("got %s\nwant %s", g, tt.want[i])
				}
				if !strings.HasPrefix(inc.Causes[0].Text, tt.firstCause) {
					t.Errorf("first cause %q\nwant prefix %q", inc.Causes[0].Text, tt.firstCause)
				}
				if !strings.Contains(inc.Summary, tt.summaryPart) {
					t.Errorf("summary %q lacks %q", inc.Summary, tt.summaryPart)
				}
			}
		})
	}
}

// TestSYNRefusedCorpus runs the rule on public traces (zeek/zeek
// testing/btest/Traces, BSD-3): pop3.pcap has two client ports whose SYN
// is refused, each retried twice by the client's kernel (Zeek logs six REJ
// connections); nmap-vsn.pcap has six refused SYNs on four host:ports.
func TestSYNRefusedCorpus(t *testing.T) {
	tests := []struct {
		trace string
		want  []string
	}{
		{"zeek/testing/btest/Traces/pop3/pop3.pcap", []string{
			"low: 192.168.0.4:26242>212.227.15.188:110 192.168.0.4:26242>212.227.15.188:110 192.168.0.4:26242>212.227.15.188:110",
			"low: 192.168.0.4:26245>212.227.15.171:110 192.168.0.4:26245>212.227.15.171:110 192.168.0.4:26245>212.227.15.171:110",
		}},
		{"zeek/testing/btest/Traces/nmap-vsn.pcap", []string{
			"low: 192.168.1.71:58024>192.168.1.1:80",
			"low: 192.168.1.71:58100>192.168.1.50:80",
			"low: 192.168.1.71:58113>192.168.1.65:80 192.168.1.71:58588>192.168.1.65:80",
			"low: 192.168.1.71:58604>192.168.1.65:443 192.168.1.71:58680>192.168.1.65:443",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.trace, func(t *testing.T) {
			got := runRule(t, "syn-refused", trackCapture(t, testenv.Corpus(t, tt.trace)))
			var lines []string
			for _, inc := range got {
				checkIncident(t, inc)
				lines = append(lines, inc.Severity.String()+": "+flowSet(inc))
			}
			if strings.Join(lines, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(tt.want, "\n"))
			}
			if strings.Contains(tt.trace, "pop3") && !strings.Contains(got[0].Summary, "(1 connection attempt)") {
				t.Errorf("the retried SYNs should count as one attempt: %q", got[0].Summary)
			}
		})
	}
}
