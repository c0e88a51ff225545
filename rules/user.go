package rules

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
	"go.yaml.in/yaml/v3"

	"wiremortem/evidence"
	"wiremortem/flows"
)

// LoadRules reads user-defined rules (--rules FILE), YAML:
//
//	rules:
//	  - id: slow-handshake
//	    title: Slow TCP handshake
//	    severity: medium
//	    thresholds:
//	      slow: 1s
//	    when: handshake.completed && handshake.wait > threshold.slow
//	    summary: "${client} waited ${handshake.wait} for ${server} to answer its SYN"
//	    causes: ["The server's accept queue or SYN backlog is full."]
//	    next: ["ss -lnt 'sport = :${server_port}' on ${server_ip}"]
//
// Expressions are github.com/expr-lang/expr over the documented
// conversation fields (docs/rules.md), compiled once here: every error
// names the file, the line and the field.
func LoadRules(path string) ([]*Rule, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return loadRules(path, data)
}

// loadRules compiles a rules file's content; path names it in errors.
func loadRules(path string, data []byte) ([]*Rule, error) {
	root, err := parseYAML(data)
	if err != nil {
		return nil, fmt.Errorf("%s:%v", path, err)
	}
	fail := func(line int, format string, args ...any) error {
		return fmt.Errorf("%s:%d: %s", path, line, fmt.Sprintf(format, args...))
	}
	if root == nil {
		return nil, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fail(root.Line, "the file must be a mapping with a rules: list")
	}
	var list *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if k := root.Content[i]; k.Value != "rules" {
			return nil, fail(k.Line, "unknown key %q (want rules)", k.Value)
		}
		list = resolveAlias(root.Content[i+1])
	}
	if list == nil || list.Kind != yaml.SequenceNode {
		return nil, fail(root.Line, "want rules: followed by a list of rules")
	}
	var out []*Rule
	seen := map[string]int{}
	for _, item := range list.Content {
		r, err := compileUserRule(path, resolveAlias(item))
		if err != nil {
			return nil, err
		}
		if line, dup := seen[r.ID]; dup {
			return nil, fail(item.Line, "rule %s: id already used on line %d", r.ID, line)
		}
		if _, builtin := registry[r.ID]; builtin {
			return nil, fail(item.Line, "rule %s: a built-in rule has this id", r.ID)
		}
		seen[r.ID] = item.Line
		out = append(out, r)
	}
	return out, nil
}

// userRule is a compiled user-defined rule.
type userRule struct {
	id, file string
	line     int
	severity Severity
	// confidence is "high", "medium" or "low" (default medium).
	confidence string
	// env is the expressions' environment type: ConversationFields
	// embedded, plus a "threshold" struct with one field per threshold.
	env        reflect.Type
	thresholds []Param
	when       *vm.Program
	whenLine   int
	summary    *template
	causes     []*template
	next       []*template
}

// userRuleFields are the keys a user rule may have.
var userRuleFields = []string{"id", "title", "severity", "doc", "over", "confidence", "thresholds", "when", "summary", "causes", "next"}

