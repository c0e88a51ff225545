package htmlreport

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"

	"wiremortem/analysis"
	"wiremortem/evidence"
	"wiremortem/htmlreport/internal/reporttest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func render(t testing.TB, doc *analysis.Document) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, doc, Options{}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// elideLibrary replaces the vendored ECharts (a megabyte, the same in
// every report) with a marker, so the golden file shows what the report
// itself writes. The policy keeps the library's hash, so a changed library
// still changes the golden file.
func elideLibrary(page []byte) []byte {
	lib := parsedText(echartsJS)
	marker := fmt.Sprintf("/* echarts.min.js: %d bytes, elided from the golden file */", len(lib))
	return bytes.Replace(page, []byte(lib), []byte(marker), 1)
}

func TestGolden(t *testing.T) {
	got := elideLibrary(render(t, reporttest.Fixed()))
	path := filepath.Join("testdata", "fixed.golden.html")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		for i := range min(len(gl), len(wl)) {
			if gl[i] != wl[i] {
				t.Fatalf("report differs from %s at line %d (run go test -update if the change is intended):\ngot:  %.300s\nwant: %.300s", path, i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("report differs from %s in length: %d lines, want %d (run go test -update if intended)", path, len(gl), len(wl))
	}
}

func TestDeterministic(t *testing.T) {
	docs := map[string]func() *analysis.Document{
		"fixed":   reporttest.Fixed,
		"hostile": func() *analysis.Document { return reporttest.Hostile(0) },
		"large":   func() *analysis.Document { return reporttest.Large(2000) },
	}
	for name, doc := range docs {
		t.Run(name, func(t *testing.T) {
			first := render(t, doc())
			for range 3 {
				if again := render(t, doc()); !bytes.Equal(first, again) {
					t.Fatal("the same document rendered twice gave different bytes")
				}
			}
		})
	}
}

// parsedPage is a report as an HTML parser sees it.
type parsedPage struct {
	csp     string
	scripts []string // executable inline scripts, in order
	styles  []string
	data    map[string]string // JSON blocks by id
	text    strings.Builder   // text outside scripts and styles
	// foreign lists elements and attributes the report never writes.
	foreign []string
}

// reportElements are the only elements the template writes.
var reportElements = map[atom.Atom]bool{
	atom.Html: true, atom.Head: true, atom.Meta: true, atom.Title: true, atom.Style: true, atom.Body: true,
	atom.Header: true, atom.H1: true, atom.H2: true, atom.H3: true, atom.H4: true, atom.Nav: true, atom.Main: true,
	atom.Section: true, atom.Article: true, atom.Footer: true, atom.P: true, atom.A: true, atom.B: true,
	atom.Span: true, atom.Code: true, atom.Br: true, atom.Ol: true, atom.Ul: true, atom.Li: true, atom.Dl: true,
	atom.Dt: true, atom.Dd: true, atom.Figure: true, atom.Figcaption: true, atom.Div: true, atom.Script: true,
	atom.Table: true, atom.Thead: true, atom.Tbody: true, atom.Tr: true, atom.Th: true, atom.Td: true,
	atom.Input: true,
}

func parsePage(t *testing.T, raw []byte) *parsedPage {
	t.Helper()
	root, err := html.Parse(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	p := &parsedPage{data: map[string]string{}}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			if !reportElements[n.DataAtom] {
				p.foreign = append(p.foreign, "<"+n.Data+">")
			}
			attrs := map[string]string{}
			for _, a := range n.Attr {
				attrs[a.Key] = a.Val
				if strings.HasPrefix(a.Key, "on") || a.Key == "src" || a.Key == "style" || a.Key == "srcdoc" ||
					(a.Key == "href" && !strings.HasPrefix(a.Val, "#")) || strings.HasPrefix(strings.TrimSpace(strings.ToLower(a.Val)), "javascript:") {
					p.foreign = append(p.foreign, fmt.Sprintf("%s[%s=%q]", n.Data, a.Key, a.Val))
				}
			}
			var content string
			if n.FirstChild != nil {
				content = n.FirstChild.Data
			}
			switch n.DataAtom {
			case atom.Meta:
				if attrs["http-equiv"] == "Content-Security-Policy" {
					p.csp = attrs["content"]
				}
			case atom.Script:
				if typ, ok := attrs["type"]; ok {
					if typ != "application/json" {
						p.foreign = append(p.foreign, "script type "+typ)
					}
					p.data[attrs["id"]] = content
				} else {
					p.scripts = append(p.scripts, content)
				}
				return
			case atom.Style:
				p.styles = append(p.styles, content)
				return
			}
		}
		if n.Type == html.TextNode {
			p.text.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(root)
	return p
}

func hashOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// TestPolicyAdmitsExactlyThePage checks the Content-Security-Policy
// against the page as a parser hands it to the browser: every inline
// script and style is admitted by its hash, nothing else is, and nothing
// may be fetched.
func TestPolicyAdmitsExactlyThePage(t *testing.T) {
	for name, doc := range map[string]*analysis.Document{"fixed": reporttest.Fixed(), "hostile": reporttest.Hostile(0)} {
		t.Run(name, func(t *testing.T) {
			p := parsePage(t, render(t, doc))
			if len(p.scripts) != 2 || len(p.styles) != 1 {
				t.Fatalf("%d inline scripts and %d styles, want 2 and 1", len(p.scripts), len(p.styles))
			}
			want := fmt.Sprintf("default-src 'none'; script-src %s %s; style-src %s; base-uri 'none'; form-action 'none'",
				hashOf(p.scripts[0]), hashOf(p.scripts[1]), hashOf(p.styles[0]))
			if p.csp != want {
				t.Errorf("policy\n%s\nwant\n%s", p.csp, want)
			}
			if strings.Contains(p.csp, "unsafe") {
				t.Errorf("policy allows unsafe sources: %s", p.csp)
			}
			if !strings.Contains(p.scripts[0], `t.version="5.4.3"`) {
				t.Error("the first script is not ECharts 5.4.3")
			}
		})
	}
}

// TestHostileContentIsInert renders the XSS corpus planted in every
// string of a document, each corpus string in each field in turn, and
// checks that, to an HTML parser, the page has no element, attribute or
// script the template did not write; that every data block is JSON a
// script can only parse; and that the planted strings survive as text,
// shown, not dropped.
func TestHostileContentIsInert(t *testing.T) {
	for shift := range reporttest.XSS {
		t.Run(fmt.Sprint("shift", shift), func(t *testing.T) { checkInert(t, reporttest.Hostile(shift), reporttest.XSS) })
	}
}

// FuzzHostileString plants one arbitrary string in every string of the
// fixed document and checks the page as TestHostileContentIsInert does.
// Seeds: testdata/fuzz/FuzzHostileString and the XSS corpus.
func FuzzHostileString(f *testing.F) {
	for _, s := range reporttest.XSS {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		doc := reporttest.Fixed()
		reporttest.Plant(doc, []string{s}, 0)
		checkInert(t, doc, []string{s})
	})
}

// checkInert checks the page of a document planted with the planted
// strings.
func checkInert(t *testing.T, doc *analysis.Document, planted []string) {
	t.Helper()
	p := parsePage(t, render(t, doc))
	for _, f := range p.foreign {
		t.Errorf("injected into the page: %s", f)
	}
	if len(p.scripts) != 2 || len(p.styles) != 1 {
		t.Errorf("%d inline scripts and %d styles, want 2 and 1", len(p.scripts), len(p.styles))
	}
	if len(p.data) == 0 {
		t.Fatal("no chart data blocks")
	}
	var dataStrings []string
	for id, block := range p.data {
		// Inside a data block the characters that could end it or open a
		// comment are escaped, and so are the line terminators JSON
		// allows and JavaScript once did not.
		for _, bad := range []string{"<", ">", "&", "\u2028", "\u2029", "\x00"} {
			if strings.Contains(block, bad) {
				t.Errorf("data block %s holds a raw %q", id, bad)
			}
		}
		var v any
		if err := json.Unmarshal([]byte(block), &v); err != nil {
			t.Fatalf("data block %s is not JSON: %v", id, err)
		}
		dataStrings = appendStrings(dataStrings, v)
	}
	text := p.text.String()
	for _, s := range planted {
		shown := analysis.Safe(s)
		if !strings.Contains(text, shown) {
			t.Errorf("the page does not show %q as text", shown)
		}
		if !slices.ContainsFunc(dataStrings, func(d string) bool { return strings.Contains(d, shown) }) {
			t.Errorf("no chart data carries %q intact", shown)
		}
	}
}

// appendStrings collects every string in a decoded JSON value.
func appendStrings(out []string, v any) []string {
	switch v := v.(type) {
	case string:
		out = append(out, v)
	case []any:
		for _, e := range v {
			out = appendStrings(out, e)
		}
	case map[string]any:
		for k, e := range v {
			out = appendStrings(append(out, k), e)
		}
	}
	return out
}

func TestText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain 10.0.0.5:46407", "plain 10.0.0.5:46407"},
		{"<script>", "<script>"}, // the template escapes it; text only makes it legible
		{"nul\x00byte", `nul\x00byte`},
		{"\x1b[31mred", `\x1b[31mred`},
		{"overlong \xc0\xbc", `overlong \xc0\xbc`},
		{"line\u2028separator", "line\u2028separator"},
	}
	for _, tt := range tests {
		if got := text(tt.in); got != tt.want {
			t.Errorf("text(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestIncidentCharts checks the charts each rule gets: decided by the rule
// id's prefix, with the ladder for every incident that has a conversation
// (so an unknown rule still renders) and the evidence chart for one that
// has none.
func TestIncidentCharts(t *testing.T) {
	doc := reporttest.Fixed()
	byRule := map[string]int{}
	for i, inc := range doc.Incidents {
		byRule[inc.Rule] = i
	}
	tests := []struct {
		rule, like string
		noFlows    bool
		want       []string
	}{
		{rule: "zero-window-rst", like: "zero-window-rst", want: []string{"Ladder", "Receive window"}},
		{rule: "zero-window-stall", like: "zero-window-rst", want: []string{"Ladder", "Receive window"}},
		{rule: "syn-unanswered", like: "syn-unanswered", want: []string{"Ladder", "Connection attempts"}},
		{rule: "syn-refused", like: "syn-unanswered", want: []string{"Ladder", "Connection attempts"}},
		{rule: "close-wait", like: "close-wait", want: []string{"Ladder", "Half-closed"}},
		{rule: "ws-upgrade-no-101", like: "ws-upgrade-no-101", want: []string{"Ladder"}},
		{rule: "a-rule-written-next-year", like: "ws-upgrade-no-101", want: []string{"Ladder"}},
		{rule: "upstream-timeout", like: "ws-upgrade-no-101", noFlows: true, want: []string{"Evidence over time"}},
	}
	for _, tt := range tests {
		t.Run(tt.rule, func(t *testing.T) {
			inc := doc.Incidents[byRule[tt.like]]
			inc.Rule = tt.rule
			if tt.noFlows {
				inc.Flows = nil
			}
			b := newBuilder(doc, Options{}.withDefaults())
			var got []string
			for _, c := range b.incidentCharts(&inc) {
				got = append(got, c.Title)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("charts %q, want titles starting %q", got, tt.want)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tt.want[i]) {
					t.Errorf("chart %d is %q, want one starting %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestPickPackets(t *testing.T) {
	doc := reporttest.Fixed()
	zw := doc.Conversations[1].Conversation // the zero window: 29 key packets
	rst := zw.KeyPackets[len(zw.KeyPackets)-1]
	probe := zw.KeyPackets[len(zw.KeyPackets)/2]
	cited := map[evidence.Ref]bool{rst.Ref: true, probe.Ref: true}
	got, skipped := pickPackets(zw.KeyPackets, cited, 6)
	if len(got) != 6 || skipped != len(zw.KeyPackets)-6 {
		t.Fatalf("kept %d, skipped %d of %d; want 6 kept", len(got), skipped, len(zw.KeyPackets))
	}
	var labels []string
	for _, kp := range got {
		labels = append(labels, kp.Label)
	}
	// The two cited, then the first three and the last but one, in order.
	want := []string{"syn", "syn-ack", "handshake-ack", "zero-window-probe", "", "rst"}
	if !slices.Equal(labels, want) {
		t.Errorf("kept %q, want %q", labels, want)
	}
	if all, skipped := pickPackets(zw.KeyPackets, nil, 100); len(all) != len(zw.KeyPackets) || skipped != 0 {
		t.Errorf("under the cap: kept %d, skipped %d", len(all), skipped)
	}
}

func TestStepName(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Second:             "second",
		2 * time.Second:         "2 seconds",
		time.Minute:             "minute",
		5 * time.Minute:         "5 minutes",
		time.Hour:               "hour",
		100 * time.Millisecond:  "100ms",
		1500 * time.Millisecond: "1.500s",
	} {
		if got := stepName(d); got != want {
			t.Errorf("stepName(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestShorten(t *testing.T) {
	for _, tt := range []struct {
		in   string
		n    int
		want string
	}{{"error.log:7", 22, "error.log:7"}, {"/var/log/nginx/error.log:1234", 12, "/var/log/ng…"}, {"日本語のログ.log:1", 5, "日本語の…"}} {
		if got := shorten(tt.in, tt.n); got != tt.want {
			t.Errorf("shorten(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

// TestSize states and bounds the report's size: the library is about a
// megabyte; a 10,000-conversation analysis must stay small because the
// table and the timeline are capped.
func TestSize(t *testing.T) {
	small := len(render(t, reporttest.Fixed()))
	start := time.Now()
	large := len(render(t, reporttest.Large(10_000)))
	took := time.Since(start)
	t.Logf("report sizes: fixed document %d bytes (%d without ECharts); 10,000 conversations %d bytes (%d without), rendered in %s",
		small, small-len(echartsJS), large, large-len(echartsJS), took)
	if small > 1_300_000 || large > 2_500_000 {
		t.Errorf("reports grew: %d and %d bytes", small, large)
	}
}

// BenchmarkWrite10k renders a 10,000-conversation analysis (the budget is
// 2 s).
func BenchmarkWrite10k(b *testing.B) {
	doc := reporttest.Large(10_000)
	var size int
	for b.Loop() {
		var buf bytes.Buffer
		if err := Write(&buf, doc, Options{}); err != nil {
			b.Fatal(err)
		}
		size = buf.Len()
	}
	b.ReportMetric(float64(size), "bytes/report")
}
