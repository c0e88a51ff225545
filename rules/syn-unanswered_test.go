package rules

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"wiremortem/flows"
	"wiremortem/internal/testenv"
)

const (
	ms = time.Millisecond
	s  = time.Second
)

// storm builds seed 002's situation: many short-lived clients against one
// listener whose accept queue is full. Some SYNs are dropped (the clients,
// with a 300 ms connect timeout, give up after one SYN), some are answered
// at once, some only after the client's SYN retransmission, and some
// handshakes get their SYN-ACK repeated because the final ACK was dropped.
func storm() []*flows.Conversation {
	var convs []*flows.Conversation
	id := 1
	add := func(b *convBuilder) { convs = append(convs, b.done()); id++ }
	client := func() string { return fmt.Sprintf("10.0.1.%d:40000", id) }
	const server = "10.0.0.9:9869"
	for i := range 12 {
		add(conv(id, client(), server).syn(time.Duration(i) * 10 * ms))
	}
	for i := range 5 {
		add(conv(id, client(), server).handshake(time.Duration(i)*20*ms + 5*ms))
	}
	for i := range 3 {
		d := time.Duration(i)*15*ms + 7*ms
		add(conv(id, client(), server).syn(d, d+s).synack(d + s + ms).ack(d + s + 2*ms))
	}
	add(conv(id, client(), server).syn(50*ms).synack(51*ms, 1051*ms).ack(52 * ms))
	return convs
}

// stormFlows are the flows the storm incident must list: the 12 unanswered,
// the 3 answered late and the 1 with a repeated SYN-ACK (conversations 1-12
// and 18-21), not the 5 answered at once.
func stormFlows() string {
	var flows []string
	for id := 1; id <= 21; id++ {
		if id <= 12 || id >= 18 {
			flows = append(flows, fmt.Sprintf("10.0.1.%d:40000>10.0.0.9:9869", id))
		}
	}
	sort.Strings(flows)
	return strings.Join(flows, " ")
}

func TestSYNUnanswered(t *testing.T) {
	tests := []struct {
		name string
		in   *Input
		// want lists the expected incidents as "severity: flow set".
		want []string
		// summary holds a fragment each incident's summary must contain.
		summary []string
	}{
		{
			name:    "a lone SYN and its retransmissions",
			in:      input(20*s, conv(1, "10.0.0.5:46407", "10.0.0.9:80").syn(0, 1*s, 3*s, 7*s).done()),
			want:    []string{"low: 10.0.0.5:46407>10.0.0.9:80"},
			summary: []string{"4 SYNs over 7.0 s (retransmitted at +1.0 s, +3.0 s, +7.0 s)"},
		},
		{
			name:    "a client that gave up after one SYN",
			in:      input(5*s, conv(1, "10.0.0.5:46407", "10.0.0.9:80").syn(0).done()),
			want:    []string{"low: 10.0.0.5:46407>10.0.0.9:80"},
			summary: []string{"gave up sooner"},
		},
		{
			name: "healthy twin: a handshake answered in 2.9 s after a SYN retransmission",
			in:   input(10*s, conv(1, "10.0.0.5:46407", "10.0.0.9:80").syn(0, 1*s).synack(2900*ms).ack(2901*ms).done()),
		},
		{
			name: "a SYN just before the capture ended is not judged",
			in:   input(5*s, conv(1, "10.0.0.5:46407", "10.0.0.9:80").syn(4500*ms).done()),
		},
		{
			name: "a refused SYN is not unanswered",
			in:   input(5*s, conv(1, "10.0.0.5:46407", "10.0.0.9:80").syn(0).refused(ms).done()),
		},
		{
			name:    "seed 002: a storm against one listener with a full accept queue",
			in:      input(5*s, storm()...),
			want:    []string{"high: " + stormFlows()},
			summary: []string{"10.0.0.9:9869 left 12 of 21 connection attempts from 21 client hosts unanswered in 110 ms (peak 19 SYNs per 100 ms); 3 answered only after a SYN retransmission, 1 answered but with the SYN-ACK sent again because the final ACK was not taken, 12 of the unanswered clients gave up after a single SYN."},
		},
		{
			name: "two episodes far apart are two incidents",
			in: input(60*s,
				conv(1, "10.0.0.5:1000", "10.0.0.9:80").syn(0).done(),
				conv(2, "10.0.0.6:1000", "10.0.0.9:80").syn(100*ms).done(),
				conv(3, "10.0.0.5:1001", "10.0.0.9:80").syn(30*s).done()),
			want: []string{"medium: 10.0.0.5:1000>10.0.0.9:80 10.0.0.6:1000>10.0.0.9:80", "low: 10.0.0.5:1001>10.0.0.9:80"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runRule(t, "syn-unanswered", tt.in)
			if len(got) != len(tt.want) {
				t.Fatalf("%d incidents, want %d: %+v", len(got), len(tt.want), got)
			}
			for i, inc := range got {
				checkIncident(t, inc)
				if g := inc.Severity.String() + ": " + flowSet(inc); g != tt.want[i] {
					t.Errorf("incident %d:\n got %s\nwant %s", i, g, tt.want[i])
				}
				if i < len(tt.summary) && !strings.Contains(inc.Summary, tt.summary[i]) {
					t.Errorf("summary %q\nlacks %q", inc.Summary, tt.summary[i])
				}
			}
		})
	}
}

