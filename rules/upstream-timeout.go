package rules

import (
	"fmt"
	"sort"
	"time"

	"wiremortem/decoders/nginx"
	"wiremortem/evidence"
	"wiremortem/flows"
)

func init() {
	Register(Rule{
		ID:           "upstream-timeout",
		Title:        "A proxy timed out waiting for its upstream",
		Severity:     High,
		SeverityNote: "medium; high when many_requests or more requests timed out in one episode",
		Doc: `nginx logged "upstream timed out (110: Connection timed out) while ...", or a traced process's connect() returned -1 ETIMEDOUT. ` +
			`The context of nginx's line says which timer fired (ngx_http_upstream.c): "connecting to upstream" is proxy_connect_timeout (the upstream did not complete the handshake), "sending request to upstream" proxy_send_timeout (it stopped taking the request), "reading response header from upstream" proxy_read_timeout (it took the request and answered nothing: the client gets 504), "reading upstream" proxy_read_timeout in the middle of the body (the client gets a truncated response), and "proxying upgraded connection" proxy_read_timeout on a WebSocket through nginx, which nginx re-arms on every event in either direction, so it fires when the connection sat idle that long (proxy_send_timeout when a write to the upstream was blocked instead). fastcgi_, uwsgi_, scgi_ and grpc_ upstreams have the same timers under their own prefix. ` +
			`The capture tells the timer's value: nginx arms it when it sends the request, or on each event, and closes its connection to the upstream when it fires, so the silence before nginx's FIN or RST on that connection is the setting. ` +
			`Timeouts of one upstream and one timer that fall close together are one incident, with the clients' conversations, nginx's conversations with the upstream, and the error and access lines. ` +
			`A traced connect() that fails with ETIMEDOUT is the kernel giving up after net.ipv4.tcp_syn_retries SYN retransmissions (about 127 s with the default 6). ` +
			`An idle WebSocket that nginx closes is told by idle-timeout-teardown when the capture shows the silence; this rule reports it only from the logs.`,
		Params: []Param{
			DurationParam("group_gap", time.Minute, "timeouts of one upstream closer together than this are one episode, one incident"),
			CountParam("many_requests", 5, "timed-out requests in one episode that make it high severity"),
		},
		DefersTo: []string{"idle-timeout-teardown"},
		Detect:   detectUpstreamTimeout,
	})
}

// timedOutOnUpstream accepts nginx's "upstream timed out" lines whose
// context names the timer.
func timedOutOnUpstream(r *nginx.ErrorRecord) bool {
	return r.Message == nginxUpstreamTimedOut && nginxTimer(r, false) != ""
}

// kernelConnectTimer is what ends a blocking connect() that gets no
// answer.
const kernelConnectTimer = "net.ipv4.tcp_syn_retries"

func detectUpstreamTimeout(ctx *Context) []Incident {
	in, p := ctx.In, ctx.Params
	var failures []*upstreamFailure
	for _, f := range upstreamFailures(in, timedOutOnUpstream, "ETIMEDOUT", gaveUp) {
		if f.explainedBy(ctx) == "" {
			failures = append(failures, f)
		}
	}
	key := func(f *upstreamFailure) string { return f.upstream + " " + timerOf(f) }
	var out []Incident
	for _, episode := range byUpstream(failures, p.Duration("group_gap"), key) {
		out = append(out, timeoutEpisode(in, p, episode).done())
	}
	return out
}

// gaveUp reports whether a conversation looks like a proxy's attempt that
// timed out: the proxy (its client) closed it, or its SYNs got no answer.
func gaveUp(c *flows.Conversation) bool {
	return closedBy(c, flows.Client) != nil || (sentSYN(c) && c.Handshake.SYNACKCount == 0 && c.Handshake.RefusedBy == nil)
}

// timerOf names the timer that ended a failure.
func timerOf(f *upstreamFailure) string {
	if f.err == nil {
		return kernelConnectTimer
	}
	return nginxTimer(f.err.Record, writeBlocked(f.attempt))
}

// context is what the proxy was doing when its timer fired.
func (f *upstreamFailure) context() string {
	if f.err == nil {
		return ctxConnecting
	}
	return f.err.Record.Context
}

// writeBlocked reports whether nginx (the attempt's client) still had
// data the upstream had not taken when it gave up: bytes unacknowledged,
// or the upstream's window closed.
func writeBlocked(a *flows.Conversation) bool {
	if a == nil {
		return false
	}
	m := closedBy(a, flows.Client)
	if m == nil {
		return false
	}
	if m.Unacked > 0 {
		return true
	}
	for _, zw := range a.ZeroWindows {
		if zw.Receiver == flows.Server && !zw.Start.Time.After(m.Time) && (zw.End == nil || !zw.End.Time.Before(m.Time)) {
			return true
		}
	}
	return false
}

