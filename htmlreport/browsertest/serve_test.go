package browsertest

import (
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/chromedp/chromedp"

	"wiremortem/htmlreport/internal/reporttest"
	"wiremortem/internal/testenv"
	"wiremortem/serve"
)

// TestServe uses wiremortem serve's pages in Chromium as a person would:
// it opens the token link, names a case with the whole XSS corpus, chooses
// seed 000's capture and strace output (the trace under a hostile file
// name), uploads them through the page's form, waits on the case's page
// for the analysis, opens the report and reads the incidents' rule ids.
// No planted script runs on serve's pages, the report opens sandboxed,
// and no page logs a problem or asks for anything but serve's addresses.
func TestServe(t *testing.T) {
	const token = "browser-test-token"
	srv, err := serve.New(serve.Config{Data: filepath.Join(t.TempDir(), "cases"), Token: token, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ts.Close()
		srv.Close()
	})

	seed := filepath.Join(testenv.RepoRoot(), "testdata", "captures", "ws-no-101")
	hostileName := ""
	for _, s := range reporttest.XSS {
		// A file name holds anything but '/' and NUL.
		if !strings.ContainsAny(s, "/\x00") && utf8.ValidString(s) && strings.Contains(s, "<") {
			hostileName = s + ".strace"
			break
		}
	}
	trace := filepath.Join(t.TempDir(), hostileName)
	b, err := os.ReadFile(filepath.Join(seed, "server.strace"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(trace, b, 0o600); err != nil {
		t.Fatal(err)
	}
	caseName := strings.Join(reporttest.XSS, " ")

	// Serve's addresses only; and the calendar icon Chromium draws in a
	// date input, a data: URL of its own.
	p := startBrowser(t).tab(t, func(u string) bool {
		return strings.HasPrefix(u, ts.URL+"/") || strings.HasPrefix(u, "data:image/svg+xml;")
	})
	p.navigate(t, ts.URL+"/?token="+token, "form#upload")
	// The name goes in as JSON: chromedp.SetValue refuses some of the
	// corpus's characters.
	quoted, err := json.Marshal(caseName)
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(p.ctx,
		chromedp.Evaluate[chromedp.Void](`document.querySelector('input[name=name]').value = `+string(quoted)),
		chromedp.SetUploadFiles(`input[name=files]`, []string{filepath.Join(seed, "capture.pcap"), trace}),
		chromedp.Click(`button[type=submit]`),
	); err != nil {
		t.Fatal(err)
	}
	p.waitFor(t, `(document.getElementById('case-state') || {dataset: {}}).dataset.state`, "analysed", 2*time.Minute)

	st := p.serveState(t)
	checkServePage(t, "the case's page", st)
	for _, s := range reporttest.XSS {
		if shown := strings.ReplaceAll(s, "\x00", "\ufffd"); utf8.ValidString(s) && !strings.Contains(st.Text, shown) {
			t.Errorf("the case's page does not show %q as text", s)
		}
	}
	// Browsers send a '"' in a file name as %22 (HTML's multipart/form-data
	// encoding algorithm).
	if !strings.Contains(st.Text, "sent as "+strings.ReplaceAll(hostileName, `"`, "%22")) {
		t.Errorf("the case's page does not show the trace's file name as sent")
	}
	if !slices.Contains(st.Rules, "ws-upgrade-no-101") {
		t.Errorf("the case's page lists rules %v", st.Rules)
	}

	// Clicked from the page's own script: the case page reloaded itself
	// when the analysis ended (serve.js), and chromedp's DOM node ids can
	// still be the old document's then ("Could not find node with given
	// id", about one run in ten).
	if err := chromedp.Do(p.ctx, chromedp.Evaluate[chromedp.Void](`document.getElementById('open-report').click()`)); err != nil {
		t.Fatal(err)
	}
	p.waitFor(t, `document.body && document.body.dataset.chartsDrawn !== undefined ? 'drawn' : ''`, "drawn", time.Minute)
	report, err := chromedp.Run(p.ctx, chromedp.Evaluate[struct {
		Origin string   `json:"origin"`
		Rules  []string `json:"rules"`
		Title  string   `json:"title"`
	}](`({origin: window.origin, title: document.title,
  rules: Array.from(document.querySelectorAll('article.incident .rule code'), c => c.textContent)})`))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ws-upgrade-no-101", "server-read-no-write"} {
		if !slices.Contains(report.Rules, want) {
			t.Errorf("the report shows incidents %v; no %s", report.Rules, want)
		}
	}
	if report.Origin != "null" || report.Title != "wiremortem report" {
		t.Errorf("the report opened with origin %q (want the sandbox's null) and title %q", report.Origin, report.Title)
	}

	p.navigate(t, ts.URL+"/", "#case-table")
	st = p.serveState(t)
	checkServePage(t, "the case list", st)
	if st.Rows != 1 || !slices.Contains(st.Rules, "server-read-no-write") || st.States[0] != "analysed" {
		t.Errorf("the case list: %d rows, states %v, rules %v", st.Rows, st.States, st.Rules)
	}
	p.checkQuiet(t)
}

// servePageState is what one of serve's pages shows, read in the browser.
type servePageState struct {
	Title   string   `json:"title"`
	Pwned   bool     `json:"pwned"`
	Scripts []string `json:"scripts"`
	Rules   []string `json:"rules"`
	States  []string `json:"states"`
	Rows    int      `json:"rows"`
	Text    string   `json:"text"`
	// Foreign lists elements and attributes serve never writes.
	Foreign []string `json:"foreign"`
}

// readServeState hovers and focuses every element first, so an injected
// handler would have run.
const readServeState = `(() => {
  document.querySelectorAll('*').forEach(el => {
    el.dispatchEvent(new MouseEvent('mouseover', {bubbles: true}));
    el.dispatchEvent(new FocusEvent('focus'));
  });
  const state = {
    title: document.title,
    pwned: !!window.` + reporttest.PwnedGlobal + ` || document.title === '` + reporttest.PwnedTitle + `',
    scripts: Array.from(document.scripts, s => s.src),
    rules: Array.from(document.querySelectorAll('.rules code, #case-rules code'), c => c.textContent),
    states: Array.from(document.querySelectorAll('#case-table tbody tr'), r => r.dataset.state),
    rows: document.querySelectorAll('#case-table tbody tr').length,
    text: document.querySelector('main').textContent,
    foreign: [],
  };
  const foreignTags = 'img, svg, iframe, frame, object, embed, base, link:not([rel=stylesheet]):not([rel=icon]), meta[http-equiv="refresh"], video, audio, source';
  document.querySelectorAll(foreignTags).forEach(el => state.foreign.push('<' + el.tagName.toLowerCase() + '>'));
  document.querySelectorAll('*').forEach(el => {
    for (const a of el.attributes) {
      const name = a.name.toLowerCase();
      const value = a.value.trim().toLowerCase();
      if (name.startsWith('on') || name === 'srcdoc' || name === 'formaction' || value.startsWith('javascript:') ||
          ((name === 'href' || name === 'src' || name === 'action') && !value.startsWith('/'))) {
        state.foreign.push(el.tagName.toLowerCase() + '[' + name + '=' + a.value + ']');
      }
    }
  });
  return state;
})()`

func (p *page) serveState(t *testing.T) servePageState {
	t.Helper()
	st, err := chromedp.Run(p.ctx, chromedp.Evaluate[servePageState](readServeState))
	if err != nil {
		t.Fatalf("reading the page: %v", err)
	}
	return st
}

// checkServePage checks that nothing planted ran or got into the page's
// structure, and that the page runs serve's own script only.
func checkServePage(t *testing.T, what string, st servePageState) {
	t.Helper()
	if st.Pwned || !strings.HasSuffix(st.Title, " · wiremortem") {
		t.Errorf("%s: injected script ran: pwned=%v title=%q", what, st.Pwned, st.Title)
	}
	if len(st.Scripts) != 1 || !strings.HasSuffix(st.Scripts[0], "/static/serve.js") {
		t.Errorf("%s: scripts %q", what, st.Scripts)
	}
	for _, f := range st.Foreign {
		t.Errorf("%s: injected into the page: %s", what, f)
	}
}

// waitFor evaluates expr until it yields want, across page loads (a
// script may navigate, or the page reload itself).
func (p *page) waitFor(t *testing.T, expr, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var got string
	for time.Now().Before(deadline) {
		v, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](expr))
		if err == nil && v == want {
			return
		}
		got = v
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s is still %q after %v, want %q; the page logged: %s", expr, got, timeout, want, strings.Join(p.logged(), "\n"))
}
