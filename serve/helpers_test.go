package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"wiremortem/internal/testenv"
)

// seedDir is a lab scenario's directory.
func seedDir(name string) string {
	return filepath.Join(testenv.RepoRoot(), "testdata", "captures", name)
}

// start runs a server on a fresh data directory (unless cfg names one)
// behind httptest, closed when the test ends.
func start(t *testing.T, cfg Config) (*Server, *httptest.Server) {
	t.Helper()
	if cfg.Data == "" {
		cfg.Data = filepath.Join(t.TempDir(), "cases")
	}
	cfg.Log = t.Logf
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		ts.Close()
		s.Close()
	})
	return s, ts
}

// part is one part of an upload: a text field, or a file when file is
// set (its name sent exactly as given).
type part struct {
	field, value string
	file         string
	content      []byte
}

func field(name, value string) part { return part{field: name, value: value} }

func file(name string, content []byte) part {
	return part{field: fieldFiles, file: name, content: content}
}

// fileFrom reads a file of a lab scenario into a part of the same name.
func fileFrom(t *testing.T, path string) part {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return file(filepath.Base(path), b)
}

// multipartBody writes parts as a browser does; file names are quoted
// with only '"' and '\' escaped, so hostile names arrive as sent.
func multipartBody(t *testing.T, parts ...part) (io.Reader, string) {
	t.Helper()
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	for _, p := range parts {
		var err error
		var pw io.Writer
		if p.file != "" || p.content != nil {
			h := textproto.MIMEHeader{}
			h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename="%s"`, p.field, strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(p.file)))
			h.Set("Content-Type", "application/octet-stream")
			pw, err = w.CreatePart(h)
			if err == nil {
				_, err = pw.Write(p.content)
			}
		} else {
			err = w.WriteField(p.field, p.value)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return &body, w.FormDataContentType()
}

// uploaded is the server's answer to an upload made as the page's
// script makes it.
type uploaded struct {
	status int
	ID     string `json:"id"`
	URL    string `json:"url"`
	Error  string `json:"error"`
}

func upload(t *testing.T, ts *httptest.Server, parts ...part) uploaded {
	t.Helper()
	body, contentType := multipartBody(t, parts...)
	req, err := http.NewRequest(http.MethodPost, ts.URL+"/cases", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Accept", "application/json")
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	u := uploaded{status: resp.StatusCode}
	if err := json.NewDecoder(resp.Body).Decode(&u); err != nil {
		t.Fatalf("upload answered %d with no JSON: %v", resp.StatusCode, err)
	}
	return u
}

// mustUpload uploads and fails the test unless a case was made.
func mustUpload(t *testing.T, ts *httptest.Server, parts ...part) string {
	t.Helper()
	u := upload(t, ts, parts...)
	if u.status != http.StatusCreated || u.ID == "" {
		t.Fatalf("upload answered %d: %s", u.status, u.Error)
	}
	return u.ID
}

// settle waits until a case is neither queued nor running.
func settle(t *testing.T, s *Server, id string) *Case {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		c, ok := s.readCase(id)
		if !ok {
			t.Fatalf("case %s vanished", id)
		}
		if st := c.State(); st != string(Queued) && st != string(Running) {
			return c
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("case %s still waiting after 2 minutes", id)
	return nil
}

// get fetches a path and returns the response with its body read.
func get(t *testing.T, ts *httptest.Server, path string, header ...string) (*http.Response, string) {
	t.Helper()
	return do(t, ts, http.MethodGet, path, nil, header...)
}

// do sends a request with header given as name, value pairs.
func do(t *testing.T, ts *httptest.Server, method, path string, body io.Reader, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, ts.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if strings.EqualFold(header[i], "Host") {
			req.Host = header[i+1]
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	client := *ts.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// block makes every analysis wait, once a worker took its case, until
// release is closed or the case's context ends; started receives the
// case ids as workers take them.
func block(s *Server) (started chan string, release chan struct{}) {
	started, release = make(chan string, 16), make(chan struct{})
	s.beforeAnalyse = func(ctx context.Context, id string) {
		started <- id
		select {
		case <-release:
		case <-ctx.Done():
		}
	}
	return started, release
}

// dirNames lists a directory's entries.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
