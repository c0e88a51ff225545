package htmlreport

import (
	"cmp"
	"fmt"
	"html/template"
	"slices"
	"strconv"
	"strings"
	"time"

	"wiremortem/analysis"
	"wiremortem/evidence"
	"wiremortem/flows"
	"wiremortem/rules"
)

// page is everything the template shows, already formatted: the template
// only lays it out.
type page struct {
	CSP     string
	CSS     template.CSS
	Scripts []template.JS

	Scope     string
	Verdict   verdict
	Timeline  *chart
	Incidents []incidentCard
	Overview  *chart
	Table     conversationTable
	Inputs    []inputRow
	Packets   []countRow
	Warnings  []warningRow
	Tool      toolInfo
}

type verdict struct {
	// Sentence sums it up: how many incidents of which severity, or that
	// none was found in what was read.
	Sentence string
	Counts   []severityCount
	Partial  bool
	// PartialReason says why the reading stopped early (Ctrl-C, the
	// memory limit).
	PartialReason string
}

type severityCount struct {
	Severity string
	Count    int
}

type incidentCard struct {
	Anchor     string
	Severity   string
	Rule       string
	Title      string
	Summary    string
	When       string
	Confidence string
	Flows      []flowLink
	FlowsNote  string
	Charts     []*chart
	ChartsNote string
	// Transcripts show what the first conversations cited said above TCP.
	Transcripts []transcript
	Evidence    []evidenceRow
	// EvidenceNote says how many items the cap left out.
	EvidenceNote string
	Causes       []cause
	Next         []string
}

type flowLink struct {
	Text string
	// Anchor is the conversation's row in the table, empty when the row is
	// not shown.
	Anchor string
}

type evidenceRow struct {
	Anchor string
	Number int
	Ref    string
	Time   string
	What   string
}

type cause struct {
	Text     string
	Evidence []evidenceLink
}

type evidenceLink struct {
	Anchor string
	Number int
}

type conversationTable struct {
	Rows []conversationRow
	// Note says how the rows were chosen when some were left out.
	Note  string
	Total int
}

type conversationRow struct {
	Anchor      string
	ID          int
	Start       string
	StartSort   int64
	Duration    string
	DurationNs  int64
	Client      string
	Server      string
	State       string
	History     string
	ClientSent  string
	ClientBytes int64
	ServerSent  string
	ServerBytes int64
	ZeroWindows int
	Rexmits     int64
	EndReason   string
	Incident    bool
}

type inputRow struct {
	Path    string
	Kind    string
	Format  string
	Size    int64
	SHA256  string
	Records int64
	Range   string
	Clock   string
	Damage  string
}

type countRow struct {
	What  string
	Count int64
}

type warningRow struct {
	Where   string
	Message string
}

type toolInfo struct {
	Name, Version, CommandLine string
}

// text makes a string from a capture or a log fit to show: control
// characters (ANSI escape sequences, NUL) and invalid UTF-8 become visible
// \x escapes, as on the terminal. It is for legibility; safety comes from
// the template's escaping and the tooltips' encodeHTML.
func text(s string) string { return analysis.Safe(s) }

// formatTime shows an instant on the capture clock, UTC, to the
// microsecond (the resolution of most captures).
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000000")
}

func formatSpan(start, end time.Time) string {
	if start.IsZero() {
		return "—"
	}
	return fmt.Sprintf("%s → %s UTC (%s)", formatTime(start), formatTime(end), analysis.FormatDuration(end.Sub(start)))
}

func severityOrder() []rules.Severity {
	return []rules.Severity{rules.Critical, rules.High, rules.Medium, rules.Low, rules.Info}
}

func buildPage(doc *analysis.Document, opts Options) *page {
	b := newBuilder(doc, opts)
	p := &page{
		Scope:   scope(doc),
		Verdict: buildVerdict(doc),
		Tool: toolInfo{
			Name:        text(doc.Tool.Name),
			Version:     text(doc.Tool.Version),
			CommandLine: text(strings.Join(doc.Tool.CommandLine, " ")),
		},
	}
	p.Timeline = b.timeline()
	incidents := sortedIncidents(doc.Incidents)
	p.Table = b.conversationTable()
	for i, inc := range incidents {
		p.Incidents = append(p.Incidents, b.incidentCard(i, inc, p.Table))
	}
	p.Overview = b.overview()
	p.Inputs = inputRows(doc.Inputs)
	p.Packets = packetCounts(doc.Summary)
	for _, w := range doc.Warnings {
		p.Warnings = append(p.Warnings, warningRow{Where: text(warningPlace(w)), Message: text(w.Message)})
	}
	return p
}

