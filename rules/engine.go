package rules

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"wiremortem/evidence"
)

// Result is what one evaluation found.
type Result struct {
	// Incidents are sorted most severe first, then by start time, rule and
	// first flow; capped at Limits.MaxIncidents.
	Incidents []Incident
	// IncidentsOmitted counts incidents the cap left out (the least
	// severe); BySeverity counts every incident found, kept or not.
	IncidentsOmitted int
	BySeverity       map[string]int
	// Problems are errors met while running user-defined rules (an
	// expression failing on some conversation), counted per rule, with the
	// first few examples, and rules that stopped on a bug (Count 0); the
	// other rules ran regardless.
	Problems []Problem
}

// Problem is a user rule that failed on some of its input, or a rule that
// stopped on a bug (Count 0, the panic in Examples).
type Problem struct {
	Rule     string   `json:"rule"`
	Count    int      `json:"count"`
	Examples []string `json:"examples"`
}

// Evaluate runs every enabled rule over the input. A nil cfg means the
// built-in rules with their defaults. Same input, same output: nothing
// depends on map order or timing.
func Evaluate(in *Input, cfg *Config) Result {
	if cfg == nil {
		cfg, _ = NewConfig() // cannot fail without user rules
	}
	input := *in
	input.CaptureEnd = in.captureEnd()
	input.fieldsCache = &fieldsCache{}
	var order []*Rule
	for _, r := range runOrder(cfg.Rules()) {
		if cfg.Enabled(r.ID) {
			order = append(order, r)
		}
	}
	// The rules run at once, each as soon as the rules it defers to that
	// come before it in the run order have finished: a rule sees the
	// claims of exactly the rules it would see run one after the other,
	// and the results are gathered in run order, so the output does not
	// depend on timing.
	runs := make([]*ruleRun, len(order))
	byID := map[string]*ruleRun{}
	for i, r := range order {
		run := &ruleRun{done: make(chan struct{})}
		run.ctx = &Context{In: &input, Params: cfg.Params(r.ID), limits: cfg.Limits}
		for _, d := range r.DefersTo {
			if dep := byID[d]; dep != nil {
				run.ctx.deps = append(run.ctx.deps, dep)
			}
		}
		// In run order, as ExplainedBy names the first that claimed.
		slices.SortFunc(run.ctx.deps, func(a, b *ruleRun) int { return cmp.Compare(a.index, b.index) })
		run.index, run.id = i, r.ID
		runs[i], byID[r.ID] = run, run
	}
	var wg sync.WaitGroup
	for i, r := range order {
		wg.Go(func() { runs[i].execute(r, cfg.Limits) })
	}
	wg.Wait()
	var all []Incident
	var problems []Problem
	for _, run := range runs {
		all = append(all, run.found...)
		if run.ctx.problem != nil {
			problems = append(problems, *run.ctx.problem)
		}
	}
	res := Result{BySeverity: map[string]int{}, Problems: problems}
	for _, inc := range all {
		res.BySeverity[inc.Severity.String()]++
	}
	sort.SliceStable(all, func(i, j int) bool { return incidentLess(&all[i], &all[j]) })
	if len(all) > cfg.Limits.MaxIncidents {
		res.IncidentsOmitted = len(all) - cfg.Limits.MaxIncidents
		all = all[:cfg.Limits.MaxIncidents]
	}
	res.Incidents = all
	if res.Incidents == nil {
		res.Incidents = []Incident{}
	}
	return res
}

// execute runs rule r once the rules it defers to have run, and puts its
// incidents in their final form.
func (run *ruleRun) execute(r *Rule, lim Limits) {
	defer close(run.done)
	for _, dep := range run.ctx.deps {
		<-dep.done
	}
	run.found = detect(r, run.ctx)
	run.claims = map[int]bool{}
	for i := range run.found {
		inc := &run.found[i]
		inc.Rule, inc.Title = r.ID, cmp.Or(inc.Title, r.Title)
		for _, f := range inc.Flows {
			if f.Conversation > 0 {
				run.claims[f.Conversation] = true
			}
		}
		finish(inc, lim)
	}
}

// detect runs one rule. A rule that panics (a bug some input reached)
// loses its own incidents, not the analysis: the panic becomes the rule's
// problem, which the document shows as a warning.
func detect(r *Rule, ctx *Context) (found []Incident) {
	defer func() {
		if p := recover(); p != nil {
			found = nil
			ctx.problem = &Problem{Rule: r.ID, Examples: []string{fmt.Sprintf("the rule stopped on a bug (%v) and reported nothing; please report it with the inputs", p)}}
		}
	}()
	return r.Detect(ctx)
}

// runOrder sorts rules so that every rule runs after the rules it defers
// to; otherwise by id. A cycle (a bug in the rule declarations) falls back
// to id order for the rules in it.
func runOrder(rules []*Rule) []*Rule {
	byID := map[string]*Rule{}
	for _, r := range rules {
		byID[r.ID] = r
	}
	var out []*Rule
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(r *Rule)
	visit = func(r *Rule) {
		if state[r.ID] != 0 {
			return
		}
		state[r.ID] = 1
		for _, d := range r.DefersTo {
			if dep, ok := byID[d]; ok {
				visit(dep)
			}
		}
		state[r.ID] = 2
		out = append(out, r)
	}
	for _, r := range rules {
		visit(r)
	}
	return out
}

