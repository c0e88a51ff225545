package rules

import (
	"fmt"
	"sort"
	"strings"

	"wiremortem/decoders/http"
	"wiremortem/evidence"
)

func init() {
	Register(Rule{
		ID:           "ws-upgrade-rejected",
		Title:        "A WebSocket upgrade was refused",
		Severity:     High,
		SeverityNote: "medium, high when the answer was a 5xx (the server or a proxy failed)",
		Doc: `A client asked for a WebSocket upgrade and the server answered with a status other than 101 Switching Protocols (RFC 6455 section 4.2.2 lets a server refuse with any HTTP status). ` +
			`Upgrades are grouped by server; the summary counts each status. The status points at the cause: 400 a handshake the server found malformed (a missing or bad Sec-WebSocket-Key or Version, or a proxy that dropped the Upgrade and Connection headers), 426 a protocol version the server does not speak, 401/403 authentication or an Origin check, 404 a wrong path, 3xx a redirect the WebSocket client cannot follow, 200 a server or proxy that treated the upgrade as a plain GET, 502/503/504 a proxy whose upstream failed. ` +
			`Traps: a response lost in a capture gap is not a refusal; a client that retries after a 401 with credentials and then succeeds had a refusal by design, which the summary's counts of later successes show.`,
		Detect: detectUpgradeRejected,
	})
}

func detectUpgradeRejected(ctx *Context) []Incident {
	groups := wsUpgrades(ctx.In)
	var out []Incident
	for _, server := range sortedEndpoints(groups) {
		var refused []upgrade
		for _, up := range groups[server] {
			if up.u.Verdict == http.VerdictRejected && up.u.Response != nil {
				refused = append(refused, up)
			}
		}
		if len(refused) > 0 {
			out = append(out, upgradeRejectedIncident(ctx.In, refused, groups[server]).done())
		}
	}
	return out
}

func upgradeRejectedIncident(in *Input, refused, all []upgrade) *draft {
	statuses := map[int]int{}
	reasons := map[int]string{}
	evidenceOf := map[int][]int{}
	d := newDraft(Medium, "high")
	for _, up := range refused {
		c, req, resp := up.c, up.u.Request, up.u.Response
		d.flow(c)
		st := resp.Status
		statuses[st]++
		reasons[st] = statusText(resp)
		ev := []int{
			d.cite(req.End, "Upgrade request %s from client %s%s", requestText(req), c.Client, handshakeHeaders(req)),
			d.cite(resp.Start, "Server answered %s after %s%s", statusText(resp), seconds(up.u.Waited), responseHeaders(resp)),
		}
		for _, a := range in.logsFor(c.ID).Access {
			r := a.Record
			ev = append(ev, d.cite(evidence.Stamp{Time: r.Time, Ref: r.Ref}, "nginx access: %s %s", CapText(r.Request, 120), fmt.Sprint(r.Status)))
		}
		evidenceOf[st] = append(evidenceOf[st], ev...)
		if st >= 500 {
			d.Severity = High
		}
	}
	codes := make([]int, 0, len(statuses))
	for st := range statuses {
		codes = append(codes, st)
	}
	sort.Ints(codes)
	var counts []string
	for _, st := range codes {
		counts = append(counts, fmt.Sprintf("%s (%d)", reasons[st], statuses[st]))
	}
	first := refused[0]
	ok := 0
	for _, up := range all {
		if up.u.Verdict == http.VerdictOK {
			ok++
		}
	}
	if len(refused) == 1 {
		d.summary("WebSocket upgrade on %s -> %s was refused: %s instead of 101, after %s%s.", first.c.Client, first.c.Server, reasons[codes[0]], seconds(first.u.Waited), okClause(ok))
	} else if len(refused) == len(all) {
		d.summary("All %d WebSocket upgrades to %s were refused: %s.", len(all), first.c.Server, strings.Join(counts, ", "))
	} else {
		d.summary("%d of %s to %s were refused: %s%s.", len(refused), plural(len(all), "WebSocket upgrade"), first.c.Server, strings.Join(counts, ", "), okClause(ok))
	}
	for _, st := range codes {
		d.cause(rejectionCause(st), evidenceOf[st]...)
	}
	d.next(
		"Read the server's log (and the proxy's error log) for the refused requests: servers usually say why they refused a handshake.",
		fmt.Sprintf("Replay the handshake with the same headers and compare: curl -i -N -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' %s", shellQuote("http://"+first.c.Server.String()+CapText(first.u.Request.URI, 120))),
		"Behind nginx, check the location has proxy_http_version 1.1, proxy_set_header Upgrade $http_upgrade and proxy_set_header Connection \"upgrade\": without them the backend sees a plain GET.",
	)
	return d
}

