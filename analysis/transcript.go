package analysis

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"wiremortem/decoders/http"
	"wiremortem/decoders/websocket"
	"wiremortem/evidence"
	"wiremortem/flows"
	"wiremortem/rules"
)

// Transcript is what one conversation an incident cites said above TCP:
// its HTTP requests and responses, the upgrade's verdict, the WebSocket
// messages kept (payloads as text or hex), closes and protocol
// violations, with the TCP moments that ended it and the log lines joined
// to it (the server's traced calls on the socket, nginx's lines), in time
// order. It is the part of a postmortem the capture alone shows only
// packet by packet: what the two ends said, and did, before it went
// wrong. The HTML report and `analyze --explain` show it.
type Transcript struct {
	Conversation *flows.Conversation
	Lines        []TranscriptLine
	// Notes say what the transcript leaves out or could not decode.
	Notes []string
}

// TranscriptLine is one thing said or done. Text from the capture or a
// log is already made safe to show (Safe).
type TranscriptLine struct {
	// Class is the line's kind: request, response, verdict, message,
	// close, ping, violation, tcp, log, omitted.
	Class string
	// Time is zero for a line with no instant of its own (the stream
	// ended inside a frame; a count of lines left out).
	Time time.Time
	// From is "client", "server", "strace" or "log" (a line of the trace
	// or of nginx's logs), or empty for a line that is wiremortem's own
	// (a verdict, a count of lines left out).
	From    string
	What    string
	Payload string
	// Ref is the packet or log line that shows it; empty for wiremortem's
	// own lines.
	Ref evidence.Ref
}

// RefText is how a line cites its packet or log line: "#N" for a packet
// of the capture the conversation started in (the transcript names that
// file once), the whole reference otherwise, "" for none.
func (t *Transcript) RefText(l *TranscriptLine) string {
	switch {
	case l.Ref.Source == t.Conversation.FirstPacket.Source && l.Ref.Packet > 0:
		return "#" + strconv.FormatInt(l.Ref.Packet, 10)
	case l.Ref.Packet > 0 || l.Ref.Line > 0:
		return Safe(l.Ref.String())
	}
	return ""
}

const (
	// MaxTranscriptLines caps a transcript: the first few lines and the
	// most recent ones, which lead to whatever went wrong.
	MaxTranscriptLines, transcriptLinesFirst = 24, 6
	// MaxPayloadShown caps a payload's preview: what the document keeps
	// by default (--ws-payload), shown whole.
	MaxPayloadShown = websocket.DefaultPayloadBytes
	// TranscriptsPerIncident is how many of an incident's conversations
	// the report and --explain show the transcripts of.
	TranscriptsPerIncident = 3
)

// Transcriber makes the transcripts of a document's conversations.
type Transcriber struct {
	convByID map[int]*Conversation
	// logs are the timeline's marks of log lines joined to each
	// conversation: the traced calls on its socket (accept, reads,
	// writes, close) and nginx's lines about it, on the capture's clock.
	logs map[int][]TimelineEvent
}

// NewTranscriber indexes doc's conversations and joined log lines.
func NewTranscriber(doc *Document) *Transcriber {
	t := &Transcriber{convByID: map[int]*Conversation{}, logs: map[int][]TimelineEvent{}}
	for i := range doc.Conversations {
		t.convByID[doc.Conversations[i].ID] = &doc.Conversations[i]
	}
	for _, ev := range doc.Timeline {
		switch ev.Kind {
		case EventStrace, EventLogError, EventLogRequest:
			if ev.Conversation != 0 {
				t.logs[ev.Conversation] = append(t.logs[ev.Conversation], ev)
			}
		}
	}
	return t
}

// Conversation returns the document's conversation with that ID, nil when
// the report does not hold it.
func (t *Transcriber) Conversation(id int) *Conversation { return t.convByID[id] }

// For returns what the conversations inc cites said, in the incident's
// order, for the first max that have something to show: decoded HTTP or
// joined log lines (a conversation with neither is all in its ladder).
func (t *Transcriber) For(inc *rules.Incident, max int) []Transcript {
	var out []Transcript
	seen := map[int]bool{}
	for _, f := range inc.Flows {
		if len(out) == max {
			break
		}
		id := f.Conversation
		c := t.convByID[id]
		if id == 0 || seen[id] || c == nil {
			continue
		}
		h, logs := c.HTTP, t.logs[id]
		if h != nil && h.Protocol != "http" {
			h = nil
		}
		if h == nil && len(logs) == 0 {
			continue
		}
		seen[id] = true
		out = append(out, Transcript{Conversation: c.Conversation, Lines: transcriptLines(c.Conversation, h, logs), Notes: transcriptNotes(h)})
	}
	return out
}

