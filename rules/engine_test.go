package rules

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"wiremortem/flows"
)

// mixed is a capture with one high incident (seed 001), one storm (seed
// 002) and 20 lonely unanswered SYNs to 20 different servers.
func mixed() *Input {
	convs := storm()
	convs = append(convs, conv(100, agent, nginxAddr).handshake(0).data(flows.Server, 9*s, 108528).
		zeroWindow(flows.Client, 10*s, -1, 9, 108528).rst(flows.Server, 70*s, 108528).done())
	for i := range 20 {
		convs = append(convs, conv(200+i, "10.0.3.1:4000", fmt.Sprintf("10.0.4.%d:80", i+1)).syn(20*s).done())
	}
	return input(100*s, convs...)
}

func TestEvaluateCaps(t *testing.T) {
	cfg, _ := NewConfig()
	for _, set := range []string{"limits.max_incidents=5", "limits.max_flows_per_incident=3", "limits.max_evidence_per_incident=4"} {
		if err := ParseSet(cfg, set); err != nil {
			t.Fatal(err)
		}
	}
	res := Evaluate(mixed(), cfg)
	if len(res.Incidents) != 5 || res.IncidentsOmitted != 17 {
		t.Fatalf("%d incidents, %d omitted; want 5 and 17", len(res.Incidents), res.IncidentsOmitted)
	}
	if got := fmt.Sprint(res.BySeverity); got != "map[high:2 low:20]" {
		t.Errorf("by severity %s", got)
	}
	if res.Incidents[0].Severity != High || res.Incidents[1].Severity != High || res.Incidents[2].Severity != Low {
		t.Errorf("most severe first: %v %v %v", res.Incidents[0].Severity, res.Incidents[1].Severity, res.Incidents[2].Severity)
	}
	for _, inc := range res.Incidents {
		if inc.Rule != "syn-unanswered" || inc.Severity != High {
			continue
		}
		if len(inc.Flows) != 3 || inc.FlowsOmitted != 13 {
			t.Errorf("storm: %d flows, %d omitted; want 3 and 13", len(inc.Flows), inc.FlowsOmitted)
		}
		if len(inc.Evidence) != 4 || inc.EvidenceOmitted == 0 {
			t.Errorf("storm: %d evidence items, %d omitted", len(inc.Evidence), inc.EvidenceOmitted)
		}
		// The first cause's evidence survives the cap and is renumbered.
		if len(inc.Causes[0].Evidence) == 0 {
			t.Errorf("the cap dropped the first cause's evidence")
		}
		for _, c := range inc.Causes {
			for _, i := range c.Evidence {
				if i >= len(inc.Evidence) {
					t.Errorf("cause cites %d of %d items", i, len(inc.Evidence))
				}
			}
		}
		for i := 1; i < len(inc.Evidence); i++ {
			if inc.Evidence[i].Time.Before(inc.Evidence[i-1].Time) {
				t.Errorf("evidence not in time order")
			}
		}
	}
}

// TestEvaluateDeterministic: the same conversations in any order give
// byte-identical JSON.
func TestEvaluateDeterministic(t *testing.T) {
	want, err := json.Marshal(Evaluate(mixed(), nil))
	if err != nil {
		t.Fatal(err)
	}
	for seed := range int64(5) {
		in := mixed()
		rand.New(rand.NewSource(seed)).Shuffle(len(in.Conversations), func(i, j int) {
			in.Conversations[i], in.Conversations[j] = in.Conversations[j], in.Conversations[i]
		})
		got, _ := json.Marshal(Evaluate(in, nil))
		if string(got) != string(want) {
			t.Fatalf("seed %d: output differs with the input order", seed)
		}
	}
}

