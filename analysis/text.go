package analysis

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"wiremortem/correlate"
	"wiremortem/rules"
)

// flowTableHeader and flowRow lay out `wiremortem flows`: fixed columns,
// so that rows can be written as conversations finish and streamed back
// without holding the table in memory.
const flowTableHeader = "#       START (UTC)                  DURATION   CLIENT                  SERVER                  STATE   HISTORY       C>S PKTS/BYTES      S>C PKTS/BYTES      ZERO-WIN  REXMIT\n"

// flowRow is a conversation's row without its ID, which is written in
// front of it (a sharded run learns the final IDs only at the end).
func flowRow(c *Conversation) string {
	return fmt.Sprintf("%-28s %-10s %-23s %-23s %-7s %-13s %-19s %-19s %-9d %d\n",
		c.Start.UTC().Format("2006-01-02T15:04:05.000000Z"), FormatDuration(c.Duration),
		c.Client, c.Server, c.ConnState, Safe(c.History),
		fmt.Sprintf("%d/%d", c.FromClient.Packets, c.FromClient.Bytes), fmt.Sprintf("%d/%d", c.FromServer.Packets, c.FromServer.Bytes),
		len(c.ZeroWindows), c.FromClient.Retransmissions+c.FromServer.Retransmissions)
}

// writeRow writes a table line: the conversation's ID, then its row.
func writeRow(w io.Writer, id int, row []byte) error {
	if _, err := fmt.Fprintf(w, "%-7d ", id); err != nil {
		return err
	}
	_, err := w.Write(row)
	return err
}

// WriteFlowTable prints one line per conversation, every conversation:
// the `wiremortem flows` output.
func (r *Result) WriteFlowTable(w io.Writer) error {
	doc := r.Document
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.WriteString(flowTableHeader)
	switch {
	case r.rows != nil:
		if err := r.rows.eachRow(bw); err != nil {
			return err
		}
	case !r.keptConversations:
		return errNotKept
	default:
		for _, c := range r.convs {
			writeRow(bw, c.ID, []byte(flowRow(&Conversation{Conversation: c})))
		}
	}
	p := doc.Summary.Packets
	fmt.Fprintf(bw, "%d conversations; %d packets: %d TCP, %d not TCP, %d IP fragments, %d malformed, %d unsupported link type; %d cut by the snap length\n",
		doc.Summary.Conversations, p.Packets, p.TCP, p.NotTCP, p.Fragments, p.Malformed, p.UnsupportedLink, p.Truncated)
	return bw.Flush()
}

// FormatDuration prints a duration with millisecond precision, the way a
// person reads a timeline ("1.234s", "850ms").
func FormatDuration(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.3fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return d.String()
}