func incidentLess(a, b *Incident) bool {
	if a.Severity != b.Severity {
		return a.Severity > b.Severity
	}
	if !a.Start.Equal(b.Start) {
		return a.Start.Before(b.Start)
	}
	if a.Rule != b.Rule {
		return a.Rule < b.Rule
	}
	fa, fb := firstFlow(a), firstFlow(b)
	if fa.Conversation != fb.Conversation {
		return fa.Conversation < fb.Conversation
	}
	if fa.Client != fb.Client {
		return fa.Client < fb.Client
	}
	return fa.Server < fb.Server
}

func firstFlow(inc *Incident) Flow {
	if len(inc.Flows) == 0 {
		return Flow{}
	}
	return inc.Flows[0]
}

// finish puts an incident in its final form: times in UTC, flows and
// evidence sorted, caps applied (what they leave out is counted), and
// cause references renumbered to the kept evidence.
func finish(inc *Incident, lim Limits) {
	inc.Start, inc.End = inc.Start.UTC(), inc.End.UTC()
	for i := range inc.Evidence {
		inc.Evidence[i].Time = inc.Evidence[i].Time.UTC()
	}
	sort.SliceStable(inc.Flows, func(i, j int) bool {
		a, b := inc.Flows[i], inc.Flows[j]
		if a.Conversation != b.Conversation {
			return a.Conversation < b.Conversation
		}
		if a.Client != b.Client {
			return a.Client < b.Client
		}
		return a.Server < b.Server
	})
	if len(inc.Flows) > lim.MaxFlows {
		inc.FlowsOmitted += len(inc.Flows) - lim.MaxFlows
		inc.Flows = inc.Flows[:lim.MaxFlows]
	}
	for i := range inc.Flows {
		if f := &inc.Flows[i]; f.conv != nil {
			f.Client, f.Server, f.conv = f.conv.Client.String(), f.conv.Server.String(), nil
		}
	}
	capEvidence(inc, lim.MaxEvidence)
	if inc.Flows == nil {
		inc.Flows = []Flow{}
	}
	if inc.Evidence == nil {
		inc.Evidence = []evidence.Item{}
	}
	if inc.Causes == nil {
		inc.Causes = []Cause{}
	}
	if inc.Next == nil {
		inc.Next = []string{}
	}
}

// capEvidence keeps at most max items, those a cause cites first, then
// the earliest; the kept items are sorted by time and the causes'
// references follow them.
func capEvidence(inc *Incident, max int) {
	n := len(inc.Evidence)
	keep := make([]bool, n)
	kept := 0
	for _, c := range inc.Causes {
		for _, i := range c.Evidence {
			if i >= 0 && i < n && !keep[i] && kept < max {
				keep[i] = true
				kept++
			}
		}
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return evidenceLess(&inc.Evidence[order[a]], &inc.Evidence[order[b]]) })
	for _, i := range order {
		if kept >= max {
			break
		}
		if !keep[i] {
			keep[i] = true
			kept++
		}
	}
	newIndex := make([]int, n)
	items := make([]evidence.Item, 0, kept)
	for _, i := range order {
		newIndex[i] = -1
		if keep[i] {
			newIndex[i] = len(items)
			item := inc.Evidence[i]
			if i < len(inc.texts) {
				t := inc.texts[i]
				item.What = fmt.Sprintf(t.format, t.args...)
			}
			items = append(items, item)
		}
	}
	inc.EvidenceOmitted += n - len(items)
	inc.Evidence, inc.texts = items, nil
	for ci := range inc.Causes {
		refs := inc.Causes[ci].Evidence[:0]
		for _, i := range inc.Causes[ci].Evidence {
			if i >= 0 && i < n && newIndex[i] >= 0 {
				refs = append(refs, newIndex[i])
			}
		}
		slices.Sort(refs)
		inc.Causes[ci].Evidence = slices.Compact(refs)
		if len(inc.Causes[ci].Evidence) == 0 {
			inc.Causes[ci].Evidence = nil
		}
	}
}

func evidenceLess(a, b *evidence.Item) bool {
	if !a.Time.Equal(b.Time) {
		return a.Time.Before(b.Time)
	}
	if a.Source != b.Source {
		return a.Source < b.Source
	}
	if a.Packet != b.Packet {
		return a.Packet < b.Packet
	}
	return a.Line < b.Line
}

// span widens [start, end] to include t; a zero t (evidence cited
// without a time) leaves it as it is.
func span(start, end *time.Time, t time.Time) {
	if t.IsZero() {
		return
	}
	if start.IsZero() || t.Before(*start) {
		*start = t
	}
	if t.After(*end) {
		*end = t
	}
}
