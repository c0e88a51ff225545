package rules

import (
	"strings"
	"testing"

	"wiremortem/flows"
	"wiremortem/internal/testenv"
)

func TestRSTMidStream(t *testing.T) {
	const client, server = "10.0.0.5:5000", "10.0.0.9:8080"
	tests := []struct {
		name, want, summary, cause string
		in                         *Input
	}{
		{
			name: "the server resets right after the request",
			in: input(10*s, conv(1, client, server).handshake(0).data(flows.Client, 1*s, 300).
				rst(flows.Server, 1*s+5*ms, 0).done()),
			want:    "medium medium",
			summary: "Server 10.0.0.9:8080 reset its connection with client 10.0.0.5:5000 5 ms after data from the client, before either side closed.",
			cause:   "The server closed its socket while data was arriving or still unread",
		},
		{
			name: "the server aborts with its answer unacknowledged",
			in: input(10*s, conv(1, client, server).handshake(0).data(flows.Client, 1*s, 300).
				data(flows.Server, 1100*ms, 64000).rst(flows.Server, 1400*ms, 64000).done()),
			want:    "medium medium",
			summary: "Server 10.0.0.9:8080 reset its connection with client 10.0.0.5:5000 with 64,000 bytes still unacknowledged, 300 ms after the last data.",
			cause:   "The server's application aborted the connection with data still in flight",
		},
		{
			name: "the client vanished while the server retransmitted",
			in: input(100*s, conv(1, client, server).handshake(0).data(flows.Client, 1*s, 300).
				data(flows.Server, 1100*ms, 64000).retransmit(flows.Server, 2*s, 4*s, 8*s, 16*s, 32*s).
				rst(flows.Server, 64*s, 64000).done()),
			want:    "medium high",
			summary: "Server 10.0.0.9:8080 reset its connection with client 10.0.0.5:5000 with 64,000 bytes unacknowledged, after the client had been silent for 63.0 s while the server retransmitted 5 times.",
			cause:   "The client stopped answering: nothing came from it for 63.0 s",
		},
		{
			name: "healthy twin: a RST after both FINs",
			in: input(10*s, conv(1, client, server).handshake(0).data(flows.Client, 1*s, 300).data(flows.Server, 1100*ms, 900).
				fin(flows.Server, 1200*ms, ms).fin(flows.Client, 1210*ms, -1).rst(flows.Client, 1220*ms, 0).done()),
		},
		{
			name: "healthy twin: a client that closes with RST after a quiet spell",
			in: input(40*s, conv(1, client, server).handshake(0).data(flows.Client, 1*s, 300).data(flows.Server, 1100*ms, 900).
				rst(flows.Client, 20*s, 0).done()),
		},
		{
			name: "healthy twin: a half-open scan (SYN, SYN-ACK, RST)",
			in:   input(10*s, conv(1, client, server).handshake(0).rst(flows.Client, 3*ms, 0).done()),
		},
		{
			name: "a reset explained by zero-window-rst is left to it",
			in: input(80*s, conv(1, agent, nginxAddr).handshake(0).data(flows.Server, 9*s, 108528).
				zeroWindow(flows.Client, 10*s, -1, 9, 108528).rst(flows.Server, 70*s, 108528).done()),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runRule(t, "rst-mid-stream", tt.in)
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
			if g := inc.Severity.String() + " " + inc.Confidence; g != tt.want {
				t.Errorf("severity and confidence %s, want %s", g, tt.want)
			}
			if inc.Summary != tt.summary {
				t.Errorf("summary\n got %q\nwant %q", inc.Summary, tt.summary)
			}
			if !strings.HasPrefix(inc.Causes[0].Text, tt.cause) {
				t.Errorf("first cause %q", inc.Causes[0].Text)
			}
		})
	}
}

// TestRSTMidStreamCorpus: in 206_example_b.pcap (zeek/zeek
// testing/btest/Traces, BSD-3) the client advertises a zero window twice,
// reopens it, then falls silent; the server retransmits for 80 s and
// resets. The reset comes 81 s after the last zero window, so it is this
// rule's story (the peer went silent), not zero-window-rst's; the earlier
// zero windows are a cause. The second conversation (server FIN, client RST
// 26 s later) is a CLOSE_WAIT on the client, not a mid-stream reset.
func TestRSTMidStreamCorpus(t *testing.T) {
	in := trackCapture(t, testenv.Corpus(t, "zeek/testing/btest/Traces/http/206_example_b.pcap"))
	res := Evaluate(in, nil)
	var got []string
	for _, inc := range res.Incidents {
		checkIncident(t, inc)
		got = append(got, inc.Rule+" "+inc.Severity.String()+": "+flowSet(inc))
	}
	want := []string{
		"rst-mid-stream medium: 192.168.72.14:3254>65.54.95.206:80",
		"close-wait medium: 192.168.72.14:3257>65.54.95.14:80",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("incidents\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	rst := res.Incidents[0]
	const summary = "Server 65.54.95.206:80 reset its connection with client 192.168.72.14:3254 with 123,689 bytes unacknowledged, after the client had been silent for 80.9 s while the server retransmitted"
	if !strings.HasPrefix(rst.Summary, summary) {
		t.Errorf("summary %q", rst.Summary)
	}
	if len(rst.Causes) < 2 || !strings.Contains(rst.Causes[1].Text, "zero window twice") {
		t.Errorf("the earlier zero windows are not a cause: %+v", rst.Causes)
	}
}
