package main

import (
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"wiremortem"
)

// TestDemo runs the demo twice: the JSON and the HTML are byte-identical,
// and the incidents are exactly those the four seed scenarios' facts.json
// plant (optional consequences aside), each on a page that names it.
func TestDemo(t *testing.T) {
	dir := t.TempDir()
	var docs, pages [2][]byte
	for i := range docs {
		jsonPath, htmlPath := filepath.Join(dir, "demo.json"), filepath.Join(dir, "demo.html")
		var stderr bytes.Buffer
		if code := run([]string{"demo", "-o", htmlPath, "--json", jsonPath}, io.Discard, &stderr); code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		var err error
		if docs[i], err = os.ReadFile(jsonPath); err != nil {
			t.Fatal(err)
		}
		if pages[i], err = os.ReadFile(htmlPath); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(docs[0], docs[1]) || !bytes.Equal(pages[0], pages[1]) {
		t.Error("two demo runs wrote different outputs")
	}

	var want []string
	for _, scenario := range wiremortem.DemoScenarios {
		data, err := fs.ReadFile(wiremortem.Demo(), scenario+"/facts.json")
		if err != nil {
			t.Fatal(err)
		}
		var facts struct {
			Incidents []struct {
				Rule     string `json:"rule"`
				Optional bool   `json:"optional"`
			} `json:"incidents"`
		}
		if err := json.Unmarshal(data, &facts); err != nil {
			t.Fatal(err)
		}
		for _, inc := range facts.Incidents {
			if !inc.Optional {
				want = append(want, inc.Rule)
			}
		}
	}
	var doc struct {
		Incidents []struct {
			Rule string `json:"rule"`
		} `json:"incidents"`
	}
	if err := json.Unmarshal(docs[0], &doc); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, inc := range doc.Incidents {
		got = append(got, inc.Rule)
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("demo incidents %v, the seeds plant %v", got, want)
	}
	for _, rule := range want {
		if !bytes.Contains(pages[0], []byte(rule)) {
			t.Errorf("the report page does not name %s", rule)
		}
	}
}

// TestDemoExplainAndStdout: demo --explain tells the seeds' stories in the
// terminal (seed 000 from the server's trace, seed 003's read of 0 bytes
// with no close); with the report on standard output, nothing follows
// the page there.
func TestDemoExplainAndStdout(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"demo", "-o", filepath.Join(t.TempDir(), "demo.html"), "--explain"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{"\nHIGH ws-upgrade-no-101: ", "strace first read on fd 9", "no 101 after 5.001s", "\nMEDIUM close-wait: ", "returned 0: the peer closed", "report written to "} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("demo --explain prints no %q", want)
		}
	}
	stdout.Reset()
	if code := run([]string{"demo", "-o", "-"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("-o -: exit %d: %s", code, stderr.String())
	}
	page := stdout.String()
	end := strings.LastIndex(page, "</html>")
	if !strings.HasPrefix(page, "<!DOCTYPE html>") || end < 0 || strings.TrimSpace(page[end+len("</html>"):]) != "" {
		t.Errorf("standard output is not the page alone: %.80q ... %q", page, page[max(0, len(page)-200):])
	}
}
