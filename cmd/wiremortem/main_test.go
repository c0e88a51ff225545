package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"wiremortem/internal/testenv"
)

// TestAnalyzeWritesHTML runs analyze -o twice on a public capture (Zeek's
// http/206_example_b.pcap, zeek/zeek testing/btest/Traces) and checks the
// report is a self-contained page, byte-identical across runs.
func TestAnalyzeWritesHTML(t *testing.T) {
	capture := testenv.Corpus(t, "zeek/testing/btest/Traces/http/206_example_b.pcap")
	dir := t.TempDir()
	var pages [2][]byte
	for i := range pages {
		out := filepath.Join(dir, "report.html")
		var stderr bytes.Buffer
		if code := run([]string{"analyze", capture, "-o", out}, io.Discard, &stderr); code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		page, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		pages[i] = page
	}
	if !bytes.HasPrefix(pages[0], []byte("<!DOCTYPE html>")) || !bytes.Contains(pages[0], []byte(`http-equiv="Content-Security-Policy"`)) {
		t.Errorf("not a report page: %.200s", pages[0])
	}
	if !bytes.Equal(pages[0], pages[1]) {
		t.Error("two runs on the same capture wrote different reports")
	}
}

func TestAnalyzeOutputsConflict(t *testing.T) {
	var stderr bytes.Buffer
	code := run([]string{"analyze", "--json", "-", "-o", "-", "x.pcap"}, io.Discard, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), "cannot both write to standard output") {
		t.Errorf("exit %d, stderr %q; want a usage error", code, stderr.String())
	}
}