func scope(doc *analysis.Document) string {
	var names []string
	for _, in := range doc.Inputs {
		names = append(names, text(in.Path))
	}
	return fmt.Sprintf("%s · %s", strings.Join(names, ", "), formatSpan(doc.Summary.Start, doc.Summary.End))
}

func buildVerdict(doc *analysis.Document) verdict {
	v := verdict{Partial: doc.Summary.Partial, PartialReason: doc.Summary.PartialReason}
	count := map[rules.Severity]int{}
	for _, inc := range doc.Incidents {
		count[inc.Severity]++
	}
	var parts []string
	for _, s := range severityOrder() {
		if n := count[s]; n > 0 {
			v.Counts = append(v.Counts, severityCount{Severity: s.String(), Count: n})
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
		}
	}
	read := fmt.Sprintf("%s conversations, %s packets", rules.Thousands(int64(doc.Summary.Conversations)), rules.Thousands(doc.Summary.Packets.Packets))
	switch len(doc.Incidents) {
	case 0:
		v.Sentence = fmt.Sprintf("No incident found in %s.", read)
	case 1:
		v.Sentence = fmt.Sprintf("1 incident (%s) in %s.", strings.Join(parts, ", "), read)
	default:
		v.Sentence = fmt.Sprintf("%d incidents (%s) in %s.", len(doc.Incidents), strings.Join(parts, ", "), read)
	}
	return v
}

// sortedIncidents puts the most severe first, then the earliest.
func sortedIncidents(in []rules.Incident) []*rules.Incident {
	out := make([]*rules.Incident, len(in))
	for i := range in {
		out[i] = &in[i]
	}
	slices.SortStableFunc(out, func(a, b *rules.Incident) int {
		return cmp.Or(cmp.Compare(b.Severity, a.Severity), a.Start.Compare(b.Start))
	})
	return out
}

func (b *builder) incidentCard(i int, inc *rules.Incident, table conversationTable) incidentCard {
	anchor := "incident-" + strconv.Itoa(i+1)
	c := incidentCard{
		Anchor:     anchor,
		Severity:   inc.Severity.String(),
		Rule:       text(inc.Rule),
		Title:      text(inc.Title),
		Summary:    text(inc.Summary),
		When:       formatSpan(inc.Start, inc.End),
		Confidence: text(inc.Confidence),
	}
	shown := map[int]bool{}
	for _, r := range table.Rows {
		shown[r.ID] = true
	}
	const maxFlows = 10
	for j, f := range inc.Flows {
		if j == maxFlows {
			break
		}
		fl := flowLink{Text: text(f.Client + " → " + f.Server)}
		if f.Conversation != 0 {
			fl.Text += fmt.Sprintf(" (conversation %d)", f.Conversation)
			if shown[f.Conversation] {
				fl.Anchor = conversationAnchor(f.Conversation)
			}
		}
		c.Flows = append(c.Flows, fl)
	}
	if more := len(inc.Flows) - len(c.Flows) + inc.FlowsOmitted; more > 0 {
		c.FlowsNote = fmt.Sprintf("and %s more flows (all are listed in the JSON document)", rules.Thousands(int64(more)))
	}
	if i < b.opts.MaxChartedIncidents {
		c.Charts = b.incidentCharts(inc)
		c.Transcripts = b.transcripts(inc, shown)
	} else {
		c.ChartsNote = fmt.Sprintf("Charts and what the conversations said are shown for the first %d incidents only.", b.opts.MaxChartedIncidents)
	}
	for j, e := range inc.Evidence {
		c.Evidence = append(c.Evidence, evidenceRow{
			Anchor: evidenceAnchor(anchor, j),
			Number: j + 1,
			Ref:    text(e.Ref.String()),
			Time:   formatTime(e.Time),
			What:   text(e.What),
		})
	}
	if inc.EvidenceOmitted > 0 {
		c.EvidenceNote = fmt.Sprintf("%s more evidence items are in the JSON document.", rules.Thousands(int64(inc.EvidenceOmitted)))
	}
	for _, cs := range inc.Causes {
		k := cause{Text: text(cs.Text)}
		for _, j := range cs.Evidence {
			if j >= 0 && j < len(inc.Evidence) {
				k.Evidence = append(k.Evidence, evidenceLink{Anchor: evidenceAnchor(anchor, j), Number: j + 1})
			}
		}
		c.Causes = append(c.Causes, k)
	}
	for _, n := range inc.Next {
		c.Next = append(c.Next, text(n))
	}
	return c
}