// TestSYNUnansweredStormCauses checks that the storm is blamed on the
// accept queue, with the listener's own SYN-ACKs as proof, and that the
// repeated SYN-ACK is folded in rather than reported again.
func TestSYNUnansweredStormCauses(t *testing.T) {
	res := Evaluate(input(5*s, storm()...), nil)
	var syn, synack int
	for _, inc := range res.Incidents {
		switch inc.Rule {
		case "syn-unanswered":
			syn++
			if !strings.HasPrefix(inc.Causes[0].Text, "The accept queue of 10.0.0.9:9869 was full") {
				t.Errorf("first cause %q", inc.Causes[0].Text)
			}
			if inc.Confidence != "high" {
				t.Errorf("confidence %s", inc.Confidence)
			}
			found := false
			for _, i := range inc.Causes[0].Evidence {
				if strings.Contains(inc.Evidence[i].What, "the listener answered others") {
					found = true
				}
			}
			if !found {
				t.Errorf("the accept-queue cause does not cite a SYN-ACK: %+v", inc.Causes[0])
			}
			if !strings.Contains(strings.Join(inc.Next, "\n"), "ss -lnt 'sport = :9869'") {
				t.Errorf("next steps lack ss -lnt: %q", inc.Next)
			}
		case "synack-retransmitted":
			synack++
		}
	}
	if syn != 1 || synack != 0 {
		t.Errorf("%d syn-unanswered and %d synack-retransmitted incidents, want 1 and 0", syn, synack)
	}
}

