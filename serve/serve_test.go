package serve

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"wiremortem/analysis"
	"wiremortem/batch"
	"wiremortem/internal/lab"
)

// TestSeeds uploads each of the four seed incidents' captures and logs,
// as someone would drop them on the page, and checks that each case finds
// its planted incidents: the "done when".
func TestSeeds(t *testing.T) {
	s, ts := start(t, Config{Workers: 2})
	for _, name := range []string{"ws-no-101", "zero-window-nginx", "syn-backlog", "close-wait"} {
		t.Run(name, func(t *testing.T) {
			dir := seedDir(name)
			facts, err := lab.Load(filepath.Join(dir, "facts.json"))
			if err != nil {
				t.Fatal(err)
			}
			parts := []part{field(fieldName, "seed "+name)}
			for _, f := range facts.Files {
				switch f.Kind {
				case lab.KindNginxConf, lab.KindClientLog:
					continue // not an input wiremortem reads
				}
				parts = append(parts, fileFrom(t, filepath.Join(dir, f.Name)))
				if f.LogFormat != "" {
					parts = append(parts, field(fieldLogFormat, f.LogFormat))
				}
			}
			c := settle(t, s, mustUpload(t, ts, parts...))
			if c.State() != "analysed" {
				t.Fatalf("state %s: %+v", c.State(), c.Summary)
			}
			for _, want := range facts.Incidents {
				if !want.Optional && !slices.Contains(c.Summary.Rules, want.Rule) {
					t.Errorf("rule %s not found; the case's rules: %v", want.Rule, c.Summary.Rules)
				}
			}
			if !c.HasReport || !c.HasJSON {
				t.Errorf("report %v, JSON %v", c.HasReport, c.HasJSON)
			}
		})
	}
}

// TestUploadStoresWhatWasSent checks the stored files byte for byte, the
// hashes computed while writing, the detected kinds, the settings, and
// that the outputs download as analyze writes them.
func TestUploadStoresWhatWasSent(t *testing.T) {
	s, ts := start(t, Config{})
	capture := fileFrom(t, filepath.Join(seedDir("ws-no-101"), "capture.pcap"))
	trace := fileFrom(t, filepath.Join(seedDir("ws-no-101"), "server.strace"))
	id := mustUpload(t, ts, field(fieldName, "  the monitor's upgrade  "), capture, trace,
		field(fieldTimeZones, "Asia/Shanghai\nerror.log=UTC"), field(fieldOffsets, "server.strace=0s"), field(fieldDate, "2026-11-22"))
	c := settle(t, s, id)
	m := c.Manifest
	if m.Name != "the monitor's upgrade" {
		t.Errorf("name %q", m.Name)
	}
	if want := (Settings{TimeZones: []string{"Asia/Shanghai", "error.log=UTC"}, Offsets: []string{"server.strace=0s"}, Date: "2026-11-22"}); !slices.Equal(m.Settings.TimeZones, want.TimeZones) || !slices.Equal(m.Settings.Offsets, want.Offsets) || m.Settings.Date != want.Date {
		t.Errorf("settings %+v, want %+v", m.Settings, want)
	}
	for i, sent := range []part{capture, trace} {
		u := m.Uploads[i]
		stored, err := os.ReadFile(filepath.Join(s.Dir(), id, inputsDir, u.Name))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(sent.content)
		if u.Name != sent.file || u.SentName != "" || string(stored) != string(sent.content) || u.Size != int64(len(sent.content)) || u.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("upload %d: %+v; stored %d bytes", i, u, len(stored))
		}
		if u.SHA256 != c.Summary.Inputs[i].SHA256 {
			t.Errorf("%s: hashed %s while written, %s by batch", u.Name, u.SHA256, c.Summary.Inputs[i].SHA256)
		}
	}
	if m.Uploads[0].Kind != analysis.KindCapture || m.Uploads[1].Kind != analysis.KindStrace {
		t.Errorf("kinds %s, %s", m.Uploads[0].Kind, m.Uploads[1].Kind)
	}
	for _, tt := range []struct{ path, file, contentType, disposition, starts string }{
		{"/cases/" + id + "/report", reportHTML, "text/html; charset=utf-8", "", "<!DOCTYPE html>"},
		{"/cases/" + id + "/report.html", reportHTML, "text/html; charset=utf-8", "attachment; filename=wiremortem-" + id + "-report.html", "<!DOCTYPE html>"},
		{"/cases/" + id + "/report.json", reportJSON, "application/json", "attachment; filename=wiremortem-" + id + "-report.json", "{"},
	} {
		resp, body := get(t, ts, tt.path)
		onDisk, err := os.ReadFile(filepath.Join(s.Dir(), id, tt.file))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != tt.contentType || resp.Header.Get("Content-Disposition") != tt.disposition || !strings.HasPrefix(body, tt.starts) || body != string(onDisk) {
			t.Errorf("%s: %d %q %q, %d bytes (%d on disk)", tt.path, resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Content-Disposition"), len(body), len(onDisk))
		}
	}
	var doc struct {
		Incidents []struct {
			Rule string `json:"rule"`
		} `json:"incidents"`
	}
	_, body := get(t, ts, "/cases/"+id+"/report.json")
	if err := json.Unmarshal([]byte(body), &doc); err != nil || len(doc.Incidents) == 0 {
		t.Errorf("report.json: %v, %d incidents", err, len(doc.Incidents))
	}
}

