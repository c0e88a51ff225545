package analysis

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"wiremortem/evidence"
	"wiremortem/flows"
	"wiremortem/internal/testenv"
	"wiremortem/rules"
)

var t0 = time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)

func at(d time.Duration, packet int64) evidence.Stamp {
	return evidence.Stamp{Time: t0.Add(d), Ref: evidence.Ref{Source: "capture.pcap", Packet: packet}}
}

// conv makes a conversation from client port to server with a first SYN at
// d; mutate adds what the test needs.
func conv(id int, server string, d time.Duration, mutate func(*flows.Conversation)) *flows.Conversation {
	c := &flows.Conversation{
		ID:     id,
		Client: netip.MustParseAddrPort(fmt.Sprintf("10.0.0.5:%d", 40000+id)),
		Server: netip.MustParseAddrPort(server),
		Start:  t0.Add(d),
		End:    t0.Add(d + time.Second),
	}
	c.Handshake.SYNs = []evidence.Stamp{at(d, int64(id*10))}
	c.Handshake.SYNCount = 1
	c.Handshake.SYNACKCount = 1
	if mutate != nil {
		mutate(c)
	}
	return c
}

func withRST(d time.Duration, packet int64) func(*flows.Conversation) {
	return func(c *flows.Conversation) {
		c.Closing.RSTs[flows.Server] = &flows.CloseMark{By: flows.Server, Stamp: at(d, packet)}
		c.EndReason = "reset"
	}
}

func kinds(events []TimelineEvent) []string {
	var out []string
	for _, ev := range events {
		out = append(out, fmt.Sprintf("%s#%d@%s", ev.Kind, ev.Conversation, ev.Time.Sub(t0)))
	}
	return out
}

