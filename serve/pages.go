package serve

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"wiremortem/rules"
)

//go:embed assets
var assets embed.FS

// Every string a page shows may come from a hostile capture, log or file
// name, or from whoever typed a case name: html/template escapes each by
// its context, and pathEscape keeps a case id one path segment.
var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"bytes":      formatBytes,
	"when":       formatTime,
	"pathEscape": url.PathEscape,
	"severities": severities,
}).ParseFS(assets, "assets/pages/*.html"))

// reportPolicy is added to the report's own policy (a meta tag admitting
// its inline script and style by hash; both policies apply, so the
// stricter wins) when the report is opened from serve: the sandbox gives
// the page an origin of its own, so a script that got into a report
// could not reach serve's pages, cookie or cases.
const reportPolicy = "sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.index)
	mux.HandleFunc("POST /cases", s.createCase)
	mux.HandleFunc("GET /cases/{id}", s.showCase)
	mux.HandleFunc("GET /cases/{id}/progress", s.caseProgress)
	mux.HandleFunc("GET /cases/{id}/report", s.viewReport)
	mux.HandleFunc("GET /cases/{id}/report.html", s.download(reportHTML, "text/html; charset=utf-8"))
	mux.HandleFunc("GET /cases/{id}/report.json", s.download(reportJSON, "application/json"))
	mux.HandleFunc("POST /cases/{id}/analyse", s.reanalyseCase)
	mux.HandleFunc("POST /cases/{id}/delete", s.deleteCaseForm)
	mux.HandleFunc("DELETE /cases/{id}", s.deleteCaseAPI)
	static, _ := fs.Sub(assets, "assets/static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	// Browsers ask for it on pages without an icon link: the reports.
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, static, "favicon.svg")
	})
	return mux
}

// page is what every template gets.
type page struct {
	Title string
	// Refresh reloads the page every two seconds when scripts are off
	// (a case still queued or running).
	Refresh bool
	Cases   []*Case
	Case    *Case
	// MaxFile and MaxCase are the upload caps, shown and checked before
	// sending by the page's script.
	MaxFile, MaxCase int64
	Problem          string
	Status           int
}

func (s *Server) render(w http.ResponseWriter, status int, name string, p page) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, name, p); err != nil {
		s.logf("page %s: %v", name, err)
	}
}

func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	cases, err := s.listCases()
	if err != nil {
		s.problem(w, r, err)
		return
	}
	s.render(w, http.StatusOK, "index.html", page{Title: "cases", Cases: cases, MaxFile: s.cfg.MaxFileBytes, MaxCase: s.cfg.MaxCaseBytes})
}

// wantsJSON tells the page's script (and API clients) from a form post.
func wantsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// problem answers a refused or failed request, as a page or as JSON.
func (s *Server) problem(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	var re *requestError
	if errors.As(err, &re) {
		status = re.status
	} else {
		s.logf("%s %s: %v", r.Method, r.URL.Path, err)
	}
	if wantsJSON(r) {
		writeJSON(w, status, map[string]string{"error": err.Error()})
		return
	}
	s.render(w, status, "problem.html", page{Title: http.StatusText(status), Problem: err.Error(), Status: status})
}

var errNoCase = &requestError{http.StatusNotFound, "no such case"}

// caseOf reads the case the URL names, or answers 404.
func (s *Server) caseOf(w http.ResponseWriter, r *http.Request) (*Case, bool) {
	c, ok := s.readCase(r.PathValue("id"))
	if !ok {
		s.problem(w, r, errNoCase)
	}
	return c, ok
}

func (s *Server) createCase(w http.ResponseWriter, r *http.Request) {
	id, err := s.receiveCase(w, r)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	where := "/cases/" + id
	if wantsJSON(r) {
		writeJSON(w, http.StatusCreated, map[string]string{"id": id, "url": where})
		return
	}
	http.Redirect(w, r, where, http.StatusSeeOther)
}

func (s *Server) showCase(w http.ResponseWriter, r *http.Request) {
	c, ok := s.caseOf(w, r)
	if !ok {
		return
	}
	s.render(w, http.StatusOK, "case.html", page{Title: c.Name(), Case: c, Refresh: c.Progress != nil})
}

// caseState is what a case's page polls for while it waits.
type caseState struct {
	*Progress
	State string `json:"state"`
	// Text says the same in words.
	Text string `json:"text"`
}

func (s *Server) caseProgress(w http.ResponseWriter, r *http.Request) {
	c, ok := s.caseOf(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, caseState{Progress: c.Progress, State: c.State(), Text: c.Progress.Describe()})
}

