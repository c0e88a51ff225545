package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"wiremortem/analysis"
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

// TestUsageErrors: a wrong flag, value or subcommand says what was wrong
// and how to call, on stderr, with exit 2.
func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"analyze", "--bogus", "x.pcap"},
		{"analyze", "--max-buffer", "12x", "x.pcap"},
		{"flows", "--max-conversations", "x.pcap"},
		{"frobnicate"},
	} {
		var stderr bytes.Buffer
		code := run(args, io.Discard, &stderr)
		if code != exitUsage || !strings.Contains(stderr.String(), "Usage") || len(strings.SplitN(stderr.String(), "\n", 2)[0]) < 10 {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 with a message and the usage", args, code, stderr.String())
		}
	}
}

// TestCaps: each resource cap is a flag, and hitting it is counted in
// the output, never silent.
func TestCaps(t *testing.T) {
	dir := filepath.Join(testenv.RepoRoot(), "testdata", "captures", "ws-no-101")
	analyze := func(flags ...string) (doc map[string]any, verdict string) {
		t.Helper()
		verdict = analyzeJSON(t, &doc, append([]string{filepath.Join(dir, "capture.pcap"), filepath.Join(dir, "server.strace")}, flags...)...)
		return doc, verdict
	}
	doc, verdict := analyze("--max-incidents", "1")
	if doc["incidents_omitted"] != 1.0 || len(doc["incidents"].([]any)) != 1 {
		t.Errorf("--max-incidents 1: incidents_omitted %v, %d listed", doc["incidents_omitted"], len(doc["incidents"].([]any)))
	}
	if !strings.Contains(verdict, "1 more, less severe, not listed") {
		t.Errorf("the verdict hides the omitted incident:\n%s", verdict)
	}
	doc, _ = analyze("--max-log-line", "100")
	tooLong := 0.0
	for _, in := range doc["inputs"].([]any) {
		in := in.(map[string]any)
		if strings.HasSuffix(in["path"].(string), "server.strace") {
			for _, ex := range in["unparsed_examples"].([]any) {
				if ex.(map[string]any)["reason"] == "too long" {
					tooLong++
				}
			}
			if in["unparsed"].(float64) < 50 {
				t.Errorf("--max-log-line 100: only %v strace lines counted unparsed", in["unparsed"])
			}
		}
	}
	if tooLong == 0 {
		t.Error("--max-log-line 100: no line reported too long")
	}
}

// analyzeJSON runs analyze -q --json on args, reads the document into
// doc and returns what analyze printed (the verdict).
func analyzeJSON(t *testing.T, doc any, args ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "doc.json")
	var stdout, stderr bytes.Buffer
	if code := run(append([]string{"analyze", "-q", "--json", out}, args...), &stdout, &stderr); code != exitOK {
		t.Fatalf("%v: exit %d: %s", args, code, stderr.String())
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, doc); err != nil {
		t.Fatal(err)
	}
	return stdout.String()
}

// TestLogWarnings: a log line analyze does not understand is counted and
// said on stderr with its line, as well as in the JSON, and the exit code
// stays 0 (the rest of the log was read). Seed 000's strace output, with
// one foreign line appended.
func TestLogWarnings(t *testing.T) {
	seed := filepath.Join(testenv.RepoRoot(), "testdata", "captures", "ws-no-101")
	trace, err := os.ReadFile(filepath.Join(seed, "server.strace"))
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Count(trace, []byte("\n"))
	path := filepath.Join(t.TempDir(), "server.strace")
	trace = append(trace, "<script>alert(1)</script> is not strace\n"...)
	if err := os.WriteFile(path, trace, 0o644); err != nil {
		t.Fatal(err)
	}
	jsonPath := filepath.Join(t.TempDir(), "out.json")
	var stderr bytes.Buffer
	if code := run([]string{"analyze", filepath.Join(seed, "capture.pcap"), path, "--json", jsonPath}, io.Discard, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	want := fmt.Sprintf("wiremortem: warning: %s: 1 of %d lines not understood, the first at line %d (", path, lines+1, lines+1)
	if !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr %q; want it to contain %q", stderr.String(), want)
	}
	var doc struct {
		Warnings []struct {
			Source string `json:"source"`
			Line   int    `json:"line"`
		} `json:"warnings"`
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Warnings) != 1 || doc.Warnings[0].Source != path || doc.Warnings[0].Line != lines+1 {
		t.Errorf("JSON warnings %+v; want one for %s line %d", doc.Warnings, path, lines+1)
	}
}

// TestInterruptedExitCode: a run stopped by Ctrl-C (its document marked
// partial) says so on stderr and exits 130, before input errors (3) and
// --fail-on (1): a script must not take it for a whole analysis.
func TestInterruptedExitCode(t *testing.T) {
	for _, tt := range []struct {
		partial bool
		errs    int
		want    int
	}{
		{false, 0, exitOK},
		{false, 1, exitInputError},
		{true, 0, exitInterrupted},
		{true, 1, exitInterrupted},
	} {
		res := &analysis.Result{Document: &analysis.Document{Summary: analysis.Summary{Partial: tt.partial}}}
		for range tt.errs {
			res.InputErrors = append(res.InputErrors, &analysis.InputError{Path: "a.pcap", Err: io.ErrUnexpectedEOF})
		}
		var stderr bytes.Buffer
		if got := reportInputErrors(res, &stderr); got != tt.want {
			t.Errorf("partial %v, %d input errors: exit %d, want %d", tt.partial, tt.errs, got, tt.want)
		}
		if said := strings.Contains(stderr.String(), "interrupted"); said != tt.partial {
			t.Errorf("partial %v: stderr %q", tt.partial, stderr.String())
		}
	}
}

