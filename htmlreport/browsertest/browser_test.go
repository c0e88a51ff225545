// Package browsertest opens wiremortem's HTML reports in headless Chromium
// and checks what only a browser can: the page runs with no console error
// under its Content-Security-Policy, every chart is drawn, nothing leaves
// the page, and hostile strings from captures and logs stay text.
//
// It is a module of its own, as google/pprof keeps its browser tests, so
// the browser driver (chromedp) stays out of wiremortem's dependencies. Run
// it with: cd htmlreport/browsertest && go test ./...
// Under CI=true a missing Chromium fails the test.
package browsertest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"wiremortem/analysis"
	"wiremortem/htmlreport"
	"wiremortem/htmlreport/internal/reporttest"
	"wiremortem/internal/testenv"
)

var screenshots = flag.String("screenshots", "", "write a full-page screenshot of each report, and one of each section, incident and chart, into this `directory`")

// report is one page under test and what it must show.
type report struct {
	name      string
	doc       *analysis.Document
	charts    int // chart containers expected on the page
	interacts bool
	hostile   bool
}

func TestReports(t *testing.T) {
	reports := []report{
		{name: "fixed", doc: reporttest.Fixed(), charts: 9, interacts: true},
		{name: "large", doc: reporttest.Large(10_000), charts: 11},
		{name: "empty", doc: &analysis.Document{Tool: analysis.Tool{Name: "wiremortem", Version: "test"}}, charts: 0},
	}
	// The XSS corpus in every string, each corpus string in each field in
	// turn. Each flow's listener gets its own planted string, so the SYN
	// storm draws three listener charts.
	for shift := range reporttest.XSS {
		reports = append(reports, report{name: fmt.Sprint("hostile", shift), doc: reporttest.Hostile(shift), charts: 11, hostile: true})
	}
	// Public captures read in place (zeek/zeek testing/btest/Traces): a
	// zero window followed by a reset, and an nmap scan full of SYNs and
	// RSTs. Each page draws the timeline and the overview, then each
	// incident's charts: a ladder, plus the half-closed count of a
	// CLOSE_WAIT and the attempts per 100 ms of a SYN incident.
	for _, c := range []struct {
		path   string
		rules  []string
		charts int
	}{
		{"http/206_example_b.pcap", []string{"close-wait", "rst-mid-stream"}, 2 + 1 + 2},
		{"nmap-vsn.pcap", []string{"syn-refused", "syn-refused", "syn-refused", "syn-refused", "syn-unanswered", "syn-unanswered"}, 2 + 6*2},
	} {
		path := testenv.Corpus(t, "zeek/testing/btest/Traces/"+c.path)
		res, err := analysis.Run(context.Background(), []analysis.Input{{Path: path}}, analysis.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, inc := range res.Document.Incidents {
			got = append(got, inc.Rule)
		}
		slices.Sort(got)
		if !slices.Equal(got, c.rules) {
			t.Errorf("%s: incidents %v, want %v", c.path, got, c.rules)
		}
		reports = append(reports, report{name: strings.TrimSuffix(filepath.Base(c.path), ".pcap"), doc: res.Document, charts: c.charts})
	}

	b := startBrowser(t)
	dir := t.TempDir()
	for _, r := range reports {
		t.Run(r.name, func(t *testing.T) {
			path := filepath.Join(dir, r.name+".html")
			writeReport(t, path, r.doc)
			p := b.open(t, path)
			st := p.state(t)
			checkPage(t, r, st)
			tips := p.showTooltips(t)
			p.hoverEverything(t)
			after := p.state(t)
			if after.Pwned || after.Title != "wiremortem report" {
				t.Errorf("injected script ran after tooltips and mouseovers: pwned=%v title=%q", after.Pwned, after.Title)
			}
			if r.hostile {
				checkHostileText(t, st, tips)
			}
			if r.interacts {
				checkTable(t, p)
			}
			p.checkQuiet(t)
			if *screenshots != "" {
				p.screenshot(t, *screenshots, r.name, st)
			}
		})
	}
}

func writeReport(t *testing.T, path string, doc *analysis.Document) {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := htmlreport.Write(f, doc, htmlreport.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// browser is one headless Chromium for the whole test.
type browser struct {
	ctx context.Context
}

func startBrowser(t *testing.T) *browser {
	exe := testenv.Tool(t, "chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox, // Chromium refuses to run as root with its sandbox
		chromedp.DisableGPU,
		chromedp.WindowSize(1400, 900),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// No name resolves: a request that escaped the page's policy and
		// the interception below would still go nowhere. Only loopback,
		// where the serve test's server listens, is reachable.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", exe, err)
	}
	return &browser{ctx: ctx}
}

// page is one tab, with what it reported.
type page struct {
	ctx context.Context
	// allowed says which requests may leave the tab; the others fail.
	allowed func(url string) bool
	mu      sync.Mutex
	logs    []string // console errors and warnings, exceptions, log entries
	// requests are the URLs the page asked for, the report itself
	// included.
	requests []string
}

// open loads a report file in a tab of its own, which may load the
// report and nothing else, and waits for its charts.
func (b *browser) open(t *testing.T, path string) *page {
	url := "file://" + path
	p := b.tab(t, func(u string) bool { return u == url })
	p.navigate(t, url, "body[data-charts-drawn]")
	return p
}

// tab opens a tab that records console problems and every request, and
// fails the requests allowed refuses.
func (b *browser) tab(t *testing.T, allowed func(url string) bool) *page {
	tab, cancel := chromedp.NewContext(b.ctx)
	t.Cleanup(cancel)
	p := &page{ctx: tab, allowed: allowed}
	paused := make(chan *fetch.EventRequestPaused, 64)
	err := chromedp.Listen(tab, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				p.log("console.%s: %s", ev.Type, strings.Join(args, " "))
			}
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			desc := d.Text
			if d.Exception != nil {
				desc += " " + d.Exception.Description
			}
			p.log("exception at %s:%d: %s", d.URL, d.LineNumber, desc)
		case *cdplog.EventEntryAdded:
			if e := ev.Entry; e.Level == cdplog.EntryLevelError || e.Level == cdplog.EntryLevelWarning {
				p.log("%s %s: %s (%s)", e.Source, e.Level, e.Text, e.URL)
			}
		case *network.EventRequestWillBeSent:
			p.request(ev.Request.URL)
		case *fetch.EventRequestPaused:
			p.request(ev.Request.URL)
			paused <- ev
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	// Answer intercepted requests off the event loop: what is allowed
	// may load, anything else fails.
	go func() {
		for {
			select {
			case <-tab.Done():
				return
			case ev := <-paused:
				if p.allowed(ev.Request.URL) {
					chromedp.Call(tab, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
				} else {
					chromedp.Call(tab, fetch.FailRequest, fetch.FailRequestParams{RequestID: ev.RequestID, ErrorReason: network.ErrorReasonBlockedByClient})
				}
			}
		}
	}()
	for _, enable := range []func() error{
		func() error { _, err := chromedp.Call(tab, runtime.Enable, cdp.Empty{}); return err },
		func() error { _, err := chromedp.Call(tab, cdplog.Enable, cdp.Empty{}); return err },
		func() error { _, err := chromedp.Call(tab, network.Enable, network.EnableParams{}); return err },
		func() error {
			_, err := chromedp.Call(tab, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{URLPattern: "*"}}})
			return err
		},
	} {
		if err := enable(); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// navigate loads url in the tab and waits until ready (a CSS selector)
// matches.
func (p *page) navigate(t *testing.T, url, ready string) {
	t.Helper()
	ctx, cancelWait := context.WithTimeout(p.ctx, 60*time.Second)
	defer cancelWait()
	if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitReady(chromedp.CSS(ready))); err != nil {
		t.Fatalf("opening %s: %v; the page logged: %s", url, err, strings.Join(p.logged(), "\n"))
	}
}

func (p *page) log(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.logs = append(p.logs, fmt.Sprintf(format, args...))
}

func (p *page) request(url string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests = append(p.requests, url)
}

func (p *page) logged() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.logs)
}

// checkQuiet fails on any console error or warning the page logged so far
// (CSP violations included) and on any request but the report itself.
func (p *page) checkQuiet(t *testing.T) {
	t.Helper()
	for _, problem := range p.problems() {
		t.Error(problem)
	}
}

func (p *page) problems() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, l := range p.logs {
		out = append(out, "the page logged: "+l)
	}
	for _, u := range p.requests {
		if !p.allowed(u) {
			out = append(out, fmt.Sprintf("the page requested %q", u))
		}
	}
	return out
}