// Describe says how far a case got: its place in the queue, or the
// captures' bytes read.
func (p *Progress) Describe() string {
	switch {
	case p == nil:
		return ""
	case p.State == Queued && p.QueuePosition == 1:
		return "next in the queue"
	case p.State == Queued:
		return fmt.Sprintf("%d cases ahead in the queue", p.QueuePosition-1)
	case p.BytesTotal == 0:
		return "checking the inputs"
	case p.BytesRead >= p.BytesTotal:
		return fmt.Sprintf("captures read (%d packets); reading the logs and judging", p.Packets)
	}
	return fmt.Sprintf("reading the captures: %s of %s, %d packets", formatBytes(p.BytesRead), formatBytes(p.BytesTotal), p.Packets)
}

// viewReport opens the report in the browser, sandboxed.
func (s *Server) viewReport(w http.ResponseWriter, r *http.Request) {
	c, ok := s.caseOf(w, r)
	if !ok {
		return
	}
	if !c.HasReport {
		s.problem(w, r, &requestError{http.StatusNotFound, "this case has no report"})
		return
	}
	w.Header().Set("Content-Security-Policy", reportPolicy)
	s.serveFile(w, r, path.Join(c.ID, reportHTML), "text/html; charset=utf-8")
}

// download serves one of a case's outputs as an attachment named after
// the case: the same bytes analyze --json and -o write.
func (s *Server) download(name, contentType string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, ok := s.caseOf(w, r)
		if !ok {
			return
		}
		if !s.isFile(path.Join(c.ID, name)) {
			s.problem(w, r, &requestError{http.StatusNotFound, "this case has no " + name})
			return
		}
		w.Header().Set("Content-Security-Policy", reportPolicy)
		w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": "wiremortem-" + c.ID + "-" + name}))
		s.serveFile(w, r, path.Join(c.ID, name), contentType)
	}
}

func (s *Server) serveFile(w http.ResponseWriter, r *http.Request, name, contentType string) {
	f, err := s.root.Open(name)
	if err != nil {
		s.problem(w, r, err)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		s.problem(w, r, err)
		return
	}
	w.Header().Set("Content-Type", contentType)
	http.ServeContent(w, r, "", st.ModTime(), f)
}

func (s *Server) reanalyseCase(w http.ResponseWriter, r *http.Request) {
	c, ok := s.caseOf(w, r)
	if !ok {
		return
	}
	if c.Manifest == nil {
		s.problem(w, r, &requestError{http.StatusConflict, "this case came from a batch run: run batch again to analyse it again"})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFields*maxFieldBytes)
	if err := r.ParseForm(); err != nil {
		s.problem(w, r, readError(err, 0))
		return
	}
	var m Manifest
	for _, field := range []string{fieldTimeZones, fieldOffsets, fieldDate, fieldLogFormat} {
		if len(r.PostForm[field]) > 1 || len(r.PostForm.Get(field)) > maxFieldBytes {
			s.problem(w, r, badRequest("form field %q given twice or over %s", field, formatBytes(maxFieldBytes)))
			return
		}
		m.setField(field, r.PostForm.Get(field))
	}
	if err := s.reanalyse(c.ID, m.Settings); err != nil {
		s.problem(w, r, err)
		return
	}
	s.logf("case %s: queued again", c.ID)
	http.Redirect(w, r, "/cases/"+c.ID, http.StatusSeeOther)
}

func (s *Server) deleteCaseForm(w http.ResponseWriter, r *http.Request) {
	if s.deleteNamed(w, r) {
		http.Redirect(w, r, "/", http.StatusSeeOther)
	}
}

func (s *Server) deleteCaseAPI(w http.ResponseWriter, r *http.Request) {
	if s.deleteNamed(w, r) {
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Server) deleteNamed(w http.ResponseWriter, r *http.Request) bool {
	c, ok := s.caseOf(w, r)
	if !ok {
		return false
	}
	if err := s.deleteCase(c.ID); err != nil {
		s.problem(w, r, err)
		return false
	}
	s.logf("case %s: deleted", c.ID)
	return true
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}

// severityCount is one severity's incident count.
type severityCount struct {
	Severity string
	Count    int
}

// severities orders a case's incident counts from the most severe.
func severities(counts map[string]int) []severityCount {
	var out []severityCount
	for sev := rules.Critical; sev >= rules.Info; sev-- {
		if n := counts[sev.String()]; n > 0 {
			out = append(out, severityCount{sev.String(), n})
		}
	}
	return out
}
