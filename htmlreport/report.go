// Package htmlreport writes an analysis as one self-contained HTML file: the
// page, its CSS, its script, the ECharts library and every chart's data are
// inlined, so the report opens anywhere, offline, years later, and makes no
// network request.
//
// Everything in a report that came from a capture or a log is hostile:
// URIs, headers, payloads, log lines and file names are chosen by whoever
// sent the traffic. So the page is an html/template (contextual escaping of
// every value), chart data travels as JSON in <script type="application/json">
// blocks that the static script parses (never evaluates), tooltips escape
// every string with echarts.format.encodeHTML, and a Content-Security-Policy
// allows only the page's own scripts and style, by hash.
//
// go-echarts builds the chart options only; its Render output is not used
// because it interpolates titles and series names into script and turns
// its "__f__" marker into code.
package htmlreport

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"html/template"
	"io"
	"strings"
	"sync"

	"wiremortem/analysis"
)

// Options controls how the report is drawn. The zero value uses the
// defaults; the report package never sees a command-line flag.
type Options struct {
	// MaxTableRows caps the conversations table (default 500); the rest
	// are in the JSON document.
	MaxTableRows int
	// MaxLadderRows caps the packets and log lines of one ladder diagram
	// (default 60).
	MaxLadderRows int
	// MaxChartedIncidents caps the incidents drawn with charts (default
	// 30); the others still get their card.
	MaxChartedIncidents int
}

func (o Options) withDefaults() Options {
	if o.MaxTableRows <= 0 {
		o.MaxTableRows = 500
	}
	if o.MaxLadderRows <= 0 {
		o.MaxLadderRows = 60
	}
	if o.MaxChartedIncidents <= 0 {
		o.MaxChartedIncidents = 30
	}
	return o
}

var (
	//go:embed assets/report.html
	pageTemplate string
	//go:embed assets/report.css
	reportCSS string
	//go:embed assets/report.js
	reportJS string
	//go:embed assets/vendor/echarts/echarts.min.js
	echartsJS string
)

// assets are the page's fixed parts and the policy that admits them.
type assets struct {
	page *template.Template
	css  template.CSS
	// scripts run in this order: the library, then ours.
	scripts []template.JS
	csp     string
}

// loadAssets parses the template and hashes the inline script and style
// once: they are compiled into the binary, so their hashes never change.
var loadAssets = sync.OnceValue(func() *assets {
	css, library, ours := parsedText(reportCSS), parsedText(echartsJS), parsedText(reportJS)
	return &assets{
		page:    template.Must(template.New("report").Parse(pageTemplate)),
		css:     template.CSS(css),
		scripts: []template.JS{template.JS(library), template.JS(ours)},
		csp:     contentSecurityPolicy(css, library, ours),
	}
})

// parsedText returns s as an HTML parser will hand it to the browser's
// script or style engine: with CR LF and lone CR turned into LF (HTML
// Living Standard, "preprocessing the input stream"). The browser hashes
// that text, not the file's bytes, so the page carries it and the policy
// hashes it. (echarts.min.js starts with a CR LF licence header.)
func parsedText(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
}

// contentSecurityPolicy admits exactly the given inline style and scripts,
// by the SHA-256 of their text (CSP Level 2 hash sources), and nothing
// else: no other script or style, no network fetch of any kind, no form
// submission, no <base> rewrite. The JSON data blocks need no entry: the
// browser never runs them.
func contentSecurityPolicy(style string, scripts ...string) string {
	var b strings.Builder
	b.WriteString("default-src 'none'; script-src")
	for _, s := range scripts {
		b.WriteString(" " + hashSource(s))
	}
	b.WriteString("; style-src " + hashSource(style))
	b.WriteString("; base-uri 'none'; form-action 'none'")
	return b.String()
}

func hashSource(text string) string {
	sum := sha256.Sum256([]byte(text))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// Write renders doc as one HTML page. The same document always gives the
// same bytes: nothing depends on the clock, randomness or map order.
func Write(w io.Writer, doc *analysis.Document, opts Options) error {
	a := loadAssets()
	p := buildPage(doc, opts.withDefaults())
	p.CSP, p.CSS, p.Scripts = a.csp, a.css, a.scripts
	var buf bytes.Buffer
	buf.Grow(len(echartsJS) + 256<<10)
	if err := a.page.Execute(&buf, p); err != nil {
		return err
	}
	// The template's sub-templates leave their line breaks after
	// </html>: the page ends with one.
	page := append(bytes.TrimRight(buf.Bytes(), "\n"), '\n')
	_, err := w.Write(page)
	return err
}
