package rules

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"wiremortem/decoders/http"
	"wiremortem/decoders/websocket"
	"wiremortem/flows"
)

func init() {
	Register(Rule{
		ID:           "ws-abnormal-close",
		Title:        "A WebSocket ended without a clean close",
		Severity:     Medium,
		SeverityNote: "low when every close was a restart or try-again-later (1012, 1013), medium otherwise",
		DefersTo:     []string{"zero-window-rst", "rst-mid-stream", "idle-timeout-teardown", "upstream-timeout"},
		Doc: `After a successful upgrade, the WebSocket ended either without a closing handshake (the TCP connection closed or was reset with no Close frame from either side: what browsers report as code 1006, abnormal closure, RFC 6455 section 7.1.5) or with a Close frame carrying an error code: 1002 protocol error, 1003 unsupported data, 1007 invalid payload, 1008 policy violation, 1009 message too big, 1010 missing extension, 1011 internal error, 1012 service restart, 1013 try again later, 1014 bad gateway (section 7.4.1 and the IANA registry). ` +
			`Conversations are grouped by server; the summary counts each ending and says which side ended it. A Close frame's reason text, when the sender gave one, is quoted: it is often the exception message. ` +
			`Traps: a connection still open when the capture ended did not end; a conversation whose start was not captured (no 101 seen) is not judged; a teardown that another rule explains better (a zero window then RST, an idle timeout, a proxy's upstream timeout) is left to that rule.`,
		Detect: detectAbnormalClose,
	})
}

// errorCloseCodes are the Close codes that report a failure.
var errorCloseCodes = map[int]bool{1002: true, 1003: true, 1006: true, 1007: true, 1008: true, 1009: true, 1010: true, 1011: true, 1012: true, 1013: true, 1014: true, 1015: true}

// abnormal is one WebSocket that ended badly: with an error Close, or with
// TCP alone (close is nil).
type abnormal struct {
	c     *flows.Conversation
	ws    *websocket.Summary
	close *websocket.Close
	tcp   *flows.CloseMark
}

func detectAbnormalClose(ctx *Context) []Incident {
	groups := map[string][]abnormal{}
	var servers []string
	sockets := upgradedSockets(ctx.In)
	for _, c := range ctx.In.Conversations {
		h := ctx.In.HTTP[c.ID]
		if h == nil || h.WebSocket == nil || !upgraded(h) || ctx.ExplainedBy(c) != "" {
			continue
		}
		a, ok := abnormalEnd(c, h.WebSocket)
		if !ok || (a.close == nil && relayedClose(ctx, c, a.tcp, sockets)) {
			continue
		}
		key := c.Server.String()
		if groups[key] == nil {
			servers = append(servers, key)
		}
		groups[key] = append(groups[key], a)
	}
	sort.Strings(servers)
	var out []Incident
	for _, s := range servers {
		out = append(out, abnormalCloseIncident(groups[s]).done())
	}
	return out
}

// upgradedSockets lists the upgraded WebSocket conversations that ended,
// to pair a proxy's two legs.
func upgradedSockets(in *Input) []*flows.Conversation {
	var out []*flows.Conversation
	for _, c := range in.Conversations {
		if h := in.HTTP[c.ID]; h != nil && upgraded(h) && firstClose(c) != nil {
			out = append(out, c)
		}
	}
	return out
}

// relayWindow is how close in time a proxy's two legs end when it passes
// one end on to the other (nginx does it in the same event-loop turn).
const relayWindow = 200 * time.Millisecond