// closedBy is side's first FIN or RST, nil when it sent neither.
func closedBy(c *flows.Conversation, side flows.Side) *flows.CloseMark {
	fin, rst := c.Closing.FINs[side], c.Closing.RSTs[side]
	if fin == nil || (rst != nil && rst.Time.Before(fin.Time)) {
		return rst
	}
	return fin
}

// waitMeasure is how long a proxy waited before it gave up, from the
// capture or a trace: from the last thing it got or sent to its close, or
// across a connect. from is zero when only a log line gives the length.
type waitMeasure struct {
	d                time.Duration
	from, to         evidence.Stamp
	fromWhat, toWhat string
}

// measureWait measures a failure's wait, false when nothing shows it.
func measureWait(in *Input, f *upstreamFailure) (waitMeasure, bool) {
	if a := f.attempt; a != nil {
		if a.Handshake.SYNACKCount > 0 {
			if m := closedBy(a, flows.Client); m != nil {
				last, from, _ := lastActivity(a, m.Time)
				what := fmt.Sprintf("last data on nginx's connection to the upstream, from %s", who(a, from))
				if from == flows.Client {
					what = fmt.Sprintf("last data on nginx's connection to the upstream: nginx (%s) sent it", a.Client)
				}
				return waitMeasure{d: m.Time.Sub(last.Time), from: last, to: m.Stamp, fromWhat: what,
					toWhat: fmt.Sprintf("%s from nginx (%s) to the upstream: it gave up", closeWord(a, m), a.Client)}, true
			}
		} else if sentSYN(a) && f.client != nil {
			if r := responseAfter(in, f.client, firstSYN(a).Time); r != nil {
				return waitMeasure{d: r.Time.Sub(firstSYN(a).Time), from: firstSYN(a), to: *r,
					fromWhat: fmt.Sprintf("SYN from nginx (%s) to the upstream", a.Client), toWhat: "nginx's answer to the client: it gave up connecting"}, true
			}
		}
	}
	if f.trace != nil {
		l := f.trace.Life
		if d, ok := connectWait(l); ok {
			at := in.straceStamp(*l.Connect)
			return waitMeasure{d: d, to: at, toWhat: fmt.Sprintf("strace: connect(%d, %s) returned ETIMEDOUT after %s", l.FD, l.Peer, seconds(d))}, true
		}
	}
	if f.access != nil {
		for _, u := range f.access.Upstreams {
			if u.Addr == f.upstream && u.ResponseTime > 0 {
				return waitMeasure{d: u.ResponseTime, to: in.logStamp(f.access.Ref, f.access.Time, f.access.TimeHasZone),
					toWhat: fmt.Sprintf("nginx access: $upstream_response_time %s for %s", seconds(u.ResponseTime), u.Addr)}, true
			}
		}
	}
	return waitMeasure{}, false
}

func closeWord(c *flows.Conversation, m *flows.CloseMark) string {
	if c.Closing.RSTs[m.By] == m {
		return "RST"
	}
	return "FIN"
}

// responseAfter is the start of the first response the proxy sent its
// client after t.
func responseAfter(in *Input, c *flows.Conversation, t time.Time) *evidence.Stamp {
	h := in.HTTP[c.ID]
	if h == nil {
		return nil
	}
	for _, x := range h.Exchanges {
		if r := x.Response; r != nil && r.Start.Time.After(t) {
			return &r.Start
		}
	}
	return nil
}

// timeoutWork says, for the summary, what the proxy was doing.
var timeoutWork = map[string]string{
	ctxConnecting:      "connecting to",
	ctxSSLHandshaking:  "in the TLS handshake with",
	ctxSendingRequest:  "sending the request to",
	ctxReadingHeader:   "waiting for the response header from",
	ctxReadingUpstream: "reading the response from",
	ctxUpgraded:        "on an upgraded (WebSocket) connection to",
}