// TestSYNUnansweredCorpus runs the rule on public traces (zeek/zeek
// testing/btest/Traces, BSD-3; expected counts from ../shared/corpus's
// README, computed with tshark).
func TestSYNUnansweredCorpus(t *testing.T) {
	tests := []struct {
		trace string
		sets  []string
		// incidents and flows: how many incidents and affected flows in
		// all; severities lists each incident's severity in order.
		incidents, flows int
		severities       string
	}{
		// 20 SYN-only connections, each to its own port, an hour apart;
		// the last SYN is the capture's last packet: by default it is not
		// judged (its answer could have come after the capture stopped).
		{"zeek/testing/btest/Traces/rotation.pcap", nil, 19, 19, strings.Repeat("low ", 19)},
		{"zeek/testing/btest/Traces/rotation.pcap", []string{"syn-unanswered.capture_end_grace=0s"}, 20, 20, strings.Repeat("low ", 20)},
		// nmap -sV: 8 SYN-only streams, two per filtered host:port; six of
		// them were sent in the capture's last second.
		{"zeek/testing/btest/Traces/nmap-vsn.pcap", nil, 2, 2, "low low "},
		{"zeek/testing/btest/Traces/nmap-vsn.pcap", []string{"syn-unanswered.capture_end_grace=0s"}, 4, 8, "medium medium medium medium "},
		// a SYN retransmitted 3 times, never answered.
		{"zeek/testing/btest/Traces/tcp/option-sack.pcap", nil, 1, 1, "low "},
	}
	for _, tt := range tests {
		t.Run(tt.trace+strings.Join(tt.sets, ","), func(t *testing.T) {
			in := trackCapture(t, testenv.Corpus(t, tt.trace))
			got := runRule(t, "syn-unanswered", in, tt.sets...)
			nflows := 0
			var sev strings.Builder
			for _, inc := range got {
				checkIncident(t, inc)
				nflows += len(inc.Flows)
				sev.WriteString(inc.Severity.String() + " ")
			}
			if len(got) != tt.incidents || nflows != tt.flows || sev.String() != tt.severities {
				t.Errorf("%d incidents, %d flows, severities %q; want %d, %d, %q", len(got), nflows, sev.String(), tt.incidents, tt.flows, tt.severities)
				for _, inc := range got {
					t.Log(inc.Summary)
				}
			}
		})
	}
}

// TestSYNUnansweredAcceptQueue: what the logs say about the listener goes
// into the accept-queue cause, for it or against it.
func TestSYNUnansweredAcceptQueue(t *testing.T) {
	const listener = `900  11:59:00.000000 bind(3, {sa_family=AF_INET, sin_port=htons(9869), sin_addr=inet_addr("10.0.0.9")}, 16) = 0 <0.000010>
900  11:59:00.000100 listen(3, 4096) = 0 <0.000010>
`
	nstat := func(at string, overflows int) string {
		return fmt.Sprintf("%s\n#kernel\nTcpExtListenOverflows           %d                0.0\nTcpExtListenDrops               %d                0.0\n", at, overflows, overflows)
	}
	tests := []struct {
		name   string
		logs   []logText
		causes []string
		lacks  string
	}{
		{
			name: "the counters rose across the storm",
			logs: []logText{
				{"strace", "server.strace", listener},
				{"ss", "nstat.txt", nstat("2024-05-01 11:59:59+00:00", 100) + nstat("2024-05-01 12:00:05+00:00", 112)},
				{"ss", "ss-listen.txt", "State  Recv-Q Send-Q Local Address:Port Peer Address:PortProcess\nLISTEN 129    128          10.0.0.9:9869      0.0.0.0:*\n"},
			},
			causes: []string{"min(backlog 4096, net.core.somaxconn) = 128", "the server called listen() with a backlog of 4096",
				"ss showed 129 connections waiting in a queue whose limit is 128 (full: Linux keeps one more than the limit)",
				"TcpExtListenOverflows by 12 and TcpExtListenDrops by 12 (the capture holds 12 SYNs left unanswered)"},
		},
		{
			name:   "the counters stood still",
			logs:   []logText{{"ss", "nstat.txt", nstat("2024-05-01 11:59:59+00:00", 100) + nstat("2024-05-01 12:00:05+00:00", 100)}},
			causes: []string{"but TcpExtListenOverflows and TcpExtListenDrops did not rise between the snapshots, which speaks against an overflow"},
		},
		{
			// Snapshots taken an hour later say nothing of this storm.
			name:   "counters from another time",
			logs:   []logText{{"ss", "nstat.txt", nstat("2024-05-01 13:00:00+00:00", 100) + nstat("2024-05-01 13:00:05+00:00", 150)}},
			causes: []string{"min(listen backlog, net.core.somaxconn), is full"},
			lacks:  "TcpExtListenOverflows",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runRule(t, "syn-unanswered", withLogs(t, input(20*s, storm()...), tt.logs...))
			if len(got) != 1 {
				t.Fatalf("%d incidents, want 1", len(got))
			}
			checkIncident(t, got[0])
			first := got[0].Causes[0].Text
			for _, want := range tt.causes {
				if !strings.Contains(first, want) {
					t.Errorf("the first cause lacks %q:\n%s", want, first)
				}
			}
			if tt.lacks != "" && strings.Contains(first, tt.lacks) {
				t.Errorf("the first cause holds %q:\n%s", tt.lacks, first)
			}
		})
	}
}

