package rules

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"wiremortem/correlate"
	"wiremortem/decoders/http"
	"wiremortem/flows"
)

func init() {
	Register(Rule{
		ID:       "ws-upgrade-no-101",
		Title:    "A WebSocket upgrade was never answered",
		Severity: High,
		Doc: `A client sent an HTTP/1.1 GET with Upgrade: websocket (RFC 6455 section 4.1) and no response came, neither 101 Switching Protocols nor anything else, before the client gave up (closed, reset, or sent frames on the un-upgraded connection), the server closed, or threshold passed with the connection still waiting. ` +
			`Upgrades are grouped by server; the summary says how many went unanswered out of how many, how long the clients waited, how the others were answered, and how the clients gave up: many WebSocket clients, after their handshake timeout, send a Close frame on the connection that was never upgraded (seed 000: 88 02 03 e8, close 1000), which the decoder reports as not-upgraded-but-frames. ` +
			`The TCP handshake completed, so the listen backlog is not the cause; the fault is above TCP. With the server's strace joined, the rule says which: the server read the request and never wrote (the handshake handler failed or was lost), or never read it (its event loop or worker was blocked). ` +
			`Traps: a capture that stops less than threshold after the request, with the connection still open, proves nothing; a request whose start was not captured is partial and not judged; a response lost in a capture gap is not a missing response, so conversations with gaps in the server's direction are skipped.`,
		Params: []Param{
			DurationParam("threshold", 3*time.Second, "how long a connection still open must have waited for a response to count (one that ended without a response counts whatever its wait)"),
		},
		Detect: detectUpgradeNo101,
	})
}

// unanswered is one upgrade that got no response, with what the server's
// trace says about it.
type unanswered struct {
	upgrade
	sock *correlate.StraceSocket
}

func detectUpgradeNo101(ctx *Context) []Incident {
	threshold := ctx.Params.Duration("threshold")
	groups := wsUpgrades(ctx.In)
	var out []Incident
	for _, server := range sortedEndpoints(groups) {
		ups := groups[server]
		var missing []unanswered
		for _, up := range ups {
			v := up.u.Verdict
			if (v != http.VerdictNoResponse && v != http.VerdictNotUpgradedButFrames) || up.c.FromServer.MissedBytes > 0 {
				continue
			}
			ended := firstClose(up.c) != nil || len(up.u.FramesWithoutUpgrade) > 0
			if !ended && up.u.Waited < threshold {
				continue
			}
			missing = append(missing, unanswered{up, serverSocket(ctx.In, up.c)})
		}
		if len(missing) > 0 {
			out = append(out, upgradeNo101Incident(ctx.In, missing, ups).done())
		}
	}
	return out
}

// straceVerdict sorts unanswered upgrades by what the server did with
// them, as its trace shows.
type straceVerdict struct {
	readNoWrite, neverRead, wrote, untraced []unanswered
}

func judgeTraces(missing []unanswered) straceVerdict {
	var v straceVerdict
	for _, m := range missing {
		switch l := m.sock; {
		case l == nil:
			v.untraced = append(v.untraced, m)
		case l.Life.BytesWritten > 0:
			v.wrote = append(v.wrote, m)
		case l.Life.BytesRead > 0:
			v.readNoWrite = append(v.readNoWrite, m)
		default:
			v.neverRead = append(v.neverRead, m)
		}
	}
	return v
}

