package htmlreport

import (
	"fmt"

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

// transcripts returns what the first conversations inc cites said; shown
// are the conversations the table has a row for.
func (b *builder) transcripts(inc *rules.Incident, shown map[int]bool) []transcript {
	var out []transcript
	for _, tr := range b.transcriber.For(inc, analysis.TranscriptsPerIncident) {
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
			line := saidLine{Class: l.Class, Time: analysis.TimeOfDay(l.Time), From: l.From, What: l.What, Payload: l.Payload, Ref: tr.RefText(&l)}
			if l.Class == "omitted" && l.Time.IsZero() { // the cap's count, not a record
				line.Time = ""
			}
			t.Lines = append(t.Lines, line)
		}
		out = append(out, t)
	}
	return out
}
