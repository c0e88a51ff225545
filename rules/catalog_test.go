package rules

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"wiremortem/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite golden files (docs/rules.md)")

// TestDocsGolden keeps docs/rules.md equal to what the catalog prints, so
// the documentation never drifts from the rules: run go test ./rules
// -update after changing a rule.
func TestDocsGolden(t *testing.T) {
	var b bytes.Buffer
	if err := WriteCatalog(&b, nil); err != nil {
		t.Fatal(err)
	}
	b.WriteString("\n")
	if err := WriteFieldReference(&b); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(testenv.RepoRoot(), "docs", "rules.md")
	if *update {
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Errorf("docs/rules.md is out of date: run go test ./rules -update")
	}
}

// TestCatalogCoversEverything: every rule, every parameter with its kind
// and default, and every field of the user-rule environment is documented.
func TestCatalogCoversEverything(t *testing.T) {
	var b bytes.Buffer
	if err := WriteCatalog(&b, nil); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	want := []string{"syn-unanswered", "syn-refused", "synack-retransmitted", "zero-window-rst", "zero-window-stall",
		"close-wait", "rst-mid-stream", "idle-timeout-teardown", "retransmission-storm",
		"ws-upgrade-no-101", "ws-upgrade-rejected", "ws-bad-accept", "ws-abnormal-close", "ws-protocol-violation", "server-read-no-write",
		"upstream-connect-refused", "upstream-timeout"}
	if len(Builtin()) != len(want) {
		t.Errorf("%d built-in rules, want %d", len(Builtin()), len(want))
	}
	for _, id := range want {
		if !strings.Contains(out, "\n## "+id+"\n") {
			t.Errorf("catalog lacks rule %s", id)
		}
	}
	flat := strings.Join(strings.Fields(out), " ")
	for _, r := range Builtin() {
		for _, p := range r.Params {
			def, _ := p.stored()
			entry := "`" + r.ID + "." + p.Name + "` (" + p.Kind.String() + ", default `" + formatValue(def) + "`"
			if !strings.Contains(flat, entry) {
				t.Errorf("catalog lacks %s", entry)
			}
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if len(line) > 78 && !strings.HasPrefix(line, "|") {
			t.Errorf("line over 78 columns: %q", line)
		}
	}
	b.Reset()
	if err := WriteFieldReference(&b); err != nil {
		t.Fatal(err)
	}
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			if f.Tag.Get("expr") == "" || f.Tag.Get("doc") == "" {
				t.Errorf("field %s%s lacks an expr name or a doc", prefix, f.Name)
			}
			if f.Type.Kind() == reflect.Struct && f.Type.PkgPath() == typ.PkgPath() {
				walk(prefix+f.Tag.Get("expr")+".", f.Type)
			} else if !strings.Contains(b.String(), "| `"+prefix+f.Tag.Get("expr")+"` |") {
				t.Errorf("field reference lacks %s%s", prefix, f.Tag.Get("expr"))
			}
		}
	}
	walk("", reflect.TypeFor[ConversationFields]())
}

func TestCatalogShowsConfig(t *testing.T) {
	cfg, _ := NewConfig()
	for _, s := range []string{"close-wait.min_age=2500ms", "retransmission-storm.enabled=false"} {
		if err := ParseSet(cfg, s); err != nil {
			t.Fatal(err)
		}
	}
	var b bytes.Buffer
	if err := WriteCatalog(&b, cfg); err != nil {
		t.Fatal(err)
	}
	flat := strings.Join(strings.Fields(b.String()), " ")
	for _, want := range []string{"`close-wait.min_age` (duration, default `1s`, set to `2500ms`)", "Disabled by the configuration"} {
		if !strings.Contains(flat, want) {
			t.Errorf("catalog lacks %q", want)
		}
	}
}
