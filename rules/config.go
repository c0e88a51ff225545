package rules

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Config says which rules run and with which thresholds. Build it with
// NewConfig, then apply --rule-config files (LoadConfig) and --set flags
// (ParseSet) in the order the user gave them: later settings win.
type Config struct {
	// rules are the built-in rules plus the user-defined ones, by id.
	rules    map[string]*Rule
	disabled map[string]bool
	values   map[string]map[string]any
	Limits   Limits
}

// Limits cap what Evaluate returns, so one noisy capture cannot produce an
// unreadable report; whatever a cap leaves out is counted.
type Limits struct {
	// MaxIncidents caps the incidents (the most severe are kept);
	// Result.IncidentsOmitted counts the rest.
	MaxIncidents int
	// MaxFlows caps the flows listed per incident (Incident.FlowsOmitted).
	MaxFlows int
	// MaxEvidence caps the evidence items per incident
	// (Incident.EvidenceOmitted); items a cause cites are kept first.
	MaxEvidence int
}

// DefaultLimits are the caps when a config sets none.
var DefaultLimits = Limits{MaxIncidents: 1000, MaxFlows: 100, MaxEvidence: 40}

// limitKeys name the limits in config files and --set flags
// (limits.max_incidents=50).
var limitKeys = map[string]func(*Limits) *int{
	"max_incidents":             func(l *Limits) *int { return &l.MaxIncidents },
	"max_flows_per_incident":    func(l *Limits) *int { return &l.MaxFlows },
	"max_evidence_per_incident": func(l *Limits) *int { return &l.MaxEvidence },
}

// NewConfig returns the built-in rules and the given user-defined rules at
// their defaults. A user rule may not reuse a built-in rule's id.
func NewConfig(user ...*Rule) (*Config, error) {
	c := &Config{
		rules:    map[string]*Rule{},
		disabled: map[string]bool{},
		values:   map[string]map[string]any{},
		Limits:   DefaultLimits,
	}
	for _, r := range registry {
		c.rules[r.ID] = r
	}
	for _, r := range user {
		if _, dup := c.rules[r.ID]; dup {
			return nil, fmt.Errorf("user rule %q: a rule with this id already exists", r.ID)
		}
		c.rules[r.ID] = r
	}
	for id, r := range c.rules {
		c.values[id] = r.defaults()
	}
	return c, nil
}

// Rules returns the configured rules (built-in and user-defined) sorted by
// id.
func (c *Config) Rules() []*Rule {
	out := make([]*Rule, 0, len(c.rules))
	for _, r := range c.rules {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Enabled reports whether rule id runs.
func (c *Config) Enabled(id string) bool { return !c.disabled[id] }

// Params returns rule id's parameter values.
func (c *Config) Params(id string) Params { return Params{rule: id, values: c.values[id]} }

// ParseSet applies one --set flag: rule.param=value, rule.enabled=false, or
// limits.max_incidents=N.
func ParseSet(c *Config, assignment string) error {
	key, value, ok := strings.Cut(assignment, "=")
	if !ok {
		return fmt.Errorf("--set %q: want rule.param=value", assignment)
	}
	key = strings.TrimSpace(key)
	head, name, ok := strings.Cut(key, ".")
	if !ok || head == "" || name == "" {
		return fmt.Errorf("--set %q: want rule.param=value", assignment)
	}
	if err := c.apply(head, name, strings.TrimSpace(value)); err != nil {
		return fmt.Errorf("--set %s: %v", key, err)
	}
	return nil
}

// LoadConfig applies a --rule-config file: YAML, or TOML when the name ends
// in .toml. Errors name the file, the line and the key.
//
//	limits:
//	  max_incidents: 200
//	rules:
//	  close-wait:
//	    min_age: 2s
//	  idle-timeout-teardown:
//	    enabled: false
func LoadConfig(c *Config, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return c.load(path, data)
}

// load applies a config file's content; path names it in errors and picks
// the syntax.
func (c *Config) load(path string, data []byte) error {
	var entries []configEntry
	var err error
	if strings.EqualFold(filepath.Ext(path), ".toml") {
		entries, err = tomlEntries(data)
	} else {
		entries, err = yamlEntries(data)
	}
	if err != nil {
		return fmt.Errorf("%s:%v", path, err)
	}
	for _, e := range entries {
		if err := c.applyEntry(e); err != nil {
			return fmt.Errorf("%s:%d: %s: %v", path, e.line, strings.Join(e.path, "."), err)
		}
	}
	return nil
}

// configEntry is one leaf of a config file: its key path, its value
// (string, int64, float64, bool, []any, or map[string]any for an empty
// table) and the line it is on.
type configEntry struct {
	path  []string
	value any
	line  int
}

func (c *Config) applyEntry(e configEntry) error {
	switch {
	case len(e.path) == 2 && e.path[0] == "limits":
		return c.apply("limits", e.path[1], e.value)
	case len(e.path) == 3 && e.path[0] == "rules":
		return c.apply(e.path[1], e.path[2], e.value)
	case len(e.path) == 2 && e.path[0] == "rules":
		if _, ok := c.rules[e.path[1]]; !ok {
			return c.unknownRule(e.path[1])
		}
		return fmt.Errorf("want a table of parameters (min_age: 2s, enabled: false), got %s", describe(e.value))
	case e.path[0] == "rules" || e.path[0] == "limits":
		return fmt.Errorf("too deep: want rules.RULE.PARAM or limits.NAME")
	}
	return fmt.Errorf("unknown section %q (want rules or limits)", e.path[0])
}

// apply sets one value; raw comes from a file (typed) or --set (a string).
func (c *Config) apply(rule, name string, raw any) error {
	if rule == "limits" {
		field, ok := limitKeys[name]
		if !ok {
			return fmt.Errorf("unknown limit %q (have %s)", name, strings.Join(sortedKeys(limitKeys), ", "))
		}
		n, err := parseWhole(raw)
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("must be at least 1")
		}
		*field(&c.Limits) = int(min(n, 1<<31-1))
		return nil
	}
	r, ok := c.rules[rule]
	if !ok {
		return c.unknownRule(rule)
	}
	if name == "enabled" {
		on, err := parseBool(raw)
		if err != nil {
			return err
		}
		c.disabled[rule] = !on
		return nil
	}
	p, ok := r.param(name)
	if !ok {
		have := "enabled"
		if names := r.paramNames(); len(names) > 0 {
			have = strings.Join(names, ", ") + ", enabled"
		}
		return fmt.Errorf("rule %s has no parameter %q (has %s)", rule, name, have)
	}
	v, err := p.parse(raw)
	if err != nil {
		return fmt.Errorf("%v; want %s", err, p.Kind.Syntax())
	}
	c.values[rule][name] = v
	return nil
}

func (c *Config) unknownRule(id string) error {
	return fmt.Errorf("unknown rule %q (run 'wiremortem rules' for the list)", id)
}

func parseBool(raw any) (bool, error) {
	switch v := raw.(type) {
	case bool:
		return v, nil
	case string:
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "true", "yes", "on", "1":
			return true, nil
		case "false", "no", "off", "0":
			return false, nil
		}
	}
	return false, fmt.Errorf("%s is not true or false", describe(raw))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