func upgradeNo101Incident(in *Input, missing []unanswered, all []upgrade) *draft {
	traces := judgeTraces(missing)
	confidence := "medium"
	if len(traces.untraced) == 0 {
		confidence = "high"
	}
	d := newDraft(High, confidence)
	var requests, giveUps, strace []int
	var waits []time.Duration
	frameClients, closeCodes := 0, map[int]bool{}
	for _, m := range missing {
		c, u := m.c, m.u
		d.flow(c)
		waits = append(waits, u.Waited)
		req := u.Request
		requests = append(requests, d.cite(req.End, "Upgrade request %s from client %s (Sec-WebSocket-Key %s)", requestText(req), c.Client, CapText(req.Headers.Get("Sec-WebSocket-Key"), 40)))
		if len(u.FramesWithoutUpgrade) > 0 {
			frameClients++
			f := u.FramesWithoutUpgrade[0]
			if f.Opcode == "close" {
				closeCodes[f.CloseCode] = true
			}
			giveUps = append(giveUps, d.cite(f.Stamp, "Client sent %s %s after its request, though no 101 had come", frameText(f), seconds(f.Time.Sub(req.End.Time))))
		}
		if first := firstClose(c); first != nil {
			kind := "FIN"
			if c.Closing.RSTs[first.By] != nil && c.Closing.RSTs[first.By].Stamp == first.Stamp {
				kind = "RST"
			}
			giveUps = append(giveUps, d.cite(first.Stamp, "%s from %s %s after the request, with no response sent", kind, who(c, first.By), seconds(first.Time.Sub(req.End.Time))))
		}
		if m.sock != nil {
			strace = append(strace, d.citeStraceLife(in, m.sock)...)
		}
	}
	sort.Slice(waits, func(i, j int) bool { return waits[i] < waits[j] })
	wait := "in " + seconds(waits[0])
	if len(waits) > 1 {
		wait = "(waited " + secondsRange(waits[0], waits[len(waits)-1]) + ")"
		if seconds(waits[0]) == seconds(waits[len(waits)-1]) {
			wait = "(waited " + seconds(waits[0]) + " each)"
		}
	}

	first := missing[0]
	var b strings.Builder
	if len(missing) == 1 {
		fmt.Fprintf(&b, "WebSocket upgrade on %s -> %s got no 101 %s", first.c.Client, first.c.Server, wait)
	} else {
		fmt.Fprintf(&b, "%d of %s to %s got no 101 %s", len(missing), plural(len(all), "WebSocket upgrade"), first.c.Server, wait)
	}
	if n, med := answeredUpgrades(all); n > 0 && len(missing) > 1 {
		fmt.Fprintf(&b, "; %d others were answered in %s (median)", n, seconds(med))
	}
	b.WriteString(traceClause(traces, len(missing)))
	b.WriteString(giveUpClause(missing, frameClients, closeCodes))
	d.summary("%s.", b.String())

	upgradeNo101Causes(d, traces, missing, all, requests, giveUps, strace)
	if len(traces.untraced) > 0 {
		d.next(fmt.Sprintf("On %s, trace the server while clients connect: strace -f -tt -T -yy -e trace=network,read,write,close -p PID -o server.strace, then wiremortem analyze CAPTURE --strace server.strace: a read of the GET with no write on the same fd is a lost handshake.", first.c.Server.Addr()))
	}
	d.next(
		"Check the server's application log around the incident for errors in the handshake or open handler, and its workers: how many, how many busy or blocked (Swoole worker_num/task workers, php-fpm or gunicorn status).",
		"Reproduce with a timed handshake: curl -i -N --max-time 10 -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' "+shellQuote("http://"+first.c.Server.String()+CapText(first.u.Request.URI, 120)),
		"Leave the listen backlog and somaxconn alone: every TCP handshake here completed, so the accept queue did not drop these connections.",
	)
	return d
}

