package analysis

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"wiremortem/internal/testenv"
)

// TestJSONFieldsDocumented fails when a field of the JSON document is not
// named in docs/json.md: the contract must be written down.
func TestJSONFieldsDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "docs", "json.md"))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	seen := map[reflect.Type]bool{}
	collectJSONNames(reflect.TypeOf(Document{}), names, seen)
	// The conversation list is written by WriteJSON, not by the
	// Document's own tags.
	names["conversations"] = true
	collectJSONNames(reflect.TypeOf(Conversation{}), names, seen)
	var missing []string
	for n := range names {
		if !strings.Contains(string(doc), "`"+n+"`") {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("docs/json.md does not document: %s", strings.Join(missing, ", "))
	}
}

func collectJSONNames(t reflect.Type, names map[string]bool, seen map[reflect.Type]bool) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || seen[t] || t == reflect.TypeOf(time.Time{}) {
		return
	}
	seen[t] = true
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := strings.Split(f.Tag.Get("json"), ",")[0]
		if tag == "-" {
			continue
		}
		if tag != "" {
			names[tag] = true
		}
		collectJSONNames(f.Type, names, seen)
	}
}