// transcriptLines lists what a conversation said in time order (ties
// keep the order they were added in: a request before its response), with
// the TCP moments that end it (zero window, FIN, RST) and the log lines
// joined to it (logs), capped. h is nil when it carried no HTTP.
func transcriptLines(c *flows.Conversation, h *http.Conversation, logs []TimelineEvent) []TranscriptLine {
	var all []TranscriptLine
	add := func(class string, at evidence.Stamp, from string, what, payload string) {
		line := TranscriptLine{Class: class, Time: at.Time, From: from, What: Safe(what), Payload: payload}
		if at.Packet > 0 || at.Line > 0 {
			line.Ref = at.Ref
		}
		all = append(all, line)
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
		if ev.Kind == EventStrace {
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
			add("omitted", x.Request.Start, "", fmt.Sprintf("… %s exchanges not kept (the first and the most recent are) …", rules.Thousands(int64(h.ExchangesOmitted))), "")
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
			add("violation", f.Stamp, "client", what, Safe(f.Hex))
		}
	}
	if ws := h.WebSocket; ws != nil {
		for i, m := range ws.Messages {
			if ws.MessagesOmitted > 0 && i == len(ws.Messages)/2 {
				add("omitted", m.Start, "", fmt.Sprintf("… %s messages not kept (--ws-messages: the first and the most recent are) …", rules.Thousands(ws.MessagesOmitted)), "")
			}
			add("message", m.Start, m.From.String(), messageLine(&m), payloadPreview(&m))
		}
		for i, cl := range ws.Closes {
			reply := slices.ContainsFunc(ws.Closes[:i], func(o websocket.Close) bool { return o.From != cl.From })
			add("close", cl.Stamp, cl.From.String(), closeLine(&cl, reply), "")
		}
		for _, pp := range ws.Pings {
			what := "ping; no pong came back"
			if pp.Pong != nil {
				what = "ping, answered by a pong in " + FormatDuration(pp.RTT)
			}
			add("ping", pp.Ping, pp.From.String(), what, "")
		}
		for _, v := range ws.Violations {
			add("violation", v.Stamp, v.From.String(), "protocol violation: "+strings.TrimSuffix(v.Kind+": "+v.Detail, ": "), "")
		}
	}
	// A record with no time (the stream ended inside a frame) comes last.
	slices.SortStableFunc(all, func(a, b TranscriptLine) int {
		return cmp.Or(cmp.Compare(boolInt(a.Time.IsZero()), boolInt(b.Time.IsZero())), a.Time.Compare(b.Time))
	})
	if len(all) <= MaxTranscriptLines {
		return all
	}
	recent := MaxTranscriptLines - transcriptLinesFirst
	left := TranscriptLine{Class: "omitted", What: fmt.Sprintf("… %d more line%s here; the JSON document has every one kept …", len(all)-MaxTranscriptLines, plural(len(all)-MaxTranscriptLines))}
	return slices.Concat(all[:transcriptLinesFirst], []TranscriptLine{left}, all[len(all)-recent:])
}

// transcriptNotes says what a transcript cannot show: a partial conversation,
// a side whose bytes could not be decoded, messages counted but not kept.
func transcriptNotes(h *http.Conversation) []string {
	var notes []string
	if h == nil {
		return nil
	}
	if h.Partial {
		notes = append(notes, Safe("Decoded in part: "+h.PartialReason))
	}
	stopped := func(what string, why [2]string) {
		for side, reason := range why {
			if reason != "" {
				notes = append(notes, Safe(fmt.Sprintf("The %s's %s could not be decoded past a point: %s", websocket.Side(side), what, reason)))
			}
		}
	}
	stopped("HTTP", h.Undecodable)
	if ws := h.WebSocket; ws != nil {
		stopped("WebSocket frames", ws.Undecodable)
		if len(ws.Messages) == 0 && ws.MessagesOmitted > 0 {
			notes = append(notes, fmt.Sprintf("%s WebSocket messages, none kept (--ws-messages 0).", rules.Thousands(ws.MessagesOmitted)))
		}
		if ws.PingsOmitted > 0 {
			notes = append(notes, fmt.Sprintf("%s more pings are counted in the JSON document.", rules.Thousands(ws.PingsOmitted)))
		}
		if ws.ViolationsOmitted > 0 {
			notes = append(notes, fmt.Sprintf("%s more protocol violations are counted in the JSON document.", rules.Thousands(ws.ViolationsOmitted)))
		}
	}
	return notes
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
		return fmt.Sprintf("upgrade to %s: ok, answered in %s", proto, FormatDuration(u.Waited))
	case http.VerdictNotUpgradedButFrames:
		return fmt.Sprintf("upgrade to %s: no 101 after %s, and the client sent WebSocket frames anyway", proto, FormatDuration(u.Waited))
	case http.VerdictNoResponse:
		return fmt.Sprintf("upgrade to %s: no response; the client waited %s", proto, FormatDuration(u.Waited))
	case http.VerdictRejected:
		if u.Response == nil {
			break
		}
		return fmt.Sprintf("upgrade to %s: rejected with %d after %s", proto, u.Response.Status, FormatDuration(u.Waited))
	case http.VerdictBadAccept:
		return fmt.Sprintf("upgrade to %s: bad Sec-WebSocket-Accept “%s”, expected “%s”", proto, u.Accept, u.ExpectedAccept)
	}
	return fmt.Sprintf("upgrade to %s: %s after %s", proto, u.Verdict, FormatDuration(u.Waited))
}

func messageLine(m *websocket.Message) string {
	s := fmt.Sprintf("%s message, %s bytes", m.Opcode, rules.Thousands(m.Length))
	if m.Compressed {
		s += fmt.Sprintf(" deflated (%s inflated)", rules.Thousands(m.Decompressed))
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
		const maxHex = MaxPayloadShown / 3
		if len(p) > maxHex {
			p, more = p[:maxHex], true
		}
		s := fmt.Sprintf("% x", p)
		if more {
			s += " …"
		}
		return s
	}
	if len(p) > MaxPayloadShown {
		p, more = p[:MaxPayloadShown], true
	}
	s := Safe(string(p))
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