// TestHarnessCatchesLeaks opens a page that does everything a report must
// not (no policy, an image from the network, a console error, a script
// setting the injection mark) and checks that the harness sees each, so a
// passing TestReports means something.
func TestHarnessCatchesLeaks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leaky.html")
	leaky := `<!DOCTYPE html><html><head><title>leaky</title></head><body data-charts-drawn="0"><main>
<img src="http://example.invalid/pixel.png">
<script>console.error("boom"); window.` + reporttest.PwnedGlobal + ` = 1;</script>
</main></body></html>`
	if err := os.WriteFile(path, []byte(leaky), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startBrowser(t).open(t, path)
	if st := p.state(t); !st.Pwned {
		t.Error("the injection mark was set but the harness did not see it")
	}
	problems := strings.Join(p.problems(), "\n")
	for _, want := range []string{"boom", "http://example.invalid/pixel.png"} {
		if !strings.Contains(problems, want) {
			t.Errorf("the harness missed %q; it saw:\n%s", want, problems)
		}
	}
}

type chartState struct {
	ID             string `json:"id"`
	Instance       bool   `json:"instance"`
	Painted        int    `json:"painted"`
	Pixels         int    `json:"pixels"`
	SeriesWithData int    `json:"seriesWithData"`
}

// pageState is what the page shows, read in the browser.
type pageState struct {
	Title       string       `json:"title"`
	Pwned       bool         `json:"pwned"`
	ChartsDrawn string       `json:"chartsDrawn"`
	Charts      []chartState `json:"charts"`
	Incidents   int          `json:"incidents"`
	Rows        int          `json:"rows"`
	Sections    []string     `json:"sections"`
	Scripts     int          `json:"scripts"`
	DataScripts int          `json:"dataScripts"`
	Styles      int          `json:"styles"`
	// Foreign lists elements and attributes the report never writes:
	// whatever is here was injected.
	Foreign []string `json:"foreign"`
	// Text is the visible text of the page (scripts left out).
	Text string `json:"text"`
}