// relayedClose reports whether a TCP end with no Close frame was a proxy
// passing on the end of its other leg. The side that closed c is a host
// holding another upgraded conversation that ended within relayWindow (it
// is the server of one and the client of the other, like nginx between a
// browser and a backend), and that other end is the story: its peer
// ended it, another rule explains it, or the proxy ended it first.
func relayedClose(ctx *Context, c *flows.Conversation, end *flows.CloseMark, legs []*flows.Conversation) bool {
	proxy := c.Endpoint(end.By).Addr()
	for _, o := range legs {
		if o == c {
			continue
		}
		// The proxy is the server of one leg and the client of the other.
		proxySide := flows.Server
		if end.By == flows.Server {
			proxySide = flows.Client
		}
		if o.Endpoint(proxySide).Addr() != proxy {
			continue
		}
		oe := firstClose(o)
		gap := end.Time.Sub(oe.Time)
		if gap < -relayWindow || gap > relayWindow {
			continue
		}
		if oe.By != proxySide || ctx.ExplainedBy(o) != "" || gap >= 0 {
			return true
		}
	}
	return false
}

// upgraded reports whether the conversation's upgrade got a correct 101.
func upgraded(h *http.Conversation) bool {
	for _, u := range h.Upgrades {
		if u.Verdict == http.VerdictOK {
			return true
		}
	}
	return false
}

// abnormalEnd finds an error Close or a TCP end with no Close at all.
func abnormalEnd(c *flows.Conversation, ws *websocket.Summary) (abnormal, bool) {
	a := abnormal{c: c, ws: ws, tcp: firstClose(c)}
	for i := range ws.Closes {
		if errorCloseCodes[ws.Closes[i].Code] {
			a.close = &ws.Closes[i]
			return a, true
		}
	}
	if len(ws.Closes) > 0 || a.tcp == nil {
		return a, false
	}
	// No Close frame at all, and TCP ended. A decoder that lost its place
	// may have missed the Close: do not judge that.
	if ws.Undecodable[0] != "" || ws.Undecodable[1] != "" {
		return a, false
	}
	return a, true
}

func abnormalCloseIncident(group []abnormal) *draft {
	d := newDraft(Medium, "high")
	endings := map[string]int{}
	var order []string
	evidenceOf := map[string][]int{}
	restartsOnly := true
	for _, a := range group {
		c := a.c
		d.flow(c)
		var key string
		var ev []int
		if last := lastMessage(a.ws); last != nil {
			ev = append(ev, d.cite(last.End, "Last %s message, from the %s (%s)", last.Opcode, last.From, bytesText(last.Length)))
		}
		if a.close != nil {
			cl := a.close
			key = fmt.Sprintf("%s sent Close %s", cl.From, closeCodeText(cl.Code))
			reason := ""
			if cl.Reason != "" {
				reason = fmt.Sprintf(" with reason %q", CapText(cl.Reason, 120))
			}
			ev = append(ev, d.cite(cl.Stamp, "Close %s from %s%s", closeCodeText(cl.Code), who(c, cl.From), reason))
			if cl.Code != 1012 && cl.Code != 1013 {
				restartsOnly = false
			}
		} else {
			restartsOnly = false
			kind := tcpEndKind(c, a.tcp)
			key = fmt.Sprintf("%s %s the TCP connection with no Close frame", a.tcp.By, kind)
			ev = append(ev, d.cite(a.tcp.Stamp, "%s from %s with no WebSocket Close frame from either side", strings.ToUpper(kind[:3]), who(c, a.tcp.By)))
		}
		if evidenceOf[key] == nil {
			order = append(order, key)
		}
		endings[key]++
		evidenceOf[key] = append(evidenceOf[key], ev...)
	}
	if restartsOnly {
		d.Severity = Low
	}
	sort.Strings(order)
	first := group[0]
	if len(group) == 1 {
		d.summary("WebSocket %s -> %s ended badly: the %s%s.", first.c.Client, first.c.Server, order[0], reasonClause(first))
	} else {
		var parts []string
		for _, k := range order {
			parts = append(parts, fmt.Sprintf("%s (%d)", k, endings[k]))
		}
		d.summary("%d WebSockets to %s ended badly: %s.", len(group), first.c.Server, strings.Join(parts, "; "))
	}
	for _, k := range order {
		d.cause(abnormalCause(k, group), evidenceOf[k]...)
	}
	d.next(
		"Read the log of the side that ended each connection (above) at those times: an exception, a restart or a deliberate close should be there.",
		"Check that the server closes WebSockets with a Close frame on every path (shutdown, errors, timeouts), and that clients reconnect with backoff after 1011/1012/1013.",
	)
	return d
}