func okClause(ok int) string {
	if ok == 0 {
		return ""
	}
	return fmt.Sprintf("; %s to the same server succeeded", plural(ok, "other upgrade"))
}

// handshakeHeaders quotes the request headers a refusal turns on.
func handshakeHeaders(m *http.Message) string {
	var parts []string
	for _, h := range []string{"Sec-WebSocket-Version", "Origin", "Sec-WebSocket-Protocol"} {
		if v, ok := m.Headers.Lookup(h); ok {
			parts = append(parts, h+": "+CapText(v, 80))
		}
	}
	if _, ok := m.Headers.Lookup("Sec-WebSocket-Key"); !ok {
		parts = append(parts, "no Sec-WebSocket-Key")
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// responseHeaders quotes the response headers that say who answered and
// what it wanted.
func responseHeaders(m *http.Message) string {
	var parts []string
	for _, h := range []string{"Server", "Sec-WebSocket-Version", "Location", "Upgrade", "Connection"} {
		if v, ok := m.Headers.Lookup(h); ok {
			parts = append(parts, h+": "+CapText(v, 80))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// rejectionCause explains a refusal status.
func rejectionCause(status int) string {
	switch {
	case status == 400:
		return "400: the server found the handshake malformed: a missing or invalid Sec-WebSocket-Key or Sec-WebSocket-Version, a missing Host, or Upgrade/Connection headers dropped by a proxy in between (nginx without proxy_set_header Upgrade/Connection), so the backend saw a plain GET on a WebSocket-only endpoint."
	case status == 426:
		return "426 Upgrade Required: the server does not speak the client's WebSocket version; its Sec-WebSocket-Version header lists the ones it does (RFC 6455 section 4.4)."
	case status == 401 || status == 407:
		return fmt.Sprintf("%d: the server (or proxy) wants credentials the client did not send: a missing or expired token or cookie.", status)
	case status == 403:
		return "403: the server refused this client: an Origin check (a cross-origin page, a wrong allowed-origins list), an IP or authorization rule."
	case status == 404:
		return "404: nothing serves WebSockets at that path: a wrong URL, or a proxy location that does not match and routes the request elsewhere."
	case status == 429:
		return "429: the server is rate-limiting handshakes: clients reconnecting too fast (a reconnect loop without backoff) or a limit set too low."
	case status >= 300 && status < 400:
		return fmt.Sprintf("%d: a redirect (the Location header says where, often http to https); WebSocket clients do not follow redirects, so the URL must be the final one.", status)
	case status >= 200 && status < 300:
		return fmt.Sprintf("%d: the server treated the upgrade as a plain request: the endpoint is not a WebSocket endpoint, or a proxy in front of it did not pass the upgrade on.", status)
	case status == 502:
		return "502: a proxy could not get an answer from its upstream: the upstream refused the connection, reset it or sent something the proxy could not parse (its error log says which)."
	case status == 503:
		return "503: the server or a proxy is overloaded, in maintenance, or has no healthy upstream."
	case status == 504:
		return "504: a proxy timed out waiting for its upstream to answer the handshake."
	case status >= 500:
		return fmt.Sprintf("%d: the server failed while handling the handshake; its log should have the error.", status)
	}
	return fmt.Sprintf("%d: the server refused the upgrade with this status.", status)
}