const readState = `(() => {
  const state = {
    title: document.title,
    pwned: typeof window.` + reporttest.PwnedGlobal + ` !== 'undefined',
    chartsDrawn: document.body.getAttribute('data-charts-drawn') || '',
    incidents: document.querySelectorAll('article.incident').length,
    rows: document.querySelectorAll('#conversation-table tbody tr').length,
    sections: Array.from(document.querySelectorAll('main > section')).map(s => s.id),
    scripts: document.querySelectorAll('script:not([type])').length,
    dataScripts: document.querySelectorAll('script[type="application/json"]').length,
    styles: document.querySelectorAll('style').length,
    foreign: [],
  };
  state.charts = Array.from(document.querySelectorAll('.chart')).map(el => {
    const chart = echarts.getInstanceByDom(el);
    const canvas = el.querySelector('canvas');
    let painted = 0, pixels = 0;
    if (canvas && canvas.width && canvas.height) {
      // Read a copy, so the chart's own canvas is never read back (Chromium
      // warns when a canvas not made for it is).
      const copy = document.createElement('canvas');
      copy.width = canvas.width;
      copy.height = canvas.height;
      const ctx = copy.getContext('2d', {willReadFrequently: true});
      ctx.drawImage(canvas, 0, 0);
      const data = ctx.getImageData(0, 0, copy.width, copy.height).data;
      pixels = data.length / 4;
      for (let i = 3; i < data.length; i += 4) {
        if (data[i] !== 0) painted++;
      }
    }
    const series = chart ? (chart.getOption().series || []) : [];
    const withData = series.filter(s => (Array.isArray(s.data) && s.data.length > 0) ||
      (s.markArea && Array.isArray(s.markArea.data) && s.markArea.data.length > 0)).length;
    return {id: el.id, instance: !!chart, painted, pixels, seriesWithData: withData};
  });
  const foreignTags = 'img, svg, iframe, frame, object, embed, base, link, form, input:not(#conversation-filter), meta[http-equiv="refresh"], video, audio, source';
  document.querySelectorAll(foreignTags).forEach(el => state.foreign.push('<' + el.tagName.toLowerCase() + '>'));
  document.querySelectorAll('*').forEach(el => {
    for (const a of el.attributes) {
      const name = a.name.toLowerCase();
      const value = a.value.trim().toLowerCase();
      if (name.startsWith('on') || name === 'src' || name === 'srcdoc' || name === 'formaction' ||
          (name === 'href' && !value.startsWith('#')) || value.startsWith('javascript:')) {
        state.foreign.push(el.tagName.toLowerCase() + '[' + name + '=' + a.value + ']');
      }
    }
  });
  const main = document.querySelector('main').cloneNode(true);
  main.querySelectorAll('script').forEach(s => s.remove());
  state.text = main.textContent;
  return state;
})()`