// TestFileNames sends hostile and colliding names: each is stored under a
// safe name inside the case's inputs, nothing lands anywhere else, and
// nothing is overwritten.
func TestFileNames(t *testing.T) {
	s, ts := start(t, Config{})
	names := []struct{ sent, stored string }{
		{"capture.pcap", "capture.pcap"},
		{"../../../../tmp/evil.log", "evil.log"},
		{`..\..\windows\win.ini`, "win.ini"},
		{".bashrc", "bashrc"},
		{"..", "upload"},
		{".", "upload-2"},
		{"-rf", "rf"},
		{"a b;c|d$(e)`f`.log", "a_b_c_d__e__f_.log"},
		{"evil\u202egol.pcap", "evil_gol.pcap"},
		{"抓包 2026-11-22.pcap", "抓包_2026-11-22.pcap"},
		{"<script>alert(1)<\\script>.log", "script_.log"},
		{strings.Repeat("a", 300) + ".pcap", strings.Repeat("a", maxNameBytes-5) + ".pcap"},
		{"same.log", "same.log"},
		{"same.log", "same-2.log"},
		{"dir/same.log", "same-3.log"},
	}
	var parts []part
	for i, n := range names {
		parts = append(parts, file(n.sent, []byte{byte(i)}))
	}
	id := mustUpload(t, ts, parts...)
	c := settle(t, s, id)
	for i, n := range names {
		u := c.Manifest.Uploads[i]
		if u.Name != n.stored {
			t.Errorf("%q stored as %q, want %q", n.sent, u.Name, n.stored)
		}
		b, err := os.ReadFile(filepath.Join(s.Dir(), id, inputsDir, u.Name))
		if err != nil || len(b) != 1 || b[0] != byte(i) {
			t.Errorf("%q: stored %v, %v", n.sent, b, err)
		}
	}
	if got := dirNames(t, filepath.Join(s.Dir(), id, inputsDir)); len(got) != len(names) {
		t.Errorf("%d files in inputs: %v", len(got), got)
	}
	if got := dirNames(t, filepath.Dir(s.Dir())); !slices.Equal(got, []string{"cases"}) {
		t.Errorf("files written beside the data directory: %v", got)
	}
}

func TestSafeName(t *testing.T) {
	for _, tt := range []struct{ sent, want string }{
		{"nul\x00byte", "nul_byte"},
		{"bell\a\x1b[31m", "bell___31m"},
		{"\xff\xfeinvalid", "_invalid"},
		{"....", "upload"},
		{"___", "upload"},
		{"+x", "x"},
		{"C:\\Users\\me\\capture.pcap", "capture.pcap"},
		{"trailing/", "upload"},
		{"e\u0301té.log", "e\u0301té.log"},
		{strings.Repeat("é", 100) + ".pcapng", strings.Repeat("é", 56) + ".pcapng"},
	} {
		if got := safeName(tt.sent); got != tt.want {
			t.Errorf("safeName(%q) = %q, want %q", tt.sent, got, tt.want)
		}
	}
}