func evidenceAnchor(incident string, j int) string {
	return incident + "-evidence-" + strconv.Itoa(j+1)
}

func conversationAnchor(id int) string { return "conversation-" + strconv.Itoa(id) }

// conversationTable lists the conversations, capped: those an incident
// cites first, then those that ended badly (reset, zero window, not a
// clean SF), then the rest, each group in ID order; shown in ID order.
func (b *builder) conversationTable() conversationTable {
	t := conversationTable{Total: b.doc.Summary.Conversations}
	cited := analysis.CitedConversations(b.doc.Incidents)
	chosen := analysis.ByInterest(b.doc.Conversations, func(c analysis.Conversation) *flows.Conversation { return c.Conversation }, cited, b.opts.MaxTableRows)
	if len(chosen) < t.Total {
		t.Note = fmt.Sprintf("Showing %s of %s conversations: those an incident cites first, then those that did not close cleanly. All of them are in the JSON document (wiremortem analyze --json).",
			rules.Thousands(int64(len(chosen))), rules.Thousands(int64(t.Total)))
	}
	for _, c := range chosen {
		t.Rows = append(t.Rows, conversationRow{
			Anchor:      conversationAnchor(c.ID),
			ID:          c.ID,
			Start:       formatTime(c.Start),
			StartSort:   c.Start.UnixNano(),
			Duration:    analysis.FormatDuration(c.Duration),
			DurationNs:  int64(c.Duration),
			Client:      c.Client.String(),
			Server:      c.Server.String(),
			State:       text(c.ConnState),
			History:     text(c.History),
			ClientSent:  fmt.Sprintf("%d / %s", c.FromClient.Packets, rules.Thousands(c.FromClient.Bytes)),
			ClientBytes: c.FromClient.Bytes,
			ServerSent:  fmt.Sprintf("%d / %s", c.FromServer.Packets, rules.Thousands(c.FromServer.Bytes)),
			ServerBytes: c.FromServer.Bytes,
			ZeroWindows: len(c.ZeroWindows),
			Rexmits:     c.FromClient.Retransmissions + c.FromServer.Retransmissions,
			EndReason:   text(c.EndReason),
			Incident:    cited[c.ID],
		})
	}
	return t
}

func inputRows(inputs []analysis.InputFile) []inputRow {
	var out []inputRow
	for _, in := range inputs {
		r := inputRow{
			Path:    text(in.Path),
			Kind:    text(string(in.Kind)),
			Size:    in.Size,
			SHA256:  text(in.SHA256),
			Records: in.Records,
			Damage:  text(in.Damage),
		}
		if !in.First.IsZero() {
			r.Range = formatSpan(in.First, in.Last)
		}
		if c := in.Capture; c != nil {
			r.Format = text(fmt.Sprintf("%s %s, %s, snaplen %d", c.Format, c.Compression, c.LinkType, c.Snaplen))
			// Captures define the report's clock: every other source is
			// placed on it.
			r.Clock = "capture timestamps, UTC (the reference clock)"
		}
		if c := in.Clock; c != nil {
			r.Clock = analysis.ClockText(c)
		}
		out = append(out, r)
	}
	return out
}

func packetCounts(s analysis.Summary) []countRow {
	p := s.Packets
	return []countRow{
		{"packets read", p.Packets},
		{"TCP", p.TCP},
		{"not TCP", p.NotTCP},
		{"IP fragments", p.Fragments},
		{"malformed", p.Malformed},
		{"unsupported link type", p.UnsupportedLink},
		{"cut by the snap length (headers still used)", p.Truncated},
		{"conversations", int64(s.Conversations)},
		{"reassembly gaps", p.ReassemblyGaps},
	}
}

func warningPlace(w analysis.Warning) string {
	switch {
	case w.Line > 0:
		return evidence.Ref{Source: w.Source, Line: w.Line}.String()
	case w.Record > 0:
		return fmt.Sprintf("%s record %d (byte %d)", w.Source, w.Record, w.Offset)
	}
	return w.Source
}