func (p *page) state(t *testing.T) pageState {
	t.Helper()
	st, err := chromedp.Run(p.ctx, chromedp.Evaluate[pageState](readState))
	if err != nil {
		t.Fatalf("reading the page: %v", err)
	}
	return st
}

// checkPage checks the page's structure and that every chart is drawn.
func checkPage(t *testing.T, r report, st pageState) {
	t.Helper()
	if st.Pwned || st.Title != "wiremortem report" {
		t.Errorf("injected script ran: pwned=%v title=%q", st.Pwned, st.Title)
	}
	if len(st.Charts) != r.charts || st.ChartsDrawn != fmt.Sprint(r.charts) {
		t.Errorf("%d chart containers, %s drawn; want %d", len(st.Charts), st.ChartsDrawn, r.charts)
	}
	for _, c := range st.Charts {
		// A drawn chart paints its axes, labels and marks: far more
		// than 1% of its canvas.
		if !c.Instance || c.Pixels == 0 || c.Painted < c.Pixels/100 || c.SeriesWithData == 0 {
			t.Errorf("chart %s not drawn: %+v", c.ID, c)
		}
	}
	if st.Incidents != len(r.doc.Incidents) {
		t.Errorf("%d incident cards, want %d", st.Incidents, len(r.doc.Incidents))
	}
	if want := min(len(r.doc.Conversations), 500); st.Rows != want {
		t.Errorf("%d conversation rows, want %d", st.Rows, want)
	}
	for _, id := range []string{"verdict", "conversations", "inputs"} {
		if !slices.Contains(st.Sections, id) {
			t.Errorf("no %s section; sections: %v", id, st.Sections)
		}
	}
	if st.Scripts != 2 || st.DataScripts != r.charts || st.Styles != 1 {
		t.Errorf("%d scripts, %d data blocks, %d styles; want 2, %d, 1", st.Scripts, st.DataScripts, st.Styles, r.charts)
	}
	for _, f := range st.Foreign {
		t.Errorf("injected into the page: %s", f)
	}
}

