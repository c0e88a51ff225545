package htmlreport

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"wiremortem/analysis"
	"wiremortem/decoders/http"
	"wiremortem/decoders/websocket"
	"wiremortem/evidence"
	"wiremortem/flows"
)

// transcript is what one conversation an incident cites said above TCP:
// its HTTP requests and responses, the upgrade's verdict, the WebSocket
// messages kept (payloads as text or hex), closes and protocol
// violations, with the TCP moments that ended it and the log lines joined
// to it (the server's traced calls on the socket, nginx's lines), in time
// order. It is the part of a postmortem the capture alone shows only
// packet by packet: what the two ends said, and did, before it went
// wrong.
type transcript struct {
	Title string
	// Source is the capture whose packet numbers the lines cite as #N.
	Source string
	// Anchor is the conversation's row in the table, empty when the row is
	// not shown.
	Anchor string
	Lines  []saidLine
	// Notes say what the transcript leaves out or could not decode.
	Notes []string
}

type saidLine struct {
	// Class is the line's kind for the style sheet: request, response,
	// verdict, message, close, violation, tcp, log, omitted.
	Class string
	Time  string
	// From is "client", "server", "strace" or "log" (a line of the trace
	// or of nginx's logs), or empty for a line that is wiremortem's own
	// (a verdict, a count of lines left out).
	From    string
	What    string
	Payload string
	Ref     string
}

const (
	// maxTranscripts caps the conversations shown per incident.
	maxTranscripts = 3
	// maxSaidLines caps a transcript: the first few lines and the most
	// recent ones, which lead to whatever went wrong.
	maxSaidLines, saidLinesFirst = 24, 6
	// maxPayloadShown caps a payload's preview: what the document keeps
	// by default (--ws-payload), shown whole.
	maxPayloadShown = 256
)

// transcripts returns what the conversations an incident cites (ids, in
// the incident's order) said, for the first few that carried HTTP; shown
// are the conversations the table has a row for.
func (b *builder) transcripts(ids []int, shown map[int]bool) []transcript {
	var out []transcript
	seen := map[int]bool{}
	for _, id := range ids {
		if len(out) == maxTranscripts {
			break
		}
		c := b.convByID[id]
		if id == 0 || seen[id] || c == nil {
			continue
		}
		h, logs := c.HTTP, b.logLines()[id]
		if h != nil && h.Protocol != "http" {
			h = nil
		}
		if h == nil && len(logs) == 0 { // the ladder already shows its packets
			continue
		}
		seen[id] = true
		t := transcript{
			Title:  text(fmt.Sprintf("What conversation %d said: %s → %s", id, c.Client, c.Server)),
			Source: text(c.FirstPacket.Source),
			Lines:  saidLines(c.Conversation, h, logs),
			Notes:  saidNotes(h),
		}
		if shown[id] {
			t.Anchor = conversationAnchor(id)
		}
		out = append(out, t)
	}
	return out
}

// logLines returns, by conversation, the timeline's marks of log lines
// joined to it: the traced calls on its socket (accept, reads, writes,
// close) and nginx's lines about it, already on the capture's clock.
func (b *builder) logLines() map[int][]analysis.TimelineEvent {
	if b.joinedLogs == nil {
		b.joinedLogs = map[int][]analysis.TimelineEvent{}
		for _, ev := range b.doc.Timeline {
			switch ev.Kind {
			case analysis.EventStrace, analysis.EventLogError, analysis.EventLogRequest:
				if ev.Conversation != 0 {
					b.joinedLogs[ev.Conversation] = append(b.joinedLogs[ev.Conversation], ev)
				}
			}
		}
	}
	return b.joinedLogs
}

// said is a line with the instant it sorts by.
type said struct {
	at   time.Time
	line saidLine
}

