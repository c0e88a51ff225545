package rules

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
	"go.yaml.in/yaml/v3"
)

// Config files and user-rule files are read into a flat list of leaves,
// each with its line, so every error can say "file:line: key: problem"
// whatever the syntax was.

// lineError is a problem at a line of the file being read; the caller
// prefixes the file name.
type lineError struct {
	line int
	msg  string
}

func (e *lineError) Error() string { return fmt.Sprintf("%d: %s", e.line, e.msg) }

// yamlSyntax matches yaml.v3's error text, "yaml: line 3: did not find
// expected key", to move the line number where our errors keep it.
var yamlSyntax = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML reads a YAML document into its root node (nil when empty).
func parseYAML(data []byte) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		msg := err.Error()
		if m := yamlSyntax.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			return nil, &lineError{line, m[2]}
		}
		return nil, &lineError{1, strings.TrimPrefix(msg, "yaml: ")}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

// yamlEntries flattens a YAML config into leaves.
func yamlEntries(data []byte) ([]configEntry, error) {
	root, err := parseYAML(data)
	if err != nil || root == nil {
		return nil, err
	}
	var out []configEntry
	if err := walkYAML(root, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// maxConfigDepth bounds how deep a config nests; deeper means a
// recursive alias (a: &x {b: *x}), which would otherwise never end.
const maxConfigDepth = 16

func walkYAML(n *yaml.Node, path []string, out *[]configEntry) error {
	n = resolveAlias(n)
	if len(path) > maxConfigDepth {
		return &lineError{n.Line, strings.Join(path[:3], ".") + "...: nested more than 16 deep (a recursive alias?)"}
	}
	if n.Kind != yaml.MappingNode {
		if len(path) == 0 {
			return &lineError{n.Line, "the file must be a mapping (rules: ..., limits: ...)"}
		}
		v, err := yamlValue(n)
		if err != nil {
			return &lineError{n.Line, strings.Join(path, ".") + ": " + err.Error()}
		}
		*out = append(*out, configEntry{path: path, value: v, line: n.Line})
		return nil
	}
	if len(n.Content) == 0 && len(path) > 0 {
		*out = append(*out, configEntry{path: path, value: map[string]any{}, line: n.Line})
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return &lineError{k.Line, "keys must be plain names"}
		}
		child := append(append([]string(nil), path...), k.Value)
		if v = resolveAlias(v); v.Kind != yaml.MappingNode {
			val, err := yamlValue(v)
			if err != nil {
				return &lineError{k.Line, strings.Join(child, ".") + ": " + err.Error()}
			}
			*out = append(*out, configEntry{path: child, value: val, line: k.Line})
			continue
		}
		if err := walkYAML(v, child, out); err != nil {
			return err
		}
	}
	return nil
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for depth := 0; n.Kind == yaml.AliasNode && n.Alias != nil && depth < 8; depth++ {
		n = n.Alias
	}
	return n
}

// yamlValue decodes a scalar or a list of scalars into string, int64,
// float64, bool, nil or []any.
func yamlValue(n *yaml.Node) (any, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, err
		}
		if i, ok := v.(int); ok {
			return int64(i), nil
		}
		return v, nil
	case yaml.SequenceNode:
		items := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			c = resolveAlias(c)
			if c.Kind != yaml.ScalarNode {
				return nil, errors.New("a list may hold only plain values")
			}
			v, err := yamlValue(c)
			if err != nil {
				return nil, err
			}
			items = append(items, v)
		}
		return items, nil
	}
	return nil, errors.New("unexpected value")
}

// tomlEntries flattens a TOML config into leaves. Values come from go-toml's
// decoder (which also rejects duplicate keys); lines come from its
// low-level parser, which knows where each key was written.
func tomlEntries(data []byte) ([]configEntry, error) {
	var tree map[string]any
	if err := toml.Unmarshal(data, &tree); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, _ := de.Position()
			return nil, &lineError{row, de.Error()}
		}
		return nil, &lineError{1, err.Error()}
	}
	lines := tomlKeyLines(data)
	var out []configEntry
	var walk func(m map[string]any, path []string)
	walk = func(m map[string]any, path []string) {
		for _, k := range sortedKeys(m) {
			child := append(append([]string(nil), path...), k)
			line := lines[strings.Join(child, "\x00")]
			switch v := m[k].(type) {
			case map[string]any:
				if len(v) == 0 {
					out = append(out, configEntry{path: child, value: v, line: line})
				}
				walk(v, child)
			case []any:
				out = append(out, configEntry{path: child, value: v, line: line})
			default:
				out = append(out, configEntry{path: child, value: v, line: line})
			}
		}
	}
	walk(tree, nil)
	// Report problems in file order, as a reader expects.
	sort.SliceStable(out, func(i, j int) bool { return out[i].line < out[j].line })
	return out, nil
}

// tomlKeyLines maps every key path (parts joined by NUL) to the line where
// it was written.
func tomlKeyLines(data []byte) map[string]int {
	lines := map[string]int{}
	var p unstable.Parser
	p.Reset(data)
	var table []string
	var keyValue func(n *unstable.Node, prefix []string)
	keyValue = func(n *unstable.Node, prefix []string) {
		path := append([]string(nil), prefix...)
		line := 0
		for it := n.Key(); it.Next(); {
			k := it.Node()
			path = append(path, string(k.Data))
			line = p.Shape(k.Raw).Start.Line
			if _, seen := lines[strings.Join(path, "\x00")]; !seen {
				lines[strings.Join(path, "\x00")] = line
			}
		}
		if v := n.Value(); v.Kind == unstable.InlineTable {
			for it := v.Children(); it.Next(); {
				if c := it.Node(); c.Kind == unstable.KeyValue {
					keyValue(c, path)
				}
			}
		}
	}
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = table[:0]
			for it := e.Key(); it.Next(); {
				k := it.Node()
				table = append(table, string(k.Data))
				if _, seen := lines[strings.Join(table, "\x00")]; !seen {
					lines[strings.Join(table, "\x00")] = p.Shape(k.Raw).Start.Line
				}
			}
		case unstable.KeyValue:
			keyValue(e, table)
		}
	}
	return lines
}