// TestSYNUnansweredCitesWhatTheCapKeeps: citing only the attempts the
// evidence cap can keep (keptAtMost) gives the incident citing every
// attempt gives, whatever the cap, ties in time at the cap included.
func TestSYNUnansweredCitesWhatTheCapKeeps(t *testing.T) {
	var convs []*flows.Conversation
	for i := range 300 {
		// In pairs sharing a first SYN time: a tie at every cap.
		convs = append(convs, conv(i+1, fmt.Sprintf("10.0.%d.%d:40000", i/200+1, i%200+1), "10.0.0.9:9869").syn(time.Duration(i/2)*ms).done())
	}
	convs = append(convs, conv(301, "10.0.3.1:40000", "10.0.0.9:9869").handshake(20*ms).done())
	cfg, err := NewConfig()
	if err != nil {
		t.Fatal(err)
	}
	in := *input(5*s, convs...)
	in.CaptureEnd = in.captureEnd()
	in.fieldsCache = &fieldsCache{}
	for _, max := range []int{1, 2, 3, 39, 40, 41, 299, 300, 400} {
		lim := DefaultLimits
		lim.MaxEvidence = max
		var got [2][]Incident
		for k, cap := range []Limits{{}, lim} {
			got[k] = detectSYNUnanswered(&Context{In: &in, Params: cfg.Params("syn-unanswered"), limits: cap})
			if len(got[k]) != 1 {
				t.Fatalf("cap %d: %d incidents, want 1", max, len(got[k]))
			}
		}
		if max < 290 && len(got[1][0].Evidence) >= len(got[0][0].Evidence) {
			t.Errorf("cap %d: %d items cited, as many as without the cap", max, len(got[1][0].Evidence))
		}
		for k := range got {
			finish(&got[k][0], lim)
		}
		if !reflect.DeepEqual(got[0], got[1]) {
			t.Errorf("cap %d: citing what the cap keeps gives another incident:\n all %+v\ncapped %+v", max, got[0][0].Evidence, got[1][0].Evidence)
		}
		if n := len(got[1][0].Evidence) + int(got[1][0].EvidenceOmitted); n < 300 {
			t.Errorf("cap %d: %d items kept or counted, want at least the 300 attempts", max, n)
		}
	}
}

func TestKeptAtMost(t *testing.T) {
	times := func(ds ...int) []time.Time {
		var out []time.Time
		for _, d := range ds {
			out = append(out, at(time.Duration(d)*ms))
		}
		return out
	}
	id := func(t time.Time) time.Time { return t }
	for _, tt := range []struct {
		items []time.Time
		max   int
		want  int
	}{
		{times(1, 2, 3, 4), 2, 2},
		{times(1, 2, 2, 2, 3), 2, 4}, // the ties with the last kept may sort before it
		{times(1, 2, 3), 5, 3},
		{times(1, 2, 3), 0, 3},    // no cap known
		{times(3, 1, 2, 4), 2, 4}, // out of order: all
		{times(1, 1, 1, 1), 1, 4},
	} {
		if got := keptAtMost(tt.items, tt.max, id); got != tt.want {
			t.Errorf("keptAtMost(%v, %d) = %d, want %d", tt.items, tt.max, got, tt.want)
		}
	}
}