func compileUserRule(file string, n *yaml.Node) (*Rule, error) {
	u := &userRule{file: file, line: n.Line, confidence: "medium"}
	fail := func(line int, field, format string, args ...any) error {
		name := u.id
		if name == "" {
			name = "at line " + strconv.Itoa(n.Line)
		}
		return fmt.Errorf("%s:%d: rule %s: %s: %s", file, line, name, field, fmt.Sprintf(format, args...))
	}
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d: each rule must be a mapping (id: ..., when: ...)", file, n.Line)
	}
	fields := map[string]*yaml.Node{}
	lines := map[string]int{}
	var unknown *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolveAlias(n.Content[i+1])
		if !slices.Contains(userRuleFields, k.Value) && unknown == nil {
			unknown = k
		}
		fields[k.Value], lines[k.Value] = v, k.Line
	}
	text := func(name string, required bool) (string, error) {
		v, ok := fields[name]
		if !ok {
			if required {
				return "", fail(n.Line, name, "missing")
			}
			return "", nil
		}
		if v.Kind != yaml.ScalarNode || v.Value == "" {
			return "", fail(lines[name], name, "want a non-empty string")
		}
		return v.Value, nil
	}
	var err error
	if u.id, err = text("id", true); err != nil {
		return nil, err
	}
	if !validID.MatchString(u.id) {
		id := u.id
		u.id = ""
		return nil, fail(lines["id"], "id", "%q: use lower-case words joined by '-'", id)
	}
	if unknown != nil {
		return nil, fail(unknown.Line, unknown.Value, "unknown field (want one of %s)", strings.Join(userRuleFields, ", "))
	}
	r := &Rule{ID: u.id}
	if r.Title, err = text("title", true); err != nil {
		return nil, err
	}
	sev, err := text("severity", true)
	if err != nil {
		return nil, err
	}
	if u.severity, err = ParseSeverity(sev); err != nil {
		return nil, fail(lines["severity"], "severity", "%v", err)
	}
	r.Severity = u.severity
	if c, err := text("confidence", false); err != nil {
		return nil, err
	} else if c != "" {
		if c != "high" && c != "medium" && c != "low" {
			return nil, fail(lines["confidence"], "confidence", "%q: want high, medium or low", c)
		}
		u.confidence = c
	}
	if over, err := text("over", false); err != nil {
		return nil, err
	} else if over != "" && over != "conversation" {
		return nil, fail(lines["over"], "over", "%q: rules can run over conversations only (over: conversation)", over)
	}
	if t, ok := fields["thresholds"]; ok {
		if u.thresholds, err = userThresholds(t); err != nil {
			return nil, fail(err.(*lineError).line, "thresholds", "%s", err.(*lineError).msg)
		}
	}
	u.env = userEnv(u.thresholds)
	when, err := text("when", true)
	if err != nil {
		return nil, err
	}
	u.whenLine = lines["when"]
	if u.when, err = expr.Compile(when, expr.Env(reflect.New(u.env).Elem().Interface()), expr.AsBool()); err != nil {
		return nil, fail(lines["when"], "when", "%s", exprError(err))
	}
	summary, err := text("summary", true)
	if err != nil {
		return nil, err
	}
	if u.summary, err = compileTemplate(summary, u.env); err != nil {
		return nil, fail(lines["summary"], "summary", "%v", err)
	}
	for _, list := range []struct {
		name string
		into *[]*template
	}{{"causes", &u.causes}, {"next", &u.next}} {
		v, ok := fields[list.name]
		if !ok {
			continue
		}
		if v.Kind != yaml.SequenceNode {
			return nil, fail(lines[list.name], list.name, "want a list of strings")
		}
		for _, item := range v.Content {
			if item.Kind != yaml.ScalarNode {
				return nil, fail(item.Line, list.name, "want a list of strings")
			}
			t, err := compileTemplate(item.Value, u.env)
			if err != nil {
				return nil, fail(item.Line, list.name, "%v", err)
			}
			*list.into = append(*list.into, t)
		}
	}
	r.Doc, _ = text("doc", false)
	if r.Doc == "" {
		r.Doc = fmt.Sprintf("User-defined rule (%s:%d): fires on every conversation where %s.", file, n.Line, when)
	}
	r.Params = u.thresholds
	r.Detect = u.detect
	return r, nil
}