// traceClause says what the server's trace shows: "; the server read the
// request (strace fd 2032, line 6) and never wrote".
func traceClause(v straceVerdict, n int) string {
	refs := func(ms []unanswered, mark func(*correlate.StraceSocket) int64) string {
		if len(ms) == 1 {
			return fmt.Sprintf("strace fd %d, line %d", ms[0].sock.Life.FD, mark(ms[0].sock))
		}
		var each []string
		for i, m := range ms {
			if i == 3 {
				each = append(each, "…")
				break
			}
			each = append(each, fmt.Sprintf("fd %d line %d", m.sock.Life.FD, mark(m.sock)))
		}
		return "strace " + strings.Join(each, ", ")
	}
	firstRead := func(s *correlate.StraceSocket) int64 { return s.Life.FirstRead.Line }
	opened := func(s *correlate.StraceSocket) int64 { return s.Life.Opened.Line }
	switch {
	case len(v.readNoWrite) == n && n == 1:
		return fmt.Sprintf("; the server read the request (%s) and never wrote", refs(v.readNoWrite, firstRead))
	case len(v.readNoWrite) == n:
		return fmt.Sprintf("; the server read each request (%s) and never wrote", refs(v.readNoWrite, firstRead))
	case len(v.neverRead) == n:
		return fmt.Sprintf("; the server accepted the connection (%s) and never read the request", refs(v.neverRead, opened))
	case len(v.readNoWrite) > 0:
		return fmt.Sprintf("; the server read %d of these requests (%s) and never wrote", len(v.readNoWrite), refs(v.readNoWrite, firstRead))
	}
	return ""
}

// giveUpClause says how the clients gave up: "; the client gave up with a
// Close frame (1000) on the un-upgraded connection".
func giveUpClause(missing []unanswered, frameClients int, codes map[int]bool) string {
	if frameClients == 0 {
		first := firstClose(missing[0].c)
		switch {
		case len(missing) > 1:
			return ""
		case first == nil:
			return "; the connection was still open when the capture ended"
		case first.By == flows.Server:
			return "; the server closed the connection without answering"
		}
		return "; the client gave up and closed"
	}
	var list []string
	for code := range codes {
		list = append(list, fmt.Sprint(code))
	}
	sort.Strings(list)
	what := "WebSocket frames"
	if len(list) > 0 {
		what = "a Close frame (" + strings.Join(list, ", ") + ")"
	}
	switch {
	case len(missing) == 1:
		return "; the client gave up with " + what + " on the un-upgraded connection"
	case frameClients == len(missing):
		return "; the clients gave up with " + what + " on the un-upgraded connections"
	}
	return fmt.Sprintf("; %d clients gave up with %s on the un-upgraded connections", frameClients, what)
}

func upgradeNo101Causes(d *draft, v straceVerdict, missing []unanswered, all []upgrade, requests, giveUps, strace []int) {
	n := len(missing)
	switch {
	case len(v.readNoWrite) > 0:
		d.cause("The server application read the upgrade request and never wrote a response: its handshake handler never completed. Look for an exception or early return in the handshake/open callback, a worker busy or blocked when the request arrived, or a request lost between the process that read it and the worker meant to answer it (a reactor/worker dispatch). The network and the kernel delivered the request; the fault is in the application.", append(append([]int{}, requests...), strace...)...)
	case len(v.neverRead) > 0:
		d.cause("The server accepted the connection but never read the request: the thread or event loop that owns the socket was blocked (a long synchronous call, a lock, a full worker pool), or the socket was never registered with the event loop.", append(append([]int{}, requests...), strace...)...)
	default:
		d.cause("The server (or a proxy in front of it) received the request and never answered it: the handshake handler stalled or failed. The server's strace (--strace) would tell a request read and never answered from one never read.", requests...)
	}
	if ok, med := answeredUpgrades(all); ok > 0 {
		d.cause(fmt.Sprintf("The fault is intermittent: %d other upgrades to the same server were answered in %s (median). One stuck worker among several, or a race in how connections are dispatched to workers, fits; an outage or a network fault would not.", ok, seconds(med)), requests...)
	}
	if len(giveUps) > 0 {
		waits := make([]time.Duration, 0, n)
		for _, m := range missing {
			waits = append(waits, m.u.Waited)
		}
		sort.Slice(waits, func(i, j int) bool { return waits[i] < waits[j] })
		d.cause(fmt.Sprintf("The client's handshake timeout is about %s: it gave up that long after its request. Raising it hides the fault; it does not fix it.", seconds(median(waits))), giveUps...)
	}
}
