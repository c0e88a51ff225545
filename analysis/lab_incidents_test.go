package analysis

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"wiremortem/internal/lab"
	"wiremortem/rules"
)

// logKinds are the lab's file kinds that wiremortem reads; the rest
// (nginx.conf, the lab client's own log) are not inputs.
var logKinds = map[string]bool{
	lab.KindNginxAccess: true, lab.KindNginxError: true, lab.KindStrace: true,
	lab.KindSS: true, lab.KindNetstatS: true, lab.KindNstat: true,
	lab.KindListenState: true, lab.KindNetstatAnt: true,
}

// analyseScenario runs the whole analysis the way an SRE would: every
// capture and log of the scenario, kinds detected from content, clocks
// left for wiremortem to work out; only the nginx log_format is given, as
// it would be read from nginx.conf.
func analyseScenario(t *testing.T, dir string, facts lab.Facts, opts Options) *Result {
	t.Helper()
	inputs, format := scenarioInputs(dir, facts)
	if format != "" {
		opts.NginxLogFormat = format
	}
	opts.ReportConversations = 10000
	res, err := Run(context.Background(), inputs, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(res.Close)
	return res
}

// scenarioInputs returns a scenario's captures and logs, and the
// log_format its access log was written with ("" without one).
func scenarioInputs(dir string, facts lab.Facts) (inputs []Input, format string) {
	for _, f := range facts.Files {
		if f.Kind == lab.KindPcap || f.Kind == lab.KindPcapng || logKinds[f.Kind] {
			inputs = append(inputs, Input{Path: filepath.Join(dir, f.Name)})
		}
		if f.LogFormat != "" {
			format = f.LogFormat
		}
	}
	return inputs, format
}

// ruleScore counts, for one rule, planted incidents found (hits), planted
// incidents missed, and incidents reported where the lab planted none.
type ruleScore struct{ hits, misses, falseAlarms int }

// TestLabIncidents is the rules' precision and recall over every lab
// scenario: each incident the lab planted must be reported by its rule on
// all of its flows, and nothing else may be reported (a healthy twin must
// stay quiet). Incidents the lab marks optional, consequences of a planted
// fault, count neither way.
func TestLabIncidents(t *testing.T) {
	scores := scoreBoard{}
	for _, dir := range labDirs(t) {
		facts, err := lab.Load(filepath.Join(dir, "facts.json"))
		if err != nil {
			t.Fatal(err)
		}
		t.Run(facts.Scenario, func(t *testing.T) { scores.judge(t, dir, facts) })
	}
	t.Log("\n" + scores.String())
}

// scoreBoard is precision and recall by rule.
type scoreBoard map[string]*ruleScore

func (b scoreBoard) rule(id string) *ruleScore {
	if b[id] == nil {
		b[id] = &ruleScore{}
	}
	return b[id]
}

// judge analyses one scenario and scores its incidents against the ones
// the lab planted; a miss or a false alarm fails t.
func (b scoreBoard) judge(t *testing.T, dir string, facts lab.Facts) {
	t.Helper()
	res := analyseScenario(t, dir, facts, Options{})
	got := res.Document.Incidents
	for _, inc := range got {
		t.Logf("%s %s: %s", inc.Rule, inc.Severity, inc.Summary)
	}
	used := make([]bool, len(got))
	for _, want := range facts.Incidents {
		i := findIncident(got, want)
		if i >= 0 {
			used[i] = true
		}
		switch {
		case want.Optional:
		case i >= 0:
			b.rule(want.Rule).hits++
		default:
			b.rule(want.Rule).misses++
			t.Errorf("missed %s on %s (%s)", want.Rule, flowList(want.Flows), want.What)
		}
	}
	for i, inc := range got {
		if !used[i] && !overlapsPlanted(inc, facts.Incidents) {
			b.rule(inc.Rule).falseAlarms++
			t.Errorf("false alarm: %s %s: %s", inc.Rule, inc.Severity, inc.Summary)
		}
	}
}

func (b scoreBoard) String() string {
	ids := make([]string, 0, len(b))
	for id := range b {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var w strings.Builder
	fmt.Fprintf(&w, "%-26s %5s %6s %12s %9s %7s\n", "rule", "hits", "misses", "false alarms", "precision", "recall")
	for _, id := range ids {
		s := b[id]
		fmt.Fprintf(&w, "%-26s %5d %6d %12d %9s %7s\n", id, s.hits, s.misses, s.falseAlarms, ratio(s.hits, s.hits+s.falseAlarms), ratio(s.hits, s.hits+s.misses))
	}
	return w.String()
}

func ratio(a, b int) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", float64(a)/float64(b))
}

// findIncident returns the reported incident of the planted one's rule
// that covers all of its flows, or -1.
func findIncident(got []rules.Incident, want lab.Incident) int {
	for i, inc := range got {
		if inc.Rule != want.Rule {
			continue
		}
		all := true
		for _, f := range want.Flows {
			if !hasFlow(inc, f) {
				all = false
				break
			}
		}
		if all {
			return i
		}
	}
	return -1
}

// overlapsPlanted reports whether a reported incident shares its rule and
// a flow with a planted incident (an incident split in two, say).
func overlapsPlanted(inc rules.Incident, planted []lab.Incident) bool {
	for _, p := range planted {
		if p.Rule != inc.Rule {
			continue
		}
		for _, f := range p.Flows {
			if hasFlow(inc, f) {
				return true
			}
		}
	}
	return false
}

// hasFlow matches a planted flow; a planted client port of 0 (a connect
// refused before anyone saw the port) matches any port.
func hasFlow(inc rules.Incident, f lab.Flow) bool {
	for _, g := range inc.Flows {
		if g.Server == f.Server && sameClient(g.Client, f.Client) {
			return true
		}
	}
	return false
}

func sameClient(got, want string) bool {
	if got == want {
		return true
	}
	w, err := netip.ParseAddrPort(want)
	if err != nil || w.Port() != 0 {
		return false
	}
	g, err := netip.ParseAddrPort(got)
	return err == nil && g.Addr() == w.Addr()
}

func flowList(fs []lab.Flow) string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Client+" -> "+f.Server)
	}
	return strings.Join(out, ", ")
}