func lastMessage(ws *websocket.Summary) *websocket.Message {
	if len(ws.Messages) == 0 {
		return nil
	}
	return &ws.Messages[len(ws.Messages)-1]
}

// tcpEndKind says "closed" for a FIN and "reset" for a RST.
func tcpEndKind(c *flows.Conversation, m *flows.CloseMark) string {
	if rst := c.Closing.RSTs[m.By]; rst != nil && rst.Stamp == m.Stamp {
		return "reset"
	}
	return "closed"
}

func reasonClause(a abnormal) string {
	if a.close != nil && a.close.Reason != "" {
		return fmt.Sprintf(" (reason %q)", CapText(a.close.Reason, 120))
	}
	if a.close == nil {
		if idle := a.tcp.Time.Sub(lastTraffic(a)); idle >= time.Second {
			return fmt.Sprintf(" after %s of silence", seconds(idle))
		}
	}
	return ""
}

// lastTraffic is when the WebSocket last carried a message.
func lastTraffic(a abnormal) time.Time {
	if m := lastMessage(a.ws); m != nil {
		return m.End.Time
	}
	return a.tcp.Time
}

// abnormalCause explains one kind of ending, keyed as the summary words
// it ("server sent Close 1011 (internal error)", "client reset the TCP
// connection with no Close frame").
func abnormalCause(key string, group []abnormal) string {
	switch {
	case strings.Contains(key, "1011"):
		return key + ": the sender hit an unexpected condition, usually an exception in its message or open handler; the reason text, when present, is often its message."
	case strings.Contains(key, "1002"):
		return key + ": its peer's frames broke RFC 6455 (unmasked client frames, reserved bits or opcodes, bad lengths); see ws-protocol-violation."
	case strings.Contains(key, "1009"):
		return key + ": a message exceeded the receiver's maximum message size: raise the limit or split the messages."
	case strings.Contains(key, "1008"):
		return key + ": the sender's policy rejected the connection: authentication, authorization or an Origin rule after the upgrade."
	case strings.Contains(key, "1007"):
		return key + ": a text message was not valid UTF-8, or a payload failed the application's validation."
	case strings.Contains(key, "1003"):
		return key + ": the sender got a message type it does not accept (binary for a text-only endpoint, or the reverse)."
	case strings.Contains(key, "1010"):
		return key + ": the client required an extension the server did not negotiate."
	case strings.Contains(key, "1012"):
		return key + ": the server is restarting (a deploy): expected during rollouts; clients should reconnect with backoff."
	case strings.Contains(key, "1013"):
		return key + ": the server is overloaded and asks clients to come back later."
	case strings.Contains(key, "1014"):
		return key + ": a gateway in front of the server got a bad answer from its upstream."
	case strings.Contains(key, "1006") || strings.Contains(key, "1015"):
		return key + ": codes 1006 and 1015 must never be sent in a frame (RFC 6455 section 7.4.1): the sender's WebSocket library is broken."
	case strings.HasPrefix(key, "server reset"):
		return key + ": the server's process dropped the connection without a closing handshake and with a RST: it closed the socket with unread data, used SO_LINGER 0, crashed or was killed."
	case strings.HasPrefix(key, "server"):
		return key + ": the server's process closed the socket without the WebSocket closing handshake: an error path that closes the TCP connection directly (terminate instead of close), a crash or restart, or a server-side timeout."
	case strings.HasPrefix(key, "client reset"):
		return key + ": the client dropped the connection abruptly: a killed process, a closed browser tab or app, or a middlebox resetting it."
	}
	return key + ": the client went away without a closing handshake: a closed tab or app, a process that exited, or a client-side timeout."
}
