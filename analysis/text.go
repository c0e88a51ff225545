package analysis

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"
)

// WriteFlowTable prints one line per conversation, every conversation:
// the `wiremortem flows` output.
func (r *Result) WriteFlowTable(w io.Writer) error {
	doc := r.Document
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tSTART (UTC)\tDURATION\tCLIENT\tSERVER\tSTATE\tHISTORY\tC>S PKTS/BYTES\tS>C PKTS/BYTES\tZERO-WIN\tREXMIT")
	err := r.spool.each(func(c *Conversation) error {
		_, err := fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%d/%d\t%d\t%d\n",
			c.ID, c.Start.UTC().Format("2006-01-02T15:04:05.000000Z"), FormatDuration(c.Duration),
			c.Client, c.Server, c.ConnState, Safe(c.History),
			c.FromClient.Packets, c.FromClient.Bytes, c.FromServer.Packets, c.FromServer.Bytes,
			len(c.ZeroWindows), c.FromClient.Retransmissions+c.FromServer.Retransmissions)
		return err
	})
	if err != nil {
		return err
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	p := doc.Summary.Packets
	_, err = fmt.Fprintf(w, "%d conversations; %d packets: %d TCP, %d not TCP, %d IP fragments, %d malformed, %d unsupported link type; %d cut by the snap length\n",
		doc.Summary.Conversations, p.Packets, p.TCP, p.NotTCP, p.Fragments, p.Malformed, p.UnsupportedLink, p.Truncated)
	return err
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
