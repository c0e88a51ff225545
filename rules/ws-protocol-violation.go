package rules

import (
	"fmt"
	"sort"
	"strings"

	"wiremortem/decoders/websocket"
	"wiremortem/flows"
)

func init() {
	Register(Rule{
		ID:           "ws-protocol-violation",
		Title:        "WebSocket frames broke RFC 6455",
		Severity:     Medium,
		SeverityNote: "low when every violation is a non-minimal length (harmless to most peers), medium otherwise",
		Doc: `After a successful upgrade, a side sent frames that break RFC 6455 (or RFC 7692 for permessage-deflate): a client frame without a mask or a masked server frame (section 5.1), a reserved opcode or RSV bit without an extension (5.2), a control frame longer than 125 bytes or fragmented (5.5), a bad close code or a 1-byte close payload (5.5.1, 7.4), a length in more bytes than needed or with its top bit set (5.2), a continuation with nothing to continue or a new message inside a fragmented one (5.4), text that is not UTF-8 (8.1), a compressed message that does not inflate (RFC 7692 section 7.2). ` +
			`A conforming peer fails the connection on most of these (close 1002 or 1007), so they explain disconnects that look random. Violations are grouped by server and by the side that sent them, with counts by kind and the first of each cited. ` +
			`Traps: where the decoder lost its place (a capture gap, a stream it could not follow) it reports that separately and it is not a violation of the peer; the decoder's own size caps are not violations either.`,
		Detect: detectProtocolViolation,
	})
}

// decoderOnly are violation kinds about the decoder's own state or caps, or
// a stream that ended mid-frame (the connection's end tells that story),
// not the peer's conduct.
var decoderOnly = map[string]bool{"resynchronised": true, "undecodable": true, "truncated-frame": true, "message-too-large": true, "decompressed-too-large": true}

type violationGroup struct {
	server string
	from   websocket.Side
	convs  []*flows.Conversation
	byKind map[string][]websocket.Violation
}

func detectProtocolViolation(ctx *Context) []Incident {
	groups := map[string]*violationGroup{}
	for _, c := range ctx.In.Conversations {
		h := ctx.In.HTTP[c.ID]
		if h == nil || h.WebSocket == nil || !upgraded(h) {
			continue
		}
		seen := map[string]bool{}
		for _, v := range h.WebSocket.Violations {
			if decoderOnly[v.Kind] {
				continue
			}
			key := c.Server.String() + " " + v.From.String()
			g := groups[key]
			if g == nil {
				g = &violationGroup{server: c.Server.String(), from: v.From, byKind: map[string][]websocket.Violation{}}
				groups[key] = g
			}
			if !seen[key] {
				seen[key] = true
				g.convs = append(g.convs, c)
			}
			g.byKind[v.Kind] = append(g.byKind[v.Kind], v)
		}
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []Incident
	for _, k := range keys {
		out = append(out, violationIncident(groups[k]).done())
	}
	return out
}

func violationIncident(g *violationGroup) *draft {
	kinds := make([]string, 0, len(g.byKind))
	total := 0
	for k, vs := range g.byKind {
		kinds = append(kinds, k)
		total += len(vs)
	}
	sort.Strings(kinds)
	sev := Low
	for _, k := range kinds {
		if k != "non-minimal-length" {
			sev = Medium
		}
	}
	d := newDraft(sev, "high")
	for _, c := range g.convs {
		d.flow(c)
	}
	var counts []string
	for _, k := range kinds {
		vs := g.byKind[k]
		counts = append(counts, fmt.Sprintf("%s (%d)", k, len(vs)))
		v := vs[0]
		detail := ""
		if v.Detail != "" {
			detail = ": " + CapText(v.Detail, 160)
		}
		i := d.cite(v.Stamp, "%s from the %s%s", k, v.From, detail)
		d.cause(violationCause(k, g.from), i)
	}
	conns := plural(len(g.convs), "connection")
	sender := "server " + g.server
	if g.from == websocket.Client {
		sender = "clients of " + g.server
		if len(g.convs) == 1 {
			sender = "client " + g.convs[0].Client.String() + " of " + g.server
		}
	}
	d.summary("The %s sent %s breaking RFC 6455 on %s: %s.", sender, plural(total, "frame"), conns, strings.Join(counts, ", "))
	d.next(
		fmt.Sprintf("Identify the %s's WebSocket library and version (User-Agent or Server header of the handshake) and check its changelog for the violation above; conforming peers close such connections with 1002 or 1007.", g.from),
		"If a proxy or load balancer sits between the peers, capture on both sides of it: a middlebox that rewrites frames (or does not understand an extension) produces these too.",
	)
	return d
}

// violationCause explains a kind of violation for the side that sent it.
func violationCause(kind string, from websocket.Side) string {
	switch kind {
	case "unmasked-client-frame":
		return "unmasked-client-frame: the client does not mask its frames (RFC 6455 section 5.1 requires it; servers must close with 1002): a client library written for server-side use, or a raw socket speaking WebSocket by hand."
	case "masked-server-frame":
		return "masked-server-frame: the server masks its frames, which a server must not do (section 5.1): a client library used on the server side."
	case "reserved-opcode":
		return "reserved-opcode: a frame used an opcode RFC 6455 reserves: a corrupted stream, or a peer speaking a draft protocol (hixie-76/hybi)."
	case "rsv-without-extension":
		return "rsv-without-extension: RSV bits were set although no extension was negotiated: the sender compresses (permessage-deflate) without having negotiated it, or a proxy stripped Sec-WebSocket-Extensions from the handshake."
	case "control-frame-too-long", "fragmented-control-frame":
		return kind + ": a ping, pong or close frame was longer than 125 bytes or fragmented (section 5.5): the sender's library builds control frames wrongly."
	case "bad-close-code", "close-payload-1-byte", "bad-close-reason-utf8":
		return kind + ": a Close frame's body is malformed (section 5.5.1, 7.4): the receiver will answer 1002 instead of a clean close."
	case "non-minimal-length", "length-top-bit":
		return kind + ": a frame length was encoded in more bytes than needed or with the 64-bit length's top bit set (section 5.2): strict peers fail the connection, most tolerate it."
	case "unexpected-continuation", "new-message-inside-fragmented":
		return kind + ": fragmentation broke (section 5.4): frames of two messages interleaved, typically two threads writing to one WebSocket without a lock."
	case "bad-text-utf8":
		return "bad-text-utf8: a text message was not valid UTF-8 (section 8.1): binary data sent as text, or a string cut in the middle of a character."
	case "decompression-error":
		return "decompression-error: a compressed message did not inflate (RFC 7692): the two sides disagree on context takeover or window bits, or a proxy altered the negotiation."
	}
	return kind + ": a breach of RFC 6455 by the " + from.String() + "."
}
