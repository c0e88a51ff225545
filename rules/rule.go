// Package rules turns conversations (and, later, decoded records and log
// events) into incidents: labelled findings with their evidence, their
// likely causes and what to check next.
//
// Each built-in rule lives in its own file, rules/<id>.go, and registers
// itself: a stable id, a one-line title, a doc paragraph, named thresholds
// with units and defaults, and a severity. User-defined rules (--rules FILE)
// are expressions over the documented conversation fields and produce
// incidents of the same form. `wiremortem rules` prints the catalog.
package rules

import (
	"fmt"
	"regexp"
	"sort"

	"wiremortem/flows"
)

// Rule is one detector.
type Rule struct {
	// ID is stable: configs, --set flags and JSON consumers use it.
	ID string
	// Title is one line: what the incident is.
	Title string
	// Doc says what the rule detects, the kernel or RFC behaviour behind
	// it, and the traps that would make it fire wrongly.
	Doc string
	// Severity is the highest severity the rule reports; SeverityNote,
	// when it reports several, says which when ("medium, high when ...").
	Severity     Severity
	SeverityNote string
	Params       []Param
	// DefersTo names rules that explain a conversation better: this rule
	// skips conversations they already reported (Context.ExplainedBy), so
	// one conversation gets one best incident.
	DefersTo []string
	// Detect finds the incidents. It reads the input and its parameters
	// from ctx and returns incidents with everything but Rule and Title
	// filled in.
	Detect func(ctx *Context) []Incident
}

// Context is what a rule sees during one evaluation.
type Context struct {
	In     *Input
	Params Params
	// limits are the evaluation's caps (keptAtMost); zero outside one.
	limits Limits
	// deps are the runs of the rules this one defers to that run before
	// it, in run order; they have finished when it starts.
	deps []*ruleRun
	// problem collects a user rule's failures on individual inputs.
	problem *Problem
}

// ruleRun is one rule's run in an evaluation.
type ruleRun struct {
	id    string
	index int // in the run order
	ctx   *Context
	found []Incident
	// claims are the conversations its incidents list, set before done
	// is closed.
	claims map[int]bool
	done   chan struct{}
}

// maxProblemExamples caps the failure messages kept per rule.
const maxProblemExamples = 5

// fail records that the rule could not judge one input; the rule goes on
// with the others.
func (ctx *Context) fail(rule, example string) {
	if ctx.problem == nil {
		ctx.problem = &Problem{Rule: rule}
	}
	ctx.problem.Count++
	if len(ctx.problem.Examples) < maxProblemExamples {
		ctx.problem.Examples = append(ctx.problem.Examples, example)
	}
}

// ExplainedBy returns the rule, among those this rule defers to, that
// already reported conversation c, or "".
func (ctx *Context) ExplainedBy(c *flows.Conversation) string {
	for _, dep := range ctx.deps {
		if dep.claims[c.ID] {
			return dep.id
		}
	}
	return ""
}

var (
	registry = map[string]*Rule{}
	validID  = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)
	// validParam also keeps parameter names apart from the "enabled" switch.
	validParam = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
)

// Register adds a built-in rule; rule files call it from init. It panics on
// a malformed rule, so a mistake fails every test at once.
func Register(r Rule) {
	if err := r.check(); err != nil {
		panic(err)
	}
	if _, dup := registry[r.ID]; dup {
		panic("rules: duplicate rule id " + r.ID)
	}
	registry[r.ID] = &r
}

func (r *Rule) check() error {
	if !validID.MatchString(r.ID) {
		return fmt.Errorf("rules: rule id %q: use lower-case words joined by '-'", r.ID)
	}
	if r.Title == "" || r.Doc == "" || r.Detect == nil {
		return fmt.Errorf("rules: rule %s needs a title, a doc and a Detect function", r.ID)
	}
	seen := map[string]bool{}
	for _, p := range r.Params {
		if !validParam.MatchString(p.Name) || p.Name == "enabled" {
			return fmt.Errorf("rules: rule %s: parameter name %q: use lower-case words joined by '_' (and not \"enabled\")", r.ID, p.Name)
		}
		if seen[p.Name] {
			return fmt.Errorf("rules: rule %s: duplicate parameter %s", r.ID, p.Name)
		}
		seen[p.Name] = true
		if p.Doc == "" {
			return fmt.Errorf("rules: rule %s: parameter %s has no doc", r.ID, p.Name)
		}
		if _, err := p.stored(); err != nil {
			return fmt.Errorf("rules: rule %s: %v", r.ID, err)
		}
	}
	return nil
}

// Builtin returns the built-in rules sorted by id.
func Builtin() []*Rule {
	out := make([]*Rule, 0, len(registry))
	for _, r := range registry {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// param finds a declared parameter.
func (r *Rule) param(name string) (Param, bool) {
	for _, p := range r.Params {
		if p.Name == name {
			return p, true
		}
	}
	return Param{}, false
}

func (r *Rule) paramNames() []string {
	names := make([]string, len(r.Params))
	for i, p := range r.Params {
		names[i] = p.Name
	}
	return names
}

// defaults returns the rule's parameters at their defaults.
func (r *Rule) defaults() map[string]any {
	values := make(map[string]any, len(r.Params))
	for _, p := range r.Params {
		v, _ := p.stored() // checked by Register
		values[p.Name] = v
	}
	return values
}