// showTooltips shows the tooltip of the first, middle and last mark of
// every series of every chart, so the tooltip formatters run on the data,
// and returns the tooltips' text.
func (p *page) showTooltips(t *testing.T) []string {
	t.Helper()
	const show = `(() => {
  const texts = [];
  document.querySelectorAll('.chart').forEach(el => {
    const chart = echarts.getInstanceByDom(el);
    if (!chart) return;
    (chart.getOption().series || []).forEach((s, si) => {
      const n = Array.isArray(s.data) ? s.data.length : 0;
      new Set([0, n >> 1, n - 1]).forEach(di => {
        if (di < 0) return;
        chart.dispatchAction({type: 'showTip', seriesIndex: si, dataIndex: di});
        const title = el.querySelector('.tip-title');
        if (title) texts.push(title.parentElement.textContent);
      });
    });
    chart.dispatchAction({type: 'hideTip'});
  });
  return texts;
})()`
	tips, err := chromedp.Run(p.ctx, chromedp.Evaluate[[]string](show))
	if err != nil {
		t.Fatalf("showing tooltips: %v", err)
	}
	return tips
}

// hoverEverything sends mouseover and focus to every element: an injected
// onmouseover or onfocus handler would run.
func (p *page) hoverEverything(t *testing.T) {
	t.Helper()
	const hover = `document.querySelectorAll('*').forEach(el => {
  el.dispatchEvent(new MouseEvent('mouseover', {bubbles: true}));
  el.dispatchEvent(new FocusEvent('focus'));
})`
	if _, err := chromedp.Run(p.ctx, chromedp.Evaluate[chromedp.Void](hover)); err != nil {
		t.Fatalf("hovering: %v", err)
	}
}

// checkHostileText checks that the planted strings reached the page and
// its tooltips as visible text: escaped, not dropped.
func checkHostileText(t *testing.T, st pageState, tips []string) {
	t.Helper()
	for _, s := range reporttest.XSS {
		if shown := analysis.Safe(s); !strings.Contains(st.Text, shown) {
			t.Errorf("the page does not show %q as text", shown)
		}
	}
	// Every shift plants a script tag in some field a tooltip shows.
	if !slices.ContainsFunc(tips, func(tip string) bool { return strings.Contains(tip, "<script>") }) {
		t.Errorf("none of %d tooltips shows a planted <script> as text", len(tips))
	}
}

// checkTable filters and sorts the conversations table.
func checkTable(t *testing.T, p *page) {
	t.Helper()
	const use = `(() => {
  const filter = document.getElementById('conversation-filter');
  const visible = () => Array.from(document.querySelectorAll('#conversation-table tbody tr')).filter(r => !r.hidden).length;
  filter.value = '10.0.0.9:9000';
  filter.dispatchEvent(new Event('input'));
  const filtered = visible();
  filter.value = '';
  filter.dispatchEvent(new Event('input'));
  const all = visible();
  const id = document.querySelector('#conversation-table th');
  id.click();
  id.click();
  return {filtered, all, first: document.querySelector('#conversation-table tbody tr').cells[0].textContent};
})()`
	got, err := chromedp.Run(p.ctx, chromedp.Evaluate[struct {
		Filtered, All int
		First         string
	}](use))
	if err != nil {
		t.Fatalf("using the table: %v", err)
	}
	if got.Filtered != 40 || got.All != 49 || got.First != "49" {
		t.Errorf("filtering for the SYN storm's listener left %d rows (want 40), clearing it %d (want 49); sorted by # descending, the first row is %s (want 49)", got.Filtered, got.All, got.First)
	}
}

// screenshot saves the whole page and each chart as PNG files.
func (p *page) screenshot(t *testing.T, dir, name string, st pageState) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	full, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), full, 0o644); err != nil {
		t.Fatal(err)
	}
	ids := slices.Clone(st.Sections)
	for i := range st.Incidents {
		ids = append(ids, fmt.Sprintf("incident-%d", i+1))
	}
	for _, c := range st.Charts {
		ids = append(ids, c.ID)
	}
	for _, id := range ids {
		shot, err := chromedp.Run(p.ctx, chromedp.Screenshot(chromedp.ID(id)))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+"-"+id+".png"), shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