// userThresholds reads a rule's thresholds; each one's kind follows from
// how its default is written: 2s is a duration, 5 a count, 64KiB bytes,
// 0.05 or 5% a ratio, [30s, 60s] a list of durations.
func userThresholds(n *yaml.Node) ([]Param, error) {
	if n.Kind != yaml.MappingNode {
		return nil, &lineError{n.Line, "want a mapping of name: default"}
	}
	var out []Param
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolveAlias(n.Content[i+1])
		if !validParam.MatchString(k.Value) {
			return nil, &lineError{k.Line, fmt.Sprintf("%q: use lower-case words joined by '_'", k.Value)}
		}
		// YAML's decoder lets a flow mapping repeat a key ({a: 1, a: 2}).
		if seen[k.Value] {
			return nil, &lineError{k.Line, k.Value + " is given twice"}
		}
		seen[k.Value] = true
		raw, err := yamlValue(v)
		if err != nil {
			return nil, &lineError{k.Line, k.Value + ": " + err.Error()}
		}
		p, err := inferParam(k.Value, raw)
		if err != nil {
			return nil, &lineError{k.Line, k.Value + ": " + err.Error()}
		}
		p.Doc = fmt.Sprintf("user threshold (default written as %v)", formatValue(mustStore(p)))
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func inferParam(name string, raw any) (Param, error) {
	switch v := raw.(type) {
	case []any:
		d, err := parseDurations(v)
		return DurationsParam(name, d, ""), err
	case int64:
		if v < 0 {
			return Param{}, fmt.Errorf("%d is negative", v)
		}
		return CountParam(name, v, ""), nil
	case float64:
		r, err := parseRatio(v)
		return RatioParam(name, r, ""), err
	case string:
		if d, err := time.ParseDuration(v); err == nil && d >= 0 {
			return DurationParam(name, d, ""), nil
		}
		if strings.HasSuffix(v, "%") {
			r, err := parseRatio(v)
			return RatioParam(name, r, ""), err
		}
		if b, err := parseBytes(v); err == nil && strings.TrimLeft(v, "0123456789. ") != "" {
			return BytesParam(name, b, ""), nil
		}
	}
	return Param{}, fmt.Errorf("%s is not a duration (2s), count (5), byte size (64KiB), ratio (0.05, 5%%) or list of durations ([30s, 60s])", describe(raw))
}

func mustStore(p Param) any {
	v, _ := p.stored()
	return v
}

// goType is the Go type a threshold has in expressions.
func goType(k Kind) reflect.Type {
	switch k {
	case KindDuration:
		return reflect.TypeFor[time.Duration]()
	case KindRatio:
		return reflect.TypeFor[float64]()
	case KindDurations:
		return reflect.TypeFor[[]time.Duration]()
	}
	return reflect.TypeFor[int64]()
}

// userEnv builds the expressions' environment: the conversation fields,
// and threshold.NAME for each threshold, typed so that a misspelt name or
// a duration compared with a number fails when the rule is loaded.
func userEnv(thresholds []Param) reflect.Type {
	var fields []reflect.StructField
	for _, p := range thresholds {
		fields = append(fields, reflect.StructField{
			Name: strings.ToUpper(p.Name[:1]) + p.Name[1:], Type: goType(p.Kind), Tag: reflect.StructTag(`expr:"` + p.Name + `"`),
		})
	}
	return reflect.StructOf([]reflect.StructField{
		{Name: "ConversationFields", Type: reflect.TypeFor[ConversationFields](), Anonymous: true},
		{Name: "Threshold", Type: reflect.StructOf(fields), Tag: `expr:"threshold"`},
	})
}

// anonymousStruct hides the generated threshold type in expr's messages.
var anonymousStruct = regexp.MustCompile(`type struct \{[^}]*\}`)

func exprError(err error) string {
	return anonymousStruct.ReplaceAllString(err.Error(), "threshold")
}

// detect runs the rule over every conversation.
func (u *userRule) detect(ctx *Context) []Incident {
	env := reflect.New(u.env).Elem()
	th := env.Field(1)
	for i, p := range u.thresholds {
		v := ctx.Params.values[p.Name]
		switch x := v.(type) {
		case count:
			th.Field(i).SetInt(int64(x))
		case byteCount:
			th.Field(i).SetInt(int64(x))
		default:
			th.Field(i).Set(reflect.ValueOf(x))
		}
	}
	all := ctx.In.fields()
	var out []Incident
	for i, c := range ctx.In.Conversations {
		env.Field(0).Set(reflect.ValueOf(all[i]))
		vars := env.Interface()
		hit, err := expr.Run(u.when, vars)
		if err != nil {
			ctx.fail(u.id, fmt.Sprintf("%s:%d: when, on conversation %d: %s", u.file, u.whenLine, c.ID, exprError(err)))
			continue
		}
		if hit != true {
			continue
		}
		inc, err := u.incident(c, vars)
		if err != nil {
			ctx.fail(u.id, fmt.Sprintf("%s:%d: on conversation %d: %v", u.file, u.line, c.ID, err))
			continue
		}
		out = append(out, inc)
	}
	return out
}

func (u *userRule) incident(c *flows.Conversation, vars any) (Incident, error) {
	d := newDraft(u.severity, u.confidence)
	d.flow(c)
	summary, err := u.summary.render(vars)
	if err != nil {
		return Incident{}, fmt.Errorf("summary: %v", err)
	}
	d.Summary = summary
	proof := []int{d.cite(evidence.Stamp{Time: c.Start, Ref: c.FirstPacket}, "first packet of %s > %s", c.Client, c.Server)}
	if m := c.Closing.First; m != nil {
		kind := "FIN"
		if c.Closing.RSTs[m.By] == m {
			kind = "RST"
		}
		proof = append(proof, d.cite(m.Stamp, "first %s, from %s", kind, who(c, m.By)))
	}
	proof = append(proof, d.cite(evidence.Stamp{Time: c.End, Ref: c.LastPacket}, "last packet"))
	for i, t := range u.causes {
		text, err := t.render(vars)
		if err != nil {
			return Incident{}, fmt.Errorf("causes[%d]: %v", i, err)
		}
		d.cause(text, proof...)
	}
	if len(u.causes) == 0 {
		d.cause(fmt.Sprintf("The condition of rule %s (%s:%d) holds for this conversation.", u.id, u.file, u.line), proof...)
	}
	for i, t := range u.next {
		text, err := t.render(vars)
		if err != nil {
			return Incident{}, fmt.Errorf("next[%d]: %v", i, err)
		}
		d.next(text)
	}
	return d.done(), nil
}

// template is text with ${expression} parts.
type template struct {
	literal []string // len(literal) == len(parts)+1
	parts   []*vm.Program
}

func compileTemplate(text string, env reflect.Type) (*template, error) {
	t := &template{}
	rest := text
	for {
		i := strings.Index(rest, "${")
		if i < 0 {
			t.literal = append(t.literal, rest)
			return t, nil
		}
		end := closingBrace(rest[i+2:])
		if end < 0 {
			return nil, fmt.Errorf("unclosed ${ in %q", text)
		}
		src := rest[i+2 : i+2+end]
		p, err := expr.Compile(src, expr.Env(reflect.New(env).Elem().Interface()))
		if err != nil {
			return nil, fmt.Errorf("${%s}: %s", src, exprError(err))
		}
		t.literal = append(t.literal, rest[:i])
		t.parts = append(t.parts, p)
		rest = rest[i+2+end+1:]
	}
}

// closingBrace finds the } that closes an expression, skipping braces in
// nested literals and quoted strings; -1 when there is none.
func closingBrace(s string) int {
	depth := 0
	var quote byte
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'' || c == '`':
			quote = c
		case c == '{':
			depth++
		case c == '}':
			if depth == 0 {
				return i
			}
			depth--
		}
	}
	return -1
}

func (t *template) render(vars any) (string, error) {
	var b strings.Builder
	for i, p := range t.parts {
		b.WriteString(t.literal[i])
		v, err := expr.Run(p, vars)
		if err != nil {
			return "", errors.New(exprError(err))
		}
		b.WriteString(templateValue(v))
	}
	b.WriteString(t.literal[len(t.literal)-1])
	return b.String(), nil
}

// templateValue writes a value the way built-in summaries do.
func templateValue(v any) string {
	switch x := v.(type) {
	case time.Duration:
		return seconds(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case float64:
		return strconv.FormatFloat(x, 'g', 4, 64)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}
