package rules

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// WriteCatalog writes what `wiremortem rules` prints: every rule with its
// doc, severity and parameters (unit, default, and the value cfg sets when
// it differs), then how to change them. A nil cfg means the defaults. The
// text is Markdown that reads well in a terminal; docs/rules.md is built
// from it.
func WriteCatalog(w io.Writer, cfg *Config) error {
	if cfg == nil {
		cfg, _ = NewConfig()
	}
	b := bufio.NewWriter(w)
	fmt.Fprintln(b, "# wiremortem rules")
	fmt.Fprintln(b)
	wrap(b, "", "Each rule reads the TCP conversations of the captures and reports incidents: a summary with the numbers, the flows, the evidence (packets, log lines), the likely causes ranked, and what to check next. "+
		"Parameters are changed with --rule-config FILE (YAML, or TOML when the name ends in .toml) or --set rule.param=value; a rule is switched off with rule.enabled=false. "+
		"When two rules explain the same conversation, the one listed under \"defers to\" reports it and the other stays quiet.")
	for _, r := range cfg.Rules() {
		fmt.Fprintf(b, "\n## %s\n\n", r.ID)
		fmt.Fprintf(b, "%s.\n\n", strings.TrimSuffix(r.Title, "."))
		sev := "Severity: " + cmp.Or(r.SeverityNote, r.Severity.String())
		if !cfg.Enabled(r.ID) {
			sev += ". Disabled by the configuration"
		}
		wrap(b, "", sev+".")
		fmt.Fprintln(b)
		wrap(b, "", r.Doc)
		if len(r.DefersTo) > 0 {
			fmt.Fprintln(b)
			wrap(b, "", "Defers to: "+strings.Join(r.DefersTo, ", ")+".")
		}
		if len(r.Params) > 0 {
			fmt.Fprintln(b, "\nParameters:")
			fmt.Fprintln(b)
		}
		for _, p := range r.Params {
			def, _ := p.stored()
			line := fmt.Sprintf("- `%s.%s` (%s, default `%s`", r.ID, p.Name, p.Kind, formatValue(def))
			if now := cfg.values[r.ID][p.Name]; formatValue(now) != formatValue(def) {
				line += fmt.Sprintf(", set to `%s`", formatValue(now))
			}
			wrap(b, "  ", line+"): "+p.Doc+".")
		}
	}
	fmt.Fprintln(b, "\n## Configuration")
	fmt.Fprintln(b)
	wrap(b, "", "A --rule-config file in YAML; the same keys work in TOML ([rules.close-wait] min_age = \"2s\"). --set takes the same names: --set close-wait.min_age=2s, --set limits.max_incidents=200.")
	fmt.Fprint(b, "\n```yaml\nrules:\n  close-wait:\n    min_age: 2s\n  idle-timeout-teardown:\n    enabled: false\nlimits:\n")
	for _, name := range sortedKeys(limitKeys) {
		fmt.Fprintf(b, "  %s: %d\n", name, *limitKeys[name](&DefaultLimits))
	}
	fmt.Fprintln(b, "```")
	fmt.Fprintln(b)
	wrap(b, "", "Limits cap what one analysis reports: incidents (the most severe are kept), flows and evidence items per incident (evidence that a cause cites is kept first); what a cap leaves out is counted in incidents_omitted, flows_omitted and evidence_omitted. "+
		"Values are written as: duration "+KindDuration.Syntax()+"; count "+KindCount.Syntax()+"; bytes "+KindBytes.Syntax()+"; ratio "+KindRatio.Syntax()+"; durations "+KindDurations.Syntax()+".")
	return b.Flush()
}

// WriteFieldReference documents the fields user-defined rules (--rules
// FILE) can use in their expressions, from ConversationFields' tags.
func WriteFieldReference(w io.Writer) error {
	b := bufio.NewWriter(w)
	fmt.Fprintln(b, "# Fields for user-defined rules")
	fmt.Fprintln(b)
	wrap(b, "", "A --rules FILE (YAML) adds rules written as expressions (github.com/expr-lang/expr) evaluated on every conversation. Each rule has an id, a title, a severity (info, low, medium, high, critical), a `when` condition, a `summary` with ${expression} parts, and optionally thresholds (name: default; the default's form sets the kind, and --set id.name=value overrides it), causes and next steps (also with ${...}), a confidence (high, medium, low) and a doc. "+
		"Errors name the file, the line and the field. Durations compare with durations: handshake.wait > duration(\"1s\") or > threshold.slow.")
	fmt.Fprint(b, "\n```yaml\nrules:\n  - id: slow-handshake\n    title: Slow TCP handshake\n    severity: medium\n    thresholds:\n      slow: 1s\n    when: handshake.completed && handshake.wait > threshold.slow\n    summary: \"${client} waited ${handshake.wait} for ${server} to answer its SYN\"\n    causes:\n      - \"The accept queue or SYN backlog of ${server} is full.\"\n    next:\n      - \"ss -lnt 'sport = :${server_port}' on ${server_ip}\"\n```\n\n")
	fmt.Fprintln(b, "| field | type | meaning |")
	fmt.Fprintln(b, "| --- | --- | --- |")
	fmt.Fprintln(b, "| `threshold.NAME` | as declared | the rule's thresholds |")
	writeFields(b, "", reflect.TypeFor[ConversationFields]())
	return b.Flush()
}

func writeFields(b *bufio.Writer, prefix string, t reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		name := prefix + f.Tag.Get("expr")
		if f.Type.Kind() == reflect.Struct && f.Type.PkgPath() == t.PkgPath() {
			writeFields(b, name+".", f.Type)
			continue
		}
		fmt.Fprintf(b, "| `%s` | %s | %s |\n", name, typeName(f.Type), f.Tag.Get("doc"))
	}
}

func typeName(t reflect.Type) string {
	switch t.String() {
	case "time.Duration":
		return "duration"
	case "time.Time":
		return "time"
	case "int", "int64":
		return "integer"
	case "float64":
		return "number"
	}
	return t.String()
}

// wrap writes text as lines of at most 78 columns, each after indent
// (continuation lines of a list item get the indent).
func wrap(b *bufio.Writer, indent, text string) {
	const width = 78
	col := 0
	for i, word := range strings.Fields(text) {
		switch {
		case i == 0:
		case col+1+len(word) > width:
			b.WriteString("\n" + indent)
			col = len(indent)
		default:
			b.WriteByte(' ')
			col++
		}
		b.WriteString(word)
		col += len(word)
	}
	b.WriteByte('\n')
}