func timeoutEpisode(in *Input, p Params, episode []*upstreamFailure) *draft {
	first := episode[0]
	timer, ctxt := timerOf(first), first.context()
	sev := Medium
	if int64(len(episode)) >= p.Count("many_requests") {
		sev = High
	}
	d := newDraft(sev, "medium")
	var waits []time.Duration
	var proof []int
	for i, f := range episode {
		f.flows(d)
		logs := d.citeLogs(in, f)
		if i == 0 {
			proof = append(proof, logs...)
		}
		w, ok := measureWait(in, f)
		if !ok {
			continue
		}
		waits = append(waits, w.d)
		if len(waits) == 1 {
			if w.from.Ref.Source != "" {
				proof = append(proof, d.cite(w.from, "%s", w.fromWhat))
			}
			proof = append(proof, d.cite(w.to, "%s", w.toWhat))
			if w.from.Ref.Source != "" && first.err != nil && first.err.Key != "" {
				d.Confidence = "high"
			}
		}
	}
	sort.Slice(waits, func(i, j int) bool { return waits[i] < waits[j] })
	measured, value := "", ""
	if len(waits) > 0 {
		measured = " after " + secondsRange(waits[0], waits[len(waits)-1])
		value = fmt.Sprintf(", about %s here", seconds(median(waits)))
		if timer == kernelConnectTimer {
			value = ""
		}
	}
	proxy := "nginx"
	if first.err == nil {
		proxy = fmt.Sprintf("Process %d", first.trace.Life.PID)
	}
	work := timeoutWork[ctxt]
	outcome := clientOutcome(in, episode)
	if ctxt == ctxUpgraded {
		outcome = fmt.Sprintf("; it closed %s", plural(len(episode), "client connection"))
		if len(episode) == 1 {
			outcome = fmt.Sprintf("; it closed client %s's connection", first.clientName())
		}
	}
	if len(episode) == 1 {
		d.summary("%s timed out %s upstream %s%s (%s%s)%s.", proxy, work, first.upstream, measured, timer, value, outcome)
	} else {
		d.summary("%s timed out %d times over %s %s upstream %s%s (%s%s)%s.", proxy, len(episode), seconds(failureSpan(episode)), work, first.upstream, measured, timer, value, outcome)
	}

	// within writes the timer with the wait measured, when it was:
	// "proxy_read_timeout (2.0 s)".
	within, wait := timer, ""
	if len(waits) > 0 {
		wait = seconds(median(waits))
		within += " (" + wait + ")"
	}
	switch {
	case timer == kernelConnectTimer:
		d.cause(fmt.Sprintf("Upstream %s never answered the SYNs: the host is down or unreachable, a firewall drops them, or its accept queue is full; the kernel retransmits the SYN net.ipv4.tcp_syn_retries times (about 127 s with the default 6) before connect() fails with ETIMEDOUT.", first.upstream), proof...)
		d.next("Give connect() a timeout of its own (a non-blocking connect with poll, or the client library's connect timeout) rather than the kernel's two minutes.")
	case ctxt == ctxConnecting || ctxt == ctxSSLHandshaking:
		d.cause(fmt.Sprintf("Upstream %s did not complete the connection within %s: its host is down or unreachable, a firewall drops the SYNs, or its accept queue is full (see syn-unanswered for the SYNs).", first.upstream, within), proof...)
		d.cause(fmt.Sprintf("%s is too short for the path to the upstream.", timer), proof...)
	case ctxt == ctxSendingRequest || timer == "proxy_send_timeout":
		d.cause(fmt.Sprintf("Upstream %s stopped taking data: nginx could not write to it within %s, so its application stopped reading its socket (a stuck worker, a full receive buffer).", first.upstream, within), proof...)
	case ctxt == ctxUpgraded:
		d.cause(fmt.Sprintf("The upgraded connection sat idle: nginx re-arms %s on every event in either direction and closes a proxied WebSocket when nothing came for that long; the application sends no ping more often than that.", within), proof...)
		d.cause("proxy_read_timeout is meant for requests, and was left at a value shorter than the WebSocket's quiet periods.", proof...)
	case ctxt == ctxReadingUpstream:
		d.cause(fmt.Sprintf("Upstream %s stopped in the middle of its response for longer than %s: the client got a truncated body after its status line.", first.upstream, within), proof...)
	default:
		text := fmt.Sprintf("Upstream %s took the request and sent no response header within %s: a slow query, a blocked or saturated worker, a slow dependency or a deadlock in the upstream", first.upstream, within)
		late := lateAnswer(d, first)
		if late >= 0 {
			text += "; it answered just after nginx gave up, so it was slow rather than dead"
		}
		d.cause(text+".", append(proof, late)...)
		d.cause(fmt.Sprintf("%s is shorter than this endpoint legitimately needs: raise it for this location only, or make the work asynchronous.", within), proof...)
	}
	if timer != kernelConnectTimer {
		setting := timer
		if wait != "" {
			setting += fmt.Sprintf(" (the measured wait, %s, is its value)", wait)
		}
		d.next(
			fmt.Sprintf("nginx's configuration for this location: %s, and proxy_next_upstream (timeout retries the next server, which doubles the wait).", setting),
			fmt.Sprintf("The upstream's own logs and metrics at these times: request duration, worker pool saturation, slow queries; $upstream_response_time and $upstream_connect_time in the access log separate a slow connect from a slow answer for %s.", first.upstream),
		)
	}
	if ctxt == ctxUpgraded && timer == "proxy_read_timeout" {
		d.next(fmt.Sprintf("Send WebSocket pings (or application heartbeats) more often than %s, or raise proxy_read_timeout (and proxy_send_timeout) in the WebSocket location.", within))
	}
	return d
}

// lateAnswer cites data the upstream sent after nginx had given up on it,
// and returns its index (-1 when none came).
func lateAnswer(d *draft, f *upstreamFailure) int {
	a := f.attempt
	if a == nil {
		return -1
	}
	m := closedBy(a, flows.Client)
	last := a.FromServer.LastData
	if m == nil || last == nil || !last.Time.After(m.Time) {
		return -1
	}
	return d.cite(*last, "data from upstream %s %s after nginx gave up: too late", a.Server, seconds(last.Time.Sub(m.Time)))
}
