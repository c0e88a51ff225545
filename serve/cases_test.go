package serve

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCaseURLs checks that only a case's own directory answers: ids that
// are not case names, escape attempts and symbolic links out of the data
// directory all get 404.
func TestCaseURLs(t *testing.T) {
	s, ts := start(t, Config{})
	id := mustUpload(t, ts, fileFrom(t, filepath.Join(seedDir("ws-no-101"), "capture.pcap")))
	settle(t, s, id)
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret.html")
	if err := os.WriteFile(secret, []byte("<p>secret</p>"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A case whose report is a link out, and a case that is one.
	linked := filepath.Join(s.Dir(), "linked")
	os.Mkdir(linked, 0o700)
	os.WriteFile(filepath.Join(linked, summaryName), []byte(`{"group":"linked","status":"analysed"}`), 0o600)
	if err := os.Symlink(secret, filepath.Join(linked, reportHTML)); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(outside, summaryName), []byte(`{"group":"x","status":"analysed"}`), 0o600)
	os.Symlink(secret, filepath.Join(outside, reportHTML))
	if err := os.Symlink(outside, filepath.Join(s.Dir(), "away")); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(s.Dir(), ".hidden"), 0o700)
	os.WriteFile(filepath.Join(s.Dir(), ".hidden", summaryName), []byte(`{"group":"x","status":"analysed"}`), 0o600)

	for _, path := range []string{
		"/cases/..%2F..%2F" + url.PathEscape(outside[1:]) + "/report",
		"/cases/%2e%2e/report",
		"/cases/.hidden",
		"/cases/.hidden/report.json",
		"/cases/" + id + "%2F..%2F" + id + "/report",
		"/cases/linked/report",
		"/cases/away/report",
		"/cases/away",
		"/cases/no-such-case",
		"/cases/" + id + "/inputs/capture.pcap",
		"/cases/" + id + "/manifest.json",
	} {
		resp, body := get(t, ts, path)
		if resp.StatusCode != http.StatusNotFound || strings.Contains(body, "secret") {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
	}
	cases, _ := s.listCases()
	var ids []string
	for _, c := range cases {
		ids = append(ids, c.ID)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{id, "linked"}) {
		t.Errorf("cases listed: %v", ids)
	}
	if c, _ := s.readCase("linked"); c.HasReport {
		t.Errorf("a report linked out of the data directory counts as the case's report")
	}
}

// TestDelete deletes a finished case, a running one (its analysis is
// stopped first) and a queued one.
func TestDelete(t *testing.T) {
	s, ts := start(t, Config{Workers: 1})
	capture := fileFrom(t, filepath.Join(seedDir("ws-no-101"), "capture.pcap"))
	done := mustUpload(t, ts, capture)
	settle(t, s, done)
	started, _ := block(s)
	running := mustUpload(t, ts, capture)
	<-started
	queued := mustUpload(t, ts, capture)
	if p := s.progress(queued); p == nil || p.State != Queued || p.QueuePosition != 1 {
		t.Fatalf("progress of the queued case: %+v", p)
	}
	resp, body := get(t, ts, "/cases/"+running+"/progress")
	var st caseState
	if err := json.Unmarshal([]byte(body), &st); err != nil || resp.StatusCode != http.StatusOK || st.State != "running" || st.Text == "" {
		t.Errorf("progress of the running case: %d %s", resp.StatusCode, body)
	}
	for _, tt := range []struct {
		id, method, path string
		status           int
	}{
		{done, "POST", "/cases/" + done + "/delete", http.StatusSeeOther},
		{running, "POST", "/cases/" + running + "/delete", http.StatusSeeOther},
		{queued, "DELETE", "/cases/" + queued, http.StatusNoContent},
	} {
		resp, body := do(t, ts, tt.method, tt.path, nil)
		if resp.StatusCode != tt.status {
			t.Errorf("%s %s: %d %s", tt.method, tt.path, resp.StatusCode, body)
		}
		if _, err := os.Stat(filepath.Join(s.Dir(), tt.id)); !os.IsNotExist(err) {
			t.Errorf("%s still there: %v", tt.id, err)
		}
	}
	for _, tt := range []struct{ method, path string }{
		{"POST", "/cases/" + done + "/delete"},
		{"DELETE", "/cases/..%2Fcases"},
	} {
		if resp, _ := do(t, ts, tt.method, tt.path, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s %s: %d", tt.method, tt.path, resp.StatusCode)
		}
	}
	if resp, _ := get(t, ts, "/cases/"+done+"/delete"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET of a delete: %d", resp.StatusCode)
	}
	if left := dirNames(t, s.Dir()); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
}

// TestCloseInterrupts stops the server with a case running and one
// queued: the running one is marked interrupted, the queued one stays
// queued, and a new server on the same directory analyses the queued one
// and can analyse the interrupted one again.
func TestCloseInterrupts(t *testing.T) {
	data := filepath.Join(t.TempDir(), "cases")
	first, err := New(Config{Data: data, Workers: 1, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(first.Handler())
	started, _ := block(first)
	capture := fileFrom(t, filepath.Join(seedDir("ws-no-101"), "capture.pcap"))
	trace := fileFrom(t, filepath.Join(seedDir("ws-no-101"), "server.strace"))
	running := mustUpload(t, ts, capture, trace)
	<-started
	queued := mustUpload(t, ts, capture, trace)
	// A crash during an upload leaves its staging directory.
	os.MkdirAll(filepath.Join(data, stagingPrefix+"20260101-000000-abcdefgh", inputsDir), 0o700)
	ts.Close()
	first.Close()

	if m := readManifest(t, data, running); m.State != Interrupted || !strings.Contains(m.Note, "server stopped") {
		t.Errorf("running case after close: %s %q", m.State, m.Note)
	}
	if m := readManifest(t, data, queued); m.State != Queued {
		t.Errorf("queued case after close: %s", m.State)
	}

	second, ts2 := start(t, Config{Data: data})
	if got := settle(t, second, queued); got.State() != "analysed" {
		t.Errorf("the queued case after a restart: %s", got.State())
	}
	if got, _ := second.readCase(running); got.State() != string(Interrupted) {
		t.Errorf("the interrupted case after a restart: %s", got.State())
	}
	_, page := get(t, ts2, "/cases/"+running)
	if !strings.Contains(page, "the server stopped") {
		t.Errorf("the case's page does not say it was interrupted")
	}
	if left := dirNames(t, data); slices.ContainsFunc(left, func(n string) bool { return strings.HasPrefix(n, ".") }) {
		t.Errorf("staging left after a restart: %v", left)
	}
	form := url.Values{fieldTimeZones: {"Asia/Shanghai"}, fieldLogFormat: {"combined"}}
	resp, body := do(t, ts2, "POST", "/cases/"+running+"/analyse", strings.NewReader(form.Encode()), "Content-Type", "application/x-www-form-urlencoded")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("analyse again: %d %s", resp.StatusCode, body)
	}
	got := settle(t, second, running)
	if got.State() != "analysed" || !slices.Equal(got.Manifest.Settings.TimeZones, []string{"Asia/Shanghai"}) || got.Manifest.Settings.LogFormat != "combined" || !slices.Contains(got.Summary.Rules, "ws-upgrade-no-101") {
		t.Errorf("analysed again: %s, settings %+v, rules %v", got.State(), got.Manifest.Settings, got.Summary.Rules)
	}
	for _, tt := range []struct {
		form   url.Values
		status int
		says   string
	}{
		{url.Values{fieldTimeZones: {"Nowhere/Else"}}, http.StatusBadRequest, `time zone "Nowhere/Else"`},
		{url.Values{fieldDate: {"1", "2"}}, http.StatusBadRequest, "given twice"},
	} {
		resp, body := do(t, ts2, "POST", "/cases/"+running+"/analyse", strings.NewReader(tt.form.Encode()), "Content-Type", "application/x-www-form-urlencoded", "Accept", "application/json")
		var answer struct{ Error string }
		json.Unmarshal([]byte(body), &answer)
		if resp.StatusCode != tt.status || !strings.Contains(answer.Error, tt.says) {
			t.Errorf("analyse again with %v: %d %s", tt.form, resp.StatusCode, body)
		}
	}
}

func readManifest(t *testing.T, data, id string) Manifest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(data, id, manifestName))
	if err != nil {
		t.Fatal(err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