// saidLines lists what a conversation said in time order (ties keep the
// order they were added in: a request before its response), with the TCP
// moments that end it (zero window, FIN, RST) and the log lines joined to
// it (logs), capped. h is nil when it carried no HTTP.
func saidLines(c *flows.Conversation, h *http.Conversation, logs []analysis.TimelineEvent) []saidLine {
	var all []said
	add := func(class string, at evidence.Stamp, from string, what, payload string) {
		line := saidLine{Class: class, Time: clock(at.Time), From: from, What: text(what), Payload: payload}
		switch {
		case at.Source == c.FirstPacket.Source && at.Packet > 0: // the transcript names the file once
			line.Ref = "#" + strconv.FormatInt(at.Packet, 10)
		case at.Packet > 0 || at.Line > 0:
			line.Ref = text(at.Ref.String())
		}
		all = append(all, said{at.Time, line})
	}
	for _, kp := range c.KeyPackets {
		switch kp.Label {
		case "zero-window":
			add("tcp", kp.Stamp, kp.From.String(), "advertises a zero window: it stopped reading", "")
		case "fin":
			add("tcp", kp.Stamp, kp.From.String(), "FIN: closes its side", "")
		case "rst":
			add("tcp", kp.Stamp, kp.From.String(), "RST: resets the connection", "")
		}
	}
	for _, ev := range logs {
		from := "log"
		if ev.Kind == analysis.EventStrace {
			from = "strace"
		}
		add("log", evidence.Stamp{Time: ev.Time, Ref: ev.Ref}, from, ev.What, "")
	}
	if h == nil {
		h = &http.Conversation{}
	}
	for i, x := range h.Exchanges {
		if x.Request == nil { // not from the decoder, which pairs responses with requests
			continue
		}
		if h.ExchangesOmitted > 0 && i == len(h.Exchanges)/2 {
			add("omitted", x.Request.Start, "", fmt.Sprintf("… %s exchanges not kept (the first and the most recent are) …", thousands(int64(h.ExchangesOmitted))), "")
		}
		add("request", x.Request.Start, "client", requestLine(x.Request), "")
		if x.Response != nil {
			add("response", x.Response.Start, "server", statusLine(x.Response, x.Interim), "")
		} else if !slices.ContainsFunc(h.Upgrades, func(u http.UpgradeHandshake) bool { return u.Request == x.Request }) {
			// (an upgrade's own line says how long the client waited)
			add("verdict", x.Request.End, "", "no response to this request"+interim(x.Interim), "")
		}
	}
	for _, u := range h.Upgrades {
		var at evidence.Stamp
		switch {
		case u.Response != nil:
			at = u.Response.Start
		case u.Request != nil:
			// When the client gave up: no packet of its own to cite.
			at.Time = u.Request.End.Time.Add(u.Waited)
		default:
			continue
		}
		add("verdict", at, "", upgradeVerdict(u), "")
		for _, f := range u.FramesWithoutUpgrade {
			what := f.Opcode + " frame"
			if f.CloseCode != 0 {
				what += fmt.Sprintf(" (code %d)", f.CloseCode)
			}
			if !f.Masked {
				what += ", unmasked,"
			}
			what += " although no 101 came"
			add("violation", f.Stamp, "client", what, text(f.Hex))
		}
	}
	if ws := h.WebSocket; ws != nil {
		for i, m := range ws.Messages {
			if ws.MessagesOmitted > 0 && i == len(ws.Messages)/2 {
				add("omitted", m.Start, "", fmt.Sprintf("… %s messages not kept (--ws-messages: the first and the most recent are) …", thousands(ws.MessagesOmitted)), "")
			}
			add("message", m.Start, m.From.String(), messageLine(&m), payloadPreview(&m))
		}
		for i, cl := range ws.Closes {
			reply := slices.ContainsFunc(ws.Closes[:i], func(o websocket.Close) bool { return o.From != cl.From })
			add("close", cl.Stamp, cl.From.String(), closeLine(&cl, reply), "")
		}
		for _, v := range ws.Violations {
			add("violation", v.Stamp, v.From.String(), "protocol violation: "+strings.TrimSuffix(v.Kind+": "+v.Detail, ": "), "")
		}
	}
	// A record with no time (the stream ended inside a frame) comes last.
	slices.SortStableFunc(all, func(a, b said) int {
		return cmp.Or(cmp.Compare(boolInt(a.at.IsZero()), boolInt(b.at.IsZero())), a.at.Compare(b.at))
	})
	lines := make([]saidLine, 0, min(len(all), maxSaidLines+1))
	for i, s := range all {
		if len(all) > maxSaidLines && i == saidLinesFirst {
			left := len(all) - maxSaidLines
			lines = append(lines, saidLine{Class: "omitted", What: fmt.Sprintf("… %d more lines here; the JSON document has every one kept …", left)})
		}
		if len(all) <= maxSaidLines || i < saidLinesFirst || i >= len(all)-(maxSaidLines-saidLinesFirst) {
			lines = append(lines, s.line)
		}
	}
	return lines
}

// saidNotes says what a transcript cannot show: a partial conversation,
// a side whose bytes could not be decoded, messages counted but not kept.
func saidNotes(h *http.Conversation) []string {
	var notes []string
	if h == nil {
		return nil
	}
	if h.Partial {
		notes = append(notes, text("Decoded in part: "+h.PartialReason))
	}
	stopped := func(what string, why [2]string) {
		for side, reason := range why {
			if reason != "" {
				notes = append(notes, text(fmt.Sprintf("The %s's %s could not be decoded past a point: %s", websocket.Side(side), what, reason)))
			}
		}
	}
	stopped("HTTP", h.Undecodable)
	if ws := h.WebSocket; ws != nil {
		stopped("WebSocket frames", ws.Undecodable)
		if len(ws.Messages) == 0 && ws.MessagesOmitted > 0 {
			notes = append(notes, fmt.Sprintf("%s WebSocket messages, none kept (--ws-messages 0).", thousands(ws.MessagesOmitted)))
		}
		if ws.ViolationsOmitted > 0 {
			notes = append(notes, fmt.Sprintf("%s more protocol violations are counted in the JSON document.", thousands(ws.ViolationsOmitted)))
		}
	}
	return notes
}