func TestBuildTimeline(t *testing.T) {
	const srv = "10.0.0.9:80"
	tests := []struct {
		name      string
		convs     []*flows.Conversation
		other     []TimelineEvent
		incidents []rules.Incident
		limit     int
		want      []string
		omitted   int
	}{
		{
			name: "all events in time order when under the cap",
			convs: []*flows.Conversation{
				conv(1, srv, 0, withRST(2*time.Second, 15)),
				conv(2, srv, time.Second, func(c *flows.Conversation) {
					c.ZeroWindows = []flows.ZeroWindowEpisode{{Receiver: flows.Client, Start: at(1500*time.Millisecond, 25), End: ptr(at(1700*time.Millisecond, 27)), Duration: 200 * time.Millisecond}}
					c.Closing.FINs[flows.Client] = &flows.CloseMark{By: flows.Client, Stamp: at(3*time.Second, 30)}
				}),
			},
			limit: 10,
			want:  []string{"syn#1@0s", "syn#2@1s", "zero-window-start#2@1.5s", "zero-window-end#2@1.7s", "rst#1@2s", "fin#2@3s"},
		},
		{
			name: "the cap keeps resets over routine SYNs",
			convs: []*flows.Conversation{
				conv(1, srv, 0, nil),
				conv(2, srv, time.Second, nil),
				conv(3, srv, 2*time.Second, withRST(5*time.Second, 35)),
			},
			limit:   2,
			want:    []string{"syn#1@0s", "rst#3@5s"},
			omitted: 2,
		},
		{
			name: "the cap keeps what an incident cites first",
			convs: []*flows.Conversation{
				conv(1, srv, 0, withRST(time.Second, 15)),
				conv(2, srv, 2*time.Second, nil),
			},
			incidents: []rules.Incident{{Rule: "syn-unanswered", Flows: []rules.Flow{{Conversation: 2}}}},
			limit:     1,
			want:      []string{"syn#2@2s"},
			omitted:   2,
		},
		{
			name: "an unanswered SYN outranks an answered one",
			convs: []*flows.Conversation{
				conv(1, srv, 0, nil),
				conv(2, srv, time.Second, func(c *flows.Conversation) { c.Handshake.SYNACKCount = 0 }),
			},
			limit:   1,
			want:    []string{"syn#2@1s"},
			omitted: 1,
		},
		{
			name:  "events from other sources rank by kind",
			convs: []*flows.Conversation{conv(1, srv, 0, nil)},
			other: []TimelineEvent{{Item: evidence.Item{Ref: evidence.Ref{Source: "error.log", Line: 7}, Time: t0.Add(4 * time.Second)}, Kind: EventLogError, Lane: "error.log"}},
			limit: 1, want: []string{"log-error#0@4s"}, omitted: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, omitted := BuildTimeline(tt.convs, tt.other, tt.incidents, tt.limit)
			if fmt.Sprint(kinds(got)) != fmt.Sprint(tt.want) || omitted != tt.omitted {
				t.Errorf("got %v omitted %d, want %v omitted %d", kinds(got), omitted, tt.want, tt.omitted)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestBuildTimelineCapsLanes(t *testing.T) {
	var convs []*flows.Conversation
	// Server i gets i+1 conversations, so the busiest lanes are the last.
	for i := range 20 {
		for j := range i + 1 {
			convs = append(convs, conv(len(convs)+1, fmt.Sprintf("10.0.1.%d:80", i), time.Duration(j)*time.Millisecond, nil))
		}
	}
	events, _ := BuildTimeline(convs, nil, nil, 10000)
	lanes := map[string]int{}
	for _, ev := range events {
		lanes[ev.Lane]++
	}
	if len(lanes) != maxTimelineLanes {
		t.Fatalf("%d lanes, want %d: %v", len(lanes), maxTimelineLanes, lanes)
	}
	if lanes["10.0.1.19:80"] != 20 || lanes["10.0.1.9:80"] != 10 || lanes["10.0.1.8:80"] != 0 {
		t.Errorf("kept the wrong lanes: %v", lanes)
	}
	if want := (9 * 10) / 2; lanes[OtherLane] != want {
		t.Errorf("%s holds %d events, want %d", OtherLane, lanes[OtherLane], want)
	}
}

func TestBuildRates(t *testing.T) {
	convs := []*flows.Conversation{
		conv(1, "10.0.0.9:80", 0, withRST(1500*time.Millisecond, 15)),
		conv(2, "10.0.0.9:80", 200*time.Millisecond, func(c *flows.Conversation) { c.EndReason = "closed" }),
		conv(3, "10.0.0.9:80", 2100*time.Millisecond, func(c *flows.Conversation) { c.EndReason = "capture-end" }),
	}
	r := BuildRates(convs, t0, t0.Add(3100*time.Millisecond))
	if r.Step != time.Second || !r.Start.Equal(t0) {
		t.Fatalf("step %s from %s, want 1s from %s", r.Step, r.Start, t0)
	}
	want := map[string]string{
		"conversations started": "[2 0 1 0]",
		"conversations ended":   "[0 2 0 0]",
		"resets":                "[0 1 0 0]",
	}
	for _, s := range r.Series {
		if fmt.Sprint(s.Counts) != want[s.Name] {
			t.Errorf("%s: %v, want %s", s.Name, s.Counts, want[s.Name])
		}
	}
	if len(r.Series) != len(want) {
		t.Errorf("%d series, want %d", len(r.Series), len(want))
	}
}

func TestNiceStep(t *testing.T) {
	tests := []struct {
		span, min, want time.Duration
		max             int
	}{
		{span: 5 * time.Second, max: 600, min: time.Second, want: time.Second},
		{span: 5 * time.Second, max: 600, min: 100 * time.Millisecond, want: 100 * time.Millisecond},
		{span: time.Hour, max: 600, min: time.Second, want: 10 * time.Second},
		{span: 600 * time.Second, max: 600, min: time.Second, want: 2 * time.Second},
		{span: 3000 * 24 * time.Hour, max: 600, min: time.Second, want: 6 * 24 * time.Hour},
	}
	for _, tt := range tests {
		if got := NiceStep(tt.span, tt.max, tt.min); got != tt.want {
			t.Errorf("NiceStep(%s, %d, %s) = %s, want %s", tt.span, tt.max, tt.min, got, tt.want)
		}
	}
}

func TestSYNAttempts(t *testing.T) {
	const listener = "10.0.0.9:80"
	wrap := func(cs ...*flows.Conversation) []Conversation {
		var out []Conversation
		for _, c := range cs {
			out = append(out, Conversation{Conversation: c})
		}
		return out
	}
	convs := wrap(
		conv(1, listener, 0, nil),
		conv(2, listener, 50*time.Millisecond, func(c *flows.Conversation) {
			c.Handshake.SYNACKCount = 0
			c.Handshake.SYNs = append(c.Handshake.SYNs, at(250*time.Millisecond, 99))
		}),
		conv(3, listener, 120*time.Millisecond, func(c *flows.Conversation) {
			c.Handshake.SYNACKCount = 0
			c.Handshake.RefusedBy = ptr(at(121*time.Millisecond, 31))
		}),
		conv(4, "10.0.0.9:443", 10*time.Millisecond, nil),
	)
	got := SYNAttempts(convs, listener, t0, t0.Add(299*time.Millisecond), 100*time.Millisecond)
	want := []SYNStep{
		{Start: t0, Attempts: 2, Answered: 1, Unanswered: 1},
		{Start: t0.Add(100 * time.Millisecond), Attempts: 1, Answered: 1},
		{Start: t0.Add(200 * time.Millisecond), SYNRetransmissions: 1},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
}

func TestHalfClosedOverTime(t *testing.T) {
	const leaking = "10.0.0.9:80"
	halfClosed := func(since, dur time.Duration, openAtEnd bool) func(*flows.Conversation) {
		return func(c *flows.Conversation) {
			c.Closing.HalfClose = &flows.HalfClose{By: flows.Client, Since: at(since, 1), Duration: dur, OpenAtEnd: openAtEnd}
		}
	}
	convs := []Conversation{
		{Conversation: conv(1, leaking, 0, halfClosed(100*time.Millisecond, 0, true))},
		{Conversation: conv(2, leaking, 0, halfClosed(1100*time.Millisecond, 200*time.Millisecond, false))},
		{Conversation: conv(3, leaking, 0, halfClosed(1200*time.Millisecond, 0, true))},
		// The client, not the leaking server, is the one waiting here.
		{Conversation: conv(4, leaking, 0, func(c *flows.Conversation) {
			c.Closing.HalfClose = &flows.HalfClose{By: flows.Server, Since: at(500*time.Millisecond, 1), OpenAtEnd: true}
		})},
	}
	got := HalfClosedOverTime(convs, map[string]bool{leaking: true}, t0, t0.Add(2500*time.Millisecond), time.Second)
	var open []int
	for _, s := range got {
		open = append(open, s.Open)
	}
	// 0-1 s: one; 1-2 s: three at once at 1.2 s (then conversation 2
	// closes at 1.3 s); 2-3 s: two left.
	if fmt.Sprint(open) != "[1 3 2]" {
		t.Errorf("open per step %v, want [1 3 2]", open)
	}
}

// TestRunTimelineOnRealCapture checks the timeline and rates of a public
// capture in which a client advertises a zero window and the server then
// resets (Zeek's http/206_example_b.pcap, zeek/zeek testing/btest/Traces).
func TestRunTimelineOnRealCapture(t *testing.T) {
	path := testenv.Corpus(t, "zeek/testing/btest/Traces/http/206_example_b.pcap")
	res, err := Run(context.Background(), []Input{{Path: path}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	doc := res.Document
	seen := map[EventKind]int{}
	for _, ev := range doc.Timeline {
		seen[ev.Kind]++
	}
	for _, k := range []EventKind{EventZeroWindowStart, EventRST, EventSYN} {
		if seen[k] == 0 {
			t.Errorf("no %s event on the timeline: %v", k, seen)
		}
	}
	var started int64
	for _, s := range doc.Rates.Series {
		if s.Name == "conversations started" {
			for _, n := range s.Counts {
				started += n
			}
		}
	}
	if started != int64(doc.Summary.Conversations) {
		t.Errorf("rates count %d conversations started, the summary %d", started, doc.Summary.Conversations)
	}
}