// TestLimits checks the per-file and per-case caps and every refused
// form: each answers its status, says why, and leaves no case and no
// half-written file behind.
func TestLimits(t *testing.T) {
	s, ts := start(t, Config{MaxFileBytes: 1000, MaxCaseBytes: 1500})
	big := make([]byte, 1001)
	tests := []struct {
		name   string
		parts  []part
		status int
		says   string
	}{
		{"file over its cap", []part{file("big.pcap", big)}, http.StatusRequestEntityTooLarge, `"big.pcap" is over the limit of 1000 B per file`},
		{"case over its cap", []part{file("a.pcap", big[:800]), file("b.pcap", big[:800])}, http.StatusRequestEntityTooLarge, "over the limit of 1.5 KiB per case"},
		{"no files", []part{field(fieldName, "empty")}, http.StatusBadRequest, "no files in the upload"},
		{"file input left empty", []part{file("", nil)}, http.StatusBadRequest, "no files in the upload"},
		{"unknown field", []part{field("path", "/etc"), file("a.pcap", big[:10])}, http.StatusBadRequest, `unexpected form field "path"`},
		{"field too long", []part{field(fieldLogFormat, strings.Repeat("x", maxFieldBytes+1))}, http.StatusBadRequest, "is over 64 KiB"},
		{"too many fields", slices.Repeat([]part{field(fieldName, "x")}, maxFields+1), http.StatusBadRequest, "more than 32 form fields"},
		{"bad zone", []part{file("a.pcap", big[:10]), field(fieldTimeZones, "Mars/Olympus_Mons")}, http.StatusBadRequest, `time zone "Mars/Olympus_Mons"`},
		{"bad offset", []part{file("a.pcap", big[:10]), field(fieldOffsets, "-3s")}, http.StatusBadRequest, `offset "-3s": want SOURCE=DURATION`},
		{"bad date", []part{file("a.pcap", big[:10]), field(fieldDate, "yesterday")}, http.StatusBadRequest, `date "yesterday"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := upload(t, ts, tt.parts...)
			if u.status != tt.status || !strings.Contains(u.Error, tt.says) {
				t.Errorf("answered %d %q, want %d and %q", u.status, u.Error, tt.status, tt.says)
			}
			if left := dirNames(t, s.Dir()); len(left) != 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
	t.Run("exactly at the caps", func(t *testing.T) {
		id := mustUpload(t, ts, file("a.pcap", big[:1000]), file("b.pcap", big[:500]))
		if c := settle(t, s, id); len(c.Manifest.Uploads) != 2 {
			t.Errorf("uploads %+v", c.Manifest.Uploads)
		}
	})
	t.Run("not multipart", func(t *testing.T) {
		resp, body := do(t, ts, http.MethodPost, "/cases", strings.NewReader("files=x"), "Content-Type", "application/x-www-form-urlencoded")
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "not a multipart/form-data upload") {
			t.Errorf("%d %s", resp.StatusCode, body)
		}
	})
	t.Run("body cut short", func(t *testing.T) {
		body, contentType := multipartBody(t, file("a.pcap", big[:100]))
		raw, _ := io.ReadAll(body)
		resp, text := do(t, ts, http.MethodPost, "/cases", strings.NewReader(string(raw[:len(raw)-30])), "Content-Type", contentType, "Accept", "application/json")
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(text, "the upload broke off") {
			t.Errorf("%d %s", resp.StatusCode, text)
		}
		if left := dirNames(t, s.Dir()); len(left) != 1 {
			t.Errorf("left behind: %v", left)
		}
	})
}

// TestMalformedInputs uploads every broken capture of testdata/malformed:
// none crashes the server; what could not be read at all makes a failed
// case that keeps the reader's error, what was read up to damage makes an
// analysed case that says where reading stopped.
func TestMalformedInputs(t *testing.T) {
	s, ts := start(t, Config{Workers: 2})
	dir := filepath.Join(filepath.Dir(seedDir("x")), "..", "malformed")
	raw, err := os.ReadFile(filepath.Join(dir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var expected map[string]struct {
		Outcome string   `json:"outcome"`
		Stderr  []string `json:"stderr"`
	}
	if err := json.Unmarshal(raw, &expected); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for name := range expected {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			ids[name] = mustUpload(t, ts, fileFrom(t, filepath.Join(dir, name)))
		}
	}
	ids["junk.bin"] = mustUpload(t, ts, file("junk.bin", []byte("\x00\x01\x02 not a capture, not a log\n")))
	for name, id := range ids {
		t.Run(name, func(t *testing.T) {
			c := settle(t, s, id)
			want := expected[name]
			switch want.Outcome {
			case "read-fully":
				if c.State() != "analysed" || len(c.Summary.InputErrors) > 0 {
					t.Errorf("state %s, input errors %q", c.State(), c.Summary.InputErrors)
				}
			case "read-until":
				errs := strings.Join(c.Summary.InputErrors, "\n")
				for _, w := range want.Stderr {
					if !strings.Contains(errs, w) {
						t.Errorf("input errors %q do not say %q", errs, w)
					}
				}
				if c.State() != "analysed" {
					t.Errorf("state %s", c.State())
				}
			default:
				if c.State() != "failed" || !strings.Contains(c.Summary.Error, name) {
					t.Errorf("state %s, error %q", c.State(), c.Summary.Error)
				}
				_, page := get(t, ts, "/cases/"+id)
				if !strings.Contains(page, `id="case-error"`) {
					t.Errorf("the case's page shows no error")
				}
			}
		})
	}
	if resp, _ := get(t, ts, "/"); resp.StatusCode != http.StatusOK {
		t.Errorf("the case list answered %d", resp.StatusCode)
	}
}

// TestConcurrentUploads sends several uploads at once, with pages read
// meanwhile: every case is stored whole and analysed (run with -race).
func TestConcurrentUploads(t *testing.T) {
	s, ts := start(t, Config{Workers: 2})
	capture := fileFrom(t, filepath.Join(seedDir("ws-no-101"), "capture.pcap"))
	trace := fileFrom(t, filepath.Join(seedDir("ws-no-101"), "server.strace"))
	const n = 8
	ids := make([]string, n)
	ids[0] = mustUpload(t, ts, capture, trace)
	var wg sync.WaitGroup
	for i := 1; i < n; i++ {
		wg.Go(func() { ids[i] = mustUpload(t, ts, capture, trace) })
		wg.Go(func() {
			get(t, ts, "/")
			get(t, ts, "/cases/"+ids[0]+"/progress")
		})
	}
	wg.Wait()
	for _, id := range ids {
		c := settle(t, s, id)
		if c.State() != "analysed" || !slices.Contains(c.Summary.Rules, "ws-upgrade-no-101") || c.Manifest.Uploads[0].Size != int64(len(capture.content)) {
			t.Errorf("case %s: %s, rules %v", id, c.State(), c.Summary.Rules)
		}
	}
	if cases, _ := s.listCases(); len(cases) != n {
		t.Errorf("%d cases listed, want %d", len(cases), n)
	}
}

// TestBatchDirectory opens a batch --out directory as cases.
func TestBatchDirectory(t *testing.T) {
	out := t.TempDir()
	groups, _, err := batch.Discover([]string{seedDir("ws-no-101")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := batch.Run(context.Background(), groups, batch.Options{Out: out, RenderHTML: renderHTML}); err != nil {
		t.Fatal(err)
	}
	s, ts := start(t, Config{Data: out})
	cases, err := s.listCases()
	if err != nil || len(cases) != 1 {
		t.Fatalf("%d cases, %v", len(cases), err)
	}
	c := cases[0]
	if c.ID != groups[0].Name || c.State() != "analysed" || !slices.Contains(c.Summary.Rules, "ws-upgrade-no-101") || len(c.Inputs()) != 2 || c.Inputs()[0].Name != "capture.pcap" {
		t.Errorf("case %s: %s, rules %v, inputs %+v", c.ID, c.State(), c.Summary.Rules, c.Inputs())
	}
	_, page := get(t, ts, "/")
	if !strings.Contains(page, `href="/cases/`+c.ID+`/report"`) {
		t.Errorf("the list has no link to the report")
	}
	for _, path := range []string{"/cases/" + c.ID, "/cases/" + c.ID + "/report", "/cases/" + c.ID + "/report.json"} {
		if resp, _ := get(t, ts, path); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
	}
	resp, body := do(t, ts, http.MethodPost, "/cases/"+c.ID+"/analyse", nil)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "came from a batch run") {
		t.Errorf("analysing a batch group again: %d", resp.StatusCode)
	}
}