func TestEvaluateEmptyAndDisabled(t *testing.T) {
	res := Evaluate(&Input{}, nil)
	if res.Incidents == nil || len(res.Incidents) != 0 {
		t.Errorf("no input: %+v", res.Incidents)
	}
	b, _ := json.Marshal(res.Incidents)
	if string(b) != "[]" {
		t.Errorf("empty incidents marshal to %s", b)
	}
	cfg, _ := NewConfig()
	for _, r := range Builtin() {
		if err := ParseSet(cfg, r.ID+".enabled=false"); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(Evaluate(mixed(), cfg).Incidents); n != 0 {
		t.Errorf("%d incidents with every rule disabled", n)
	}
}

func TestRunOrder(t *testing.T) {
	rules := []*Rule{
		{ID: "a", DefersTo: []string{"c"}},
		{ID: "b"},
		{ID: "c", DefersTo: []string{"b", "missing"}},
		{ID: "d", DefersTo: []string{"e"}},
		{ID: "e", DefersTo: []string{"d"}}, // a cycle must not hang
	}
	var ids []string
	for _, r := range runOrder(rules) {
		ids = append(ids, r.ID)
	}
	if got := strings.Join(ids, " "); got != "b c a e d" {
		t.Errorf("order %s", got)
	}
}

func TestRegisterRejectsMalformedRules(t *testing.T) {
	detect := func(*Context) []Incident { return nil }
	tests := []struct {
		rule Rule
		want string
	}{
		{Rule{ID: "Bad_ID", Title: "t", Doc: "d", Detect: detect}, "use lower-case words"},
		{Rule{ID: "no-doc", Title: "t", Detect: detect}, "needs a title, a doc"},
		{Rule{ID: "bad-param", Title: "t", Doc: "d", Detect: detect, Params: []Param{DurationParam("Min", 1, "x")}}, "parameter name"},
		{Rule{ID: "enabled-param", Title: "t", Doc: "d", Detect: detect, Params: []Param{CountParam("enabled", 1, "x")}}, "parameter name"},
		{Rule{ID: "undocumented", Title: "t", Doc: "d", Detect: detect, Params: []Param{CountParam("n", 1, "")}}, "has no doc"},
		{Rule{ID: "wrong-default", Title: "t", Doc: "d", Detect: detect, Params: []Param{{Name: "n", Kind: KindCount, Default: 1, Doc: "x"}}}, "does not fit kind count"},
		{Rule{ID: "close-wait", Title: "t", Doc: "d", Detect: detect}, "duplicate rule id"},
	}
	for _, tt := range tests {
		func() {
			defer func() {
				r := recover()
				if r == nil || !strings.Contains(fmt.Sprint(r), tt.want) {
					t.Errorf("%s: panic %v, want %q", tt.rule.ID, r, tt.want)
				}
			}()
			Register(tt.rule)
		}()
	}
}

func TestParamsMisuse(t *testing.T) {
	p := Params{rule: "r", values: map[string]any{"n": count(1)}}
	for name, read := range map[string]func(){
		"undeclared": func() { p.Duration("x") },
		"wrong kind": func() { p.Duration("n") },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			read()
		}()
	}
}

// TestEndFor: a conversation is judged against the end of its own
// capture, continued by rotated parts, not against a capture of another
// host or time that ran longer.
func TestEndFor(t *testing.T) {
	in := input(100*s,
		conv(1, "10.0.0.1:1000", "10.0.0.9:80").handshake(2*s).done(),
		conv(2, "10.0.0.1:1001", "10.0.0.9:80").handshake(50*s).done())
	in.Conversations[0].LastPacket.Source = "part0.pcap"
	in.Conversations[1].LastPacket.Source = "other-host.pcap"
	in.Captures = []CaptureSpan{
		{Source: "other-host.pcap", First: at(-5 * s), Last: at(100 * s)},
		{Source: "part0.pcap", First: at(0), Last: at(10 * s)},
		{Source: "part1.pcap", First: at(10*s + 300*ms), Last: at(20 * s)},
		{Source: "later.pcap", First: at(40 * s), Last: at(90 * s)},
	}
	if got := in.endFor(in.Conversations[0]); !got.Equal(at(20 * s)) {
		t.Errorf("rotated capture: end %v, want part1's end %v", got, at(20*s))
	}
	if got := in.endFor(in.Conversations[1]); !got.Equal(at(100 * s)) {
		t.Errorf("other host: end %v, want its own end", got)
	}
	in.Captures = nil
	if got := in.endFor(in.Conversations[0]); !got.Equal(at(100 * s)) {
		t.Errorf("one capture: end %v, want CaptureEnd", got)
	}
}

