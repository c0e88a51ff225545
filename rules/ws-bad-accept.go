package rules

import (
	"fmt"

	"wiremortem/decoders/http"
	"wiremortem/flows"
)

func init() {
	Register(Rule{
		ID:       "ws-bad-accept",
		Title:    "A 101 carried the wrong Sec-WebSocket-Accept",
		Severity: High,
		Doc: `The server answered a WebSocket upgrade with 101 Switching Protocols, but its Sec-WebSocket-Accept was missing or was not base64(SHA-1(Sec-WebSocket-Key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")) for the key the client sent (RFC 6455 section 4.2.2). ` +
			`A conforming client must then fail the connection (section 4.1), so the upgrade "succeeded" on the wire and failed in the client: browsers report "Incorrect 'Sec-WebSocket-Accept' header value". ` +
			`The summary gives the expected and received values and how the client ended the connection. Causes: a proxy that rewrote or regenerated the Sec-WebSocket-Key on its way to the backend (the backend answers the key it saw), a response cached or replayed from another handshake, or a server with a hand-written handshake (wrong GUID, hex instead of base64, a key trimmed or not).`,
		Detect: detectBadAccept,
	})
}

func detectBadAccept(ctx *Context) []Incident {
	groups := wsUpgrades(ctx.In)
	var out []Incident
	for _, server := range sortedEndpoints(groups) {
		for _, up := range groups[server] {
			if up.u.Verdict == http.VerdictBadAccept && up.u.Response != nil {
				out = append(out, badAcceptIncident(up).done())
			}
		}
	}
	return out
}

func badAcceptIncident(up upgrade) *draft {
	c, u := up.c, up.u
	d := newDraft(High, "high")
	d.flow(c)
	key := u.Request.Headers.Get("Sec-WebSocket-Key")
	req := d.cite(u.Request.End, "Upgrade request %s from client %s with Sec-WebSocket-Key %s", requestText(u.Request), c.Client, CapText(key, 40))
	got := "no Sec-WebSocket-Accept"
	if u.Accept != "" {
		got = "Sec-WebSocket-Accept " + CapText(u.Accept, 60)
	}
	resp := d.cite(u.Response.Start, "Server answered %s with %s; the key calls for %s%s", statusText(u.Response), got, u.ExpectedAccept, responseHeaders(u.Response))
	ending := ""
	if first := firstClose(c); first != nil {
		kind := "closed"
		if rst := c.Closing.RSTs[first.By]; rst != nil && rst.Stamp == first.Stamp {
			kind = "reset"
		}
		ending = fmt.Sprintf("; the %s %s the connection %s later", first.By, kind, seconds(first.Time.Sub(u.Response.Start.Time)))
		if first.By == flows.Client {
			ending += ", failing it as RFC 6455 requires"
		}
		d.cite(first.Stamp, "%s %s the connection", capitalize(who(c, first.By)), kind)
	}
	d.summary("WebSocket upgrade on %s -> %s got a 101 with %s instead of %s%s.", c.Client, c.Server, got, u.ExpectedAccept, ending)
	d.cause("A proxy between the client and the server rewrote the Sec-WebSocket-Key (or opened its own WebSocket to the backend with a new key) and passed the backend's 101 back unchanged: the backend answered the key it saw, not the client's.", req, resp)
	d.cause("The server computes the accept wrongly: a wrong GUID, SHA-1 printed in hex instead of base64, or the key trimmed, decoded or re-encoded before hashing; or the 101 came from a cache or from another handshake.", resp)
	d.next(
		fmt.Sprintf("Compute the expected value yourself: printf '%%s' %s'258EAFA5-E914-47DA-95CA-C5AB0DC85B11' | openssl sha1 -binary | base64 (it should print %s).", shellQuote(key), u.ExpectedAccept),
		fmt.Sprintf("Capture between the proxy and the backend (and on %s directly) and compare the Sec-WebSocket-Key each hop sent: the hop that changes it is the culprit.", c.Server),
		"If the server's handshake is hand-written, replace it with the framework's or a library's implementation.",
	)
	return d
}
