package htmlreport

import (
	"fmt"
	"strconv"
	"time"

	"wiremortem/analysis"
	"wiremortem/rules"
)

// transcript is what one conversation an incident cites said
// (analysis.Transcript), formatted.
type transcript struct {
	Title string
	// Source is the capture whose packet numbers the lines cite as #N.
	Source string
	// Anchor is the conversation's row in the table, empty when the row is
	// not shown.
	Anchor string
	Lines  []saidLine
	Notes  []string
}

type saidLine struct {
	// Class is the line's kind for the style sheet (analysis.TranscriptLine).
	Class, Time, From, What, Payload, Ref string
}

// maxTranscripts caps the conversations shown per incident.
const maxTranscripts = 3

// transcripts returns what the first conversations inc cites said; shown
// are the conversations the table has a row for.
func (b *builder) transcripts(inc *rules.Incident, shown map[int]bool) []transcript {
	if b.transcriber == nil {
		b.transcriber = analysis.NewTranscriber(b.doc)
	}
	var out []transcript
	for _, tr := range b.transcriber.For(inc, maxTranscripts) {
		c := tr.Conversation
		t := transcript{
			Title:  text(fmt.Sprintf("What conversation %d said: %s → %s", c.ID, c.Client, c.Server)),
			Source: text(c.FirstPacket.Source),
			Notes:  tr.Notes,
		}
		if shown[c.ID] {
			t.Anchor = conversationAnchor(c.ID)
		}
		for _, l := range tr.Lines {
			line := saidLine{Class: l.Class, Time: clock(l.Time), From: l.From, What: l.What, Payload: l.Payload}
			switch {
			case l.Ref.Source == c.FirstPacket.Source && l.Ref.Packet > 0: // the transcript names the file once
				line.Ref = "#" + strconv.FormatInt(l.Ref.Packet, 10)
			case l.Ref.Packet > 0 || l.Ref.Line > 0:
				line.Ref = text(l.Ref.String())
			}
			if l.Class == "omitted" && l.Time.IsZero() { // the cap's count, not a record
				line.Time = ""
			}
			t.Lines = append(t.Lines, line)
		}
		out = append(out, t)
	}
	return out
}

// clock is an instant's time of day: the transcript's title and the
// evidence list give the date.
func clock(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("15:04:05.000000")
}