// clock is an instant's time of day: the transcript's title and the
// evidence list give the date.
func clock(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("15:04:05.000000")
}

func requestLine(m *http.Message) string {
	s := strings.TrimSpace(m.Method + " " + m.URI + " " + m.Version)
	var hs []string
	for _, name := range []string{"Host", "Upgrade", "Sec-WebSocket-Extensions"} {
		if v := m.Headers.Get(name); v != "" {
			hs = append(hs, name+": "+v)
		}
	}
	if len(hs) > 0 {
		s += " (" + strings.Join(hs, ", ") + ")"
	}
	return s + messageFlags(m)
}

func statusLine(m *http.Message, interimCodes []int) string {
	if m.Status == 0 { // the answer to an HTTP/0.9 request
		return m.Version + " answer: the body alone, up to the close" + messageFlags(m)
	}
	return strings.TrimSpace(m.Version+" "+strconv.Itoa(m.Status)+" "+m.Reason) + interim(interimCodes) + messageFlags(m)
}

// interim names the 1xx statuses sent before the final response.
func interim(codes []int) string {
	if len(codes) == 0 {
		return ""
	}
	s := make([]string, len(codes))
	for i, c := range codes {
		s[i] = strconv.Itoa(c)
	}
	return " (after interim " + strings.Join(s, ", ") + ")"
}

func messageFlags(m *http.Message) string {
	s := ""
	if !m.Complete {
		s += " (incomplete: the stream ended inside it)"
	}
	if len(m.Flags) > 0 {
		s += " [" + strings.Join(m.Flags, ", ") + "]"
	}
	return s
}

func upgradeVerdict(u http.UpgradeHandshake) string {
	proto := cmp.Or(u.Protocol, "?")
	switch u.Verdict {
	case http.VerdictOK:
		return fmt.Sprintf("upgrade to %s: ok, answered in %s", proto, analysis.FormatDuration(u.Waited))
	case http.VerdictNotUpgradedButFrames:
		return fmt.Sprintf("upgrade to %s: no 101 after %s, and the client sent WebSocket frames anyway", proto, analysis.FormatDuration(u.Waited))
	case http.VerdictNoResponse:
		return fmt.Sprintf("upgrade to %s: no response; the client waited %s", proto, analysis.FormatDuration(u.Waited))
	case http.VerdictRejected:
		if u.Response == nil {
			break
		}
		return fmt.Sprintf("upgrade to %s: rejected with %d after %s", proto, u.Response.Status, analysis.FormatDuration(u.Waited))
	case http.VerdictBadAccept:
		return fmt.Sprintf("upgrade to %s: bad Sec-WebSocket-Accept “%s”, expected “%s”", proto, u.Accept, u.ExpectedAccept)
	}
	return fmt.Sprintf("upgrade to %s: %s after %s", proto, u.Verdict, analysis.FormatDuration(u.Waited))
}

func messageLine(m *websocket.Message) string {
	s := fmt.Sprintf("%s message, %s bytes", m.Opcode, thousands(m.Length))
	if m.Compressed {
		s += fmt.Sprintf(" deflated (%s inflated)", thousands(m.Decompressed))
	}
	if m.Frames > 1 {
		s += fmt.Sprintf(" in %d frames", m.Frames)
	}
	if m.Error != "" {
		s += "; payload lost: " + m.Error
	}
	return s
}

// payloadPreview shows a message's kept bytes: a text message as text
// (control characters and invalid UTF-8 as \x escapes), anything else as
// hex; "…" when there was more.
func payloadPreview(m *websocket.Message) string {
	p, more := m.Payload, m.PayloadTruncated
	if m.Opcode != "text" {
		const maxHex = maxPayloadShown / 3
		if len(p) > maxHex {
			p, more = p[:maxHex], true
		}
		s := fmt.Sprintf("% x", p)
		if more {
			s += " …"
		}
		return s
	}
	if len(p) > maxPayloadShown {
		p, more = p[:maxPayloadShown], true
	}
	s := text(string(p))
	if more {
		s += " …"
	}
	return s
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// closeLine describes a Close frame; reply says the other side had sent
// its own Close first (this one answers it).
func closeLine(c *websocket.Close, reply bool) string {
	s := "Close"
	if c.Code != 0 {
		s += " " + strconv.Itoa(c.Code)
	} else {
		s += " without a status code"
	}
	if c.Reason != "" {
		s += " “" + c.Reason + "”"
	}
	switch {
	case reply:
		return s + ", in reply"
	case c.Answered:
		return s + ", answered"
	}
	return s + ", never answered"
}