// TestRuleThatPanicsLosesOnlyItself: a rule that hits a bug on some input
// reports nothing and a problem naming it; the other rules' incidents are
// all there, and the analysis does not crash.
func TestRuleThatPanicsLosesOnlyItself(t *testing.T) {
	want := Evaluate(mixed(), nil)
	broken := &Rule{ID: "broken-rule", Title: "panics", Doc: "panics", Detect: func(ctx *Context) []Incident {
		var c *flows.Conversation
		return []Incident{{Summary: c.Client.String()}}
	}}
	cfg, err := NewConfig(broken)
	if err != nil {
		t.Fatal(err)
	}
	got := Evaluate(mixed(), cfg)
	if len(got.Incidents) != len(want.Incidents) || len(got.Incidents) == 0 {
		t.Errorf("%d incidents beside the broken rule, %d without it", len(got.Incidents), len(want.Incidents))
	}
	if len(got.Problems) != 1 || got.Problems[0].Rule != "broken-rule" || got.Problems[0].Count != 0 ||
		len(got.Problems[0].Examples) != 1 || !strings.Contains(got.Problems[0].Examples[0], "nil pointer") {
		t.Errorf("problems %+v, want one naming broken-rule and its panic", got.Problems)
	}
}

// TestRulesRunAtOnceSeeWhatTheyDeferTo: rules run concurrently, but a rule
// starts only when the earlier rules it defers to have finished, so it
// sees their claims however slow they are; a cycle of deferrals neither
// hangs nor changes what one-after-another would give.
func TestRulesRunAtOnceSeeWhatTheyDeferTo(t *testing.T) {
	report := func(ids ...int) func(*Context) []Incident {
		return func(ctx *Context) []Incident {
			var out []Incident
			for _, c := range ctx.In.Conversations {
				if slices.Contains(ids, c.ID) && ctx.ExplainedBy(c) == "" {
					out = append(out, Incident{Severity: Low, Flows: []Flow{{Client: "a", Server: "b", Conversation: c.ID}}})
				}
			}
			return out
		}
	}
	slow := func(ids ...int) func(*Context) []Incident {
		return func(ctx *Context) []Incident {
			time.Sleep(50 * time.Millisecond)
			return report(ids...)(ctx)
		}
	}
	test := []*Rule{
		{ID: "zz-slow", Title: "t", Doc: "d", Detect: slow(1)},
		{ID: "aa-defers", Title: "t", Doc: "d", DefersTo: []string{"zz-slow"}, Detect: report(1, 2)},
		// A cycle: runOrder puts cy-b first (TestRunOrder), so cy-a
		// waits for it and sees its claims, and cy-b sees none.
		{ID: "cy-a", Title: "t", Doc: "d", DefersTo: []string{"cy-b"}, Detect: report(3)},
		{ID: "cy-b", Title: "t", Doc: "d", DefersTo: []string{"cy-a"}, Detect: slow(3)},
	}
	cfg, err := NewConfig(test...)
	if err != nil {
		t.Fatal(err)
	}
	in := input(10*s, conv(1, "10.0.0.1:1000", "10.0.0.2:80").syn(0).done(),
		conv(2, "10.0.0.1:1001", "10.0.0.2:80").syn(0).done(),
		conv(3, "10.0.0.1:1002", "10.0.0.2:80").syn(0).done())
	for range 3 {
		got := map[string][]int{}
		for _, inc := range Evaluate(in, cfg).Incidents {
			if slices.Contains([]string{"zz-slow", "aa-defers", "cy-a", "cy-b"}, inc.Rule) {
				got[inc.Rule] = append(got[inc.Rule], inc.Flows[0].Conversation)
			}
		}
		if want := "map[aa-defers:[2] cy-b:[3] zz-slow:[1]]"; fmt.Sprint(got) != want {
			t.Fatalf("incidents by rule %v, want %s", got, want)
		}
	}
}