// Safe makes text from a capture or a log fit for a terminal: control
// characters (ANSI escape sequences included) and invalid UTF-8 are written
// as \x escapes, so nothing hostile reaches the terminal as a command.
func Safe(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n <= 1) || unicode.IsControl(r) {
			for _, c := range []byte(s[i : i+n]) {
				fmt.Fprintf(&b, `\x%02x`, c)
			}
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// WriteVerdict prints the short verdict `wiremortem analyze` shows: the
// incidents, most severe first, one line each with the first flow, the
// duration and the summary.
func WriteVerdict(w io.Writer, doc *Document) error {
	bw := bufio.NewWriter(w)
	span := ""
	if !doc.Summary.Start.IsZero() {
		start, end := doc.Summary.Start.UTC(), doc.Summary.End.UTC()
		endFormat := "15:04:05"
		if start.YearDay() != end.YearDay() || start.Year() != end.Year() {
			endFormat = "2006-01-02 15:04:05"
		}
		span = fmt.Sprintf(" (traffic %s to %s UTC)", start.Format("2006-01-02 15:04:05"), end.Format(endFormat))
	}
	if doc.Summary.Partial {
		fmt.Fprintln(bw, Safe(cmp.Or(doc.Summary.PartialReason, "interrupted")+"; what follows covers only what was read until then"))
	}
	switch n := len(doc.Incidents); n {
	case 0:
		fmt.Fprintf(bw, "no incidents in %d conversations%s\n", doc.Summary.Conversations, span)
	default:
		fmt.Fprintf(bw, "%d incident%s in %d conversations%s\n", n, plural(n), doc.Summary.Conversations, span)
	}
	if doc.IncidentsOmitted > 0 {
		fmt.Fprintf(bw, "  (%d more, less severe, not listed: the incident cap, --max-incidents)\n", doc.IncidentsOmitted)
	}
	for _, inc := range doc.Incidents {
		flow := ""
		if len(inc.Flows) > 0 {
			flow = inc.Flows[0].Client + " -> " + inc.Flows[0].Server
			if more := len(inc.Flows) - 1 + inc.FlowsOmitted; more > 0 {
				flow += fmt.Sprintf(" (+%d)", more)
			}
		}
		fmt.Fprintf(bw, "  %-8s %-22s %-40s %8s  %s\n", strings.ToUpper(inc.Severity.String()), inc.Rule, flow, FormatDuration(inc.End.Sub(inc.Start)), Safe(inc.Summary))
	}
	return bw.Flush()
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// TimeOfDay is an instant's time of day on the capture clock, UTC, to the
// microsecond; "—" for no time.
func TimeOfDay(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("15:04:05.000000")
}

// WriteExplanation prints each incident in full, most severe first, as
// the report's card shows it: the summary, when, the likely causes with
// the evidence they cite, what to check next, the evidence, and what the
// first conversations it cites said (Transcript). It is `analyze
// --explain`, for a terminal with no browser: everything from a capture
// or a log goes through Safe, so no escape sequence reaches the terminal.
func WriteExplanation(w io.Writer, doc *Document) error {
	bw := bufio.NewWriter(w)
	tr := NewTranscriber(doc)
	for i := range doc.Incidents {
		inc := &doc.Incidents[i]
		fmt.Fprintf(bw, "\n%s %s: %s\n  %s\n", strings.ToUpper(inc.Severity.String()), Safe(inc.Rule), Safe(inc.Title), Safe(inc.Summary))
		fmt.Fprintf(bw, "  when: %s -> %s UTC (%s), confidence %s\n", inc.Start.UTC().Format("2006-01-02 15:04:05.000000"), TimeOfDay(inc.End), FormatDuration(inc.End.Sub(inc.Start)), Safe(inc.Confidence))
		if len(inc.Causes) > 0 {
			fmt.Fprintln(bw, "  likely causes:")
			for j, c := range inc.Causes {
				cites := ""
				for _, e := range c.Evidence {
					cites += fmt.Sprintf(" [%d]", e+1)
				}
				fmt.Fprintf(bw, "    %d. %s%s\n", j+1, Safe(c.Text), cites)
			}
		}
		if len(inc.Next) > 0 {
			fmt.Fprintln(bw, "  check next:")
			for _, n := range inc.Next {
				fmt.Fprintf(bw, "    - %s\n", Safe(n))
			}
		}
		if len(inc.Evidence) > 0 {
			fmt.Fprintln(bw, "  evidence:")
			for j, e := range inc.Evidence {
				fmt.Fprintf(bw, "    [%d] %s  %s  %s\n", j+1, Safe(e.Ref.String()), TimeOfDay(e.Time), Safe(e.What))
			}
			if inc.EvidenceOmitted > 0 {
				fmt.Fprintf(bw, "    (%s more in the JSON document)\n", rules.Thousands(int64(inc.EvidenceOmitted)))
			}
		}
		for _, t := range tr.For(inc, TranscriptsPerIncident) {
			c := t.Conversation
			fmt.Fprintf(bw, "  what conversation %d said (%s -> %s; #N are packets of %s):\n", c.ID, c.Client, c.Server, Safe(c.FirstPacket.Source))
			for _, l := range t.Lines {
				ref := t.RefText(&l)
				line := fmt.Sprintf("    %-15s %-6s %s", TimeOfDay(l.Time), l.From, l.What)
				if l.Payload != "" {
					line += "  " + l.Payload
				}
				if ref != "" {
					line += "  " + ref
				}
				fmt.Fprintln(bw, line)
			}
			for _, n := range t.Notes {
				fmt.Fprintf(bw, "    (%s)\n", n)
			}
		}
	}
	// The logs' times above are on the capture's clock: say how each got
	// there, so a line can be found in the file by the time it wrote.
	first := true
	for _, in := range doc.Inputs {
		if in.Clock == nil || len(doc.Incidents) == 0 {
			continue // no log, or no incident to show its times
		}
		if first {
			fmt.Fprintln(bw, "\nlog times above are on the capture's clock (UTC):")
			first = false
		}
		fmt.Fprintf(bw, "  %s: %s\n", Safe(in.Path), ClockText(in.Clock))
	}
	return bw.Flush()
}

// ClockText says in a sentence how a log's times were put on the
// capture's clock: the zone and day its times were read in and where they
// came from, the skew given or estimated (from how many pairings with
// packets, or why none), and the shift applied.
func ClockText(c *ClockAssumption) string {
	parts := []string{fmt.Sprintf("zone %s, %s", c.Zone, c.ZoneSource)}
	if c.Date != "" {
		parts = append(parts, fmt.Sprintf("day %s, %s", c.Date, c.DateSource))
	}
	if c.GivenOffset != 0 {
		parts = append(parts, fmt.Sprintf("offset %v given", c.GivenOffset))
	}
	switch {
	case c.Estimated != nil:
		parts = append(parts, fmt.Sprintf("estimated from %d pairing%s with packets, good to about %v: %s", c.Estimated.Matches, plural(c.Estimated.Matches), c.Estimated.Spread, c.EstimateNote))
	case c.EstimateNote != "":
		parts = append(parts, c.EstimateNote)
	}
	switch {
	case c.Applied != 0:
		parts = append(parts, fmt.Sprintf("times shifted by %v", c.Applied))
	case c.EstimateNote != correlate.NoteSnapshotsAsWritten: // it says so already
		parts = append(parts, "times taken as written")
	}
	return Safe(strings.Join(parts, "; "))
}