// TestWebSocketKeepFlags: --ws-messages and --ws-payload change what each
// WebSocket conversation keeps, nothing else: on the lab's ws-chatty
// capture (real gorilla/websocket conversations, one of them deflated),
// the messages kept are the first and last of the default run's, each
// payload is the start of the default's, and 0 keeps none while every
// message is still counted.
func TestWebSocketKeepFlags(t *testing.T) {
	capture := filepath.Join(testenv.RepoRoot(), "testdata", "captures", "ws-chatty", "capture.pcap")
	type message struct {
		Start            map[string]any `json:"start"`
		Length           int            `json:"length"`
		Payload          []byte         `json:"payload"`
		PayloadTruncated bool           `json:"payload_truncated"`
	}
	type summary struct {
		Messages        []message `json:"messages"`
		MessagesOmitted int       `json:"messages_omitted"`
	}
	analyze := func(flags ...string) []summary {
		t.Helper()
		var doc struct {
			Conversations []struct {
				HTTP *struct {
					WebSocket *summary `json:"websocket"`
				} `json:"http"`
			} `json:"conversations"`
		}
		analyzeJSON(t, &doc, append([]string{capture}, flags...)...)
		var sums []summary
		for _, c := range doc.Conversations {
			if c.HTTP != nil && c.HTTP.WebSocket != nil {
				sums = append(sums, *c.HTTP.WebSocket)
			}
		}
		return sums
	}
	base := analyze()
	if len(base) != 2 || len(base[0].Messages) != 64 {
		t.Fatalf("ws-chatty: %d WebSocket conversations, want 2 keeping 64 messages each", len(base))
	}
	for i, s := range analyze("--ws-messages", "4") {
		all := base[i].Messages
		want := []message{all[0], all[1], all[len(all)-2], all[len(all)-1]}
		if len(s.Messages) != 4 || s.MessagesOmitted != len(all)+base[i].MessagesOmitted-4 {
			t.Fatalf("--ws-messages 4: %d kept, %d omitted; want 4 of %d", len(s.Messages), s.MessagesOmitted, len(all)+base[i].MessagesOmitted)
		}
		for j := range want {
			if fmt.Sprint(s.Messages[j]) != fmt.Sprint(want[j]) {
				t.Errorf("--ws-messages 4: kept %v, want %v", s.Messages[j], want[j])
			}
		}
	}
	for i, s := range analyze("--ws-messages", "0") {
		if len(s.Messages) != 0 || s.MessagesOmitted != len(base[i].Messages)+base[i].MessagesOmitted {
			t.Errorf("--ws-messages 0: %d kept, %d omitted", len(s.Messages), s.MessagesOmitted)
		}
	}
	cut := func(n int) {
		for i, s := range analyze("--ws-payload", fmt.Sprint(n)) {
			for j, m := range s.Messages {
				full := base[i].Messages[j].Payload
				if want := full[:min(n, len(full))]; !bytes.Equal(m.Payload, want) || m.Length != base[i].Messages[j].Length {
					t.Fatalf("--ws-payload %d: payload %q (length %d), want %q (%d)", n, m.Payload, m.Length, want, base[i].Messages[j].Length)
				}
				if len(full) > n && !m.PayloadTruncated {
					t.Fatalf("--ws-payload %d: a %d-byte payload not marked truncated", n, len(full))
				}
			}
		}
	}
	cut(8)
	cut(0)
}

// TestExplain: analyze --explain prints each incident in full after the
// verdict, its transcripts included, and how the logs' times were put on
// the capture's clock; without it, the verdict alone.
// Seed 000's lab capture with the server's trace.
func TestExplain(t *testing.T) {
	seed := filepath.Join(testenv.RepoRoot(), "testdata", "captures", "ws-no-101")
	args := []string{"analyze", "-q", filepath.Join(seed, "capture.pcap"), "--strace", filepath.Join(seed, "server.strace")}
	var plain, explained, stderr bytes.Buffer
	if code := run(args, &plain, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if code := run(append(args, "--explain"), &explained, &stderr); code != exitOK {
		t.Fatalf("--explain: exit %d: %s", code, stderr.String())
	}
	rest, ok := strings.CutPrefix(explained.String(), plain.String())
	if !ok {
		t.Fatalf("--explain does not start with the verdict:\n%s", explained.String())
	}
	// The trace's times were shifted onto the capture's clock: the end
	// says by how much, so a line can be found in the file.
	for _, want := range []string{"\nHIGH ws-upgrade-no-101: ", "  likely causes:", "  evidence:", "  what conversation 2 said", "strace first read on fd 9", "no 101 after 5.001s", "log times above are on the capture's clock (UTC):\n  " + filepath.Join(seed, "server.strace") + ": zone UTC, assumed (no --tz given);", "times shifted by -8h"} {
		if !strings.Contains(rest, want) {
			t.Errorf("--explain prints no %q:\n%s", want, rest)
		}
	}
	if strings.Contains(plain.String(), "what conversation") {
		t.Error("the verdict alone shows transcripts")
	}
}

// TestProgressText: the progress line says what the analysis keeps
// against where the memory limit stops it, when there is one.
func TestProgressText(t *testing.T) {
	if got, want := progressText(2000, 2, 300<<20, 1200<<20), "reading captures: 2000 packets, 1000 packets/s, keeping 300 MiB (stops at 1200 MiB)"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
	if got, want := progressText(2000, 2, 300<<20, 0), "reading captures: 2000 packets, 1000 packets/s"; got != want {
		t.Errorf("no limit: %q, want %q", got, want)
	}
}
