package rules

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"wiremortem/correlate"
	"wiremortem/flows"
)

func init() {
	Register(Rule{
		ID:           "idle-timeout-teardown",
		Title:        "Connection closed by an idle timeout",
		Severity:     Medium,
		SeverityNote: "low when the last data came from the server (an idle keep-alive connection closed); medium when the client's last bytes were left unanswered or the close was a RST",
		Doc: `A conversation was closed (FIN or RST) after a silence that matches a common timeout: 60 s (nginx proxy_read_timeout, proxy_send_timeout, send_timeout, client_body_timeout; cloud load balancers), 75 s (nginx keepalive_timeout), 30 s, 120 s, 300 s, 900 s, 3600 s, within tolerance. ` +
			`Silence means no new data from either side: TCP keep-alives do not count, and a conversation where one side was retransmitting or probing a zero window was not idle (rst-mid-stream and the zero-window rules tell those). ` +
			`Closes by one endpoint after the same timeout are one incident. When the client's bytes were the last thing said, someone was waiting for an answer and gave up (an upstream read timeout); when the server's were, an idle keep-alive connection was closed, which is routine. ` +
			`When nginx's error log, joined to the conversation, says "upstream timed out (110: Connection timed out) while proxying upgraded connection" and nginx closed it after a silence, the timeout is nginx's proxy_read_timeout whatever its value: nginx re-arms that timer on every event in either direction of a proxied WebSocket (ngx_http_upstream_process_upgraded), so the silence measured before its FIN is the setting. The client's connection and nginx's connection to the upstream, both closed by the same timer, are one incident. ` +
			`Traps: timeouts longer than the tracker's idle flush (5 minutes by default) are only seen when keep-alives kept the conversation alive; a close by the peer of a CLOSE_WAIT socket is told by close-wait; a close that nginx's error log blames on an upstream timeout during a request (no response header, say) is told by upstream-timeout.`,
		Params: []Param{
			DurationsParam("timeouts", []time.Duration{30 * time.Second, 60 * time.Second, 75 * time.Second, 120 * time.Second, 300 * time.Second, 900 * time.Second, 3600 * time.Second}, "the timeouts an idle gap is compared with"),
			RatioParam("tolerance", 0.03, "how far an idle gap may be from a timeout and still match it, as a fraction of the timeout"),
		},
		DefersTo: []string{"close-wait", "zero-window-rst"},
		Detect:   detectIdleTimeout,
	})
}

// idleClose is one conversation closed after a matching silence.
type idleClose struct {
	c       *flows.Conversation
	close   *flows.CloseMark
	timeout time.Duration
	idle    time.Duration
	// lastFrom sent the last data (the client for a connection that never
	// carried any).
	lastFrom flows.Side
	// named is nginx's error line that names the timer, when it closed the
	// connection on proxy_read_timeout; timeout is then the idle gap.
	named *correlate.NginxError
}

func detectIdleTimeout(ctx *Context) []Incident {
	p := ctx.Params
	in := ctx.In
	groups := map[string][]idleClose{}
	for _, c := range in.Conversations {
		if ctx.ExplainedBy(c) != "" || upstreamTimeoutOnRequest(in, c) {
			continue
		}
		ic, ok := closedWhenIdle(c)
		if !ok {
			continue
		}
		var key string
		if e := nginxIdleTimer(in, c, ic); e != nil {
			ic.named, ic.timeout = e, ic.idle
			key = "nginx " + e.Source
		} else if ic.timeout = matchingTimeout(ic.idle, p.Durations("timeouts"), p.Ratio("tolerance")); ic.timeout > 0 {
			key = fmt.Sprintf("%s %012d %v", closerKey(ic), ic.timeout, ic.reset())
		} else {
			continue
		}
		groups[key] = append(groups[key], ic)
	}
	var out []Incident
	for _, key := range sortedKeys(groups) {
		if groups[key][0].named != nil {
			out = append(out, nginxIdleIncident(in, groups[key]).done())
		} else {
			out = append(out, idleCloseIncident(groups[key]).done())
		}
	}
	return out
}

// closedWhenIdle measures the silence before a conversation's first close;
// false when it did not close, or when retransmissions or zero-window
// traffic filled the gap (it was not idle).
func closedWhenIdle(c *flows.Conversation) (idleClose, bool) {
	m := firstClose(c)
	if m == nil {
		return idleClose{}, false
	}
	last, lastFrom, _ := lastActivity(c, m.Time)
	ic := idleClose{c: c, close: m, idle: m.Time.Sub(last.Time), lastFrom: lastFrom}
	for _, s := range []flows.Side{flows.Client, flows.Server} {
		if len(keyPacketsBetween(c, s, last.Time, m.Time, "retransmission", "zero-window", "zero-window-probe")) > 0 {
			return idleClose{}, false
		}
	}
	for _, zw := range c.ZeroWindows {
		if zw.Start.Time.Before(m.Time) && (zw.End == nil || zw.End.Time.After(last.Time)) {
			return idleClose{}, false
		}
	}
	return ic, true
}

// matchingTimeout returns the first timeout the idle gap matches, 0 when
// none.
func matchingTimeout(idle time.Duration, timeouts []time.Duration, tolerance float64) time.Duration {
	for _, t := range timeouts {
		if near(idle, t, tolerance) {
			return t
		}
	}
	return 0
}

// namedTimerSlack is how far nginx's error line may be from its close on
// the wire: the error log writes whole seconds, and its clock is
// estimated from the access log.
const namedTimerSlack = 2 * time.Second

// nginxIdleTimer returns nginx's error line, joined to c, that says
// proxy_read_timeout closed this upgraded connection: nginx is the side
// that closed (the server of the client's conversation, the client of its
// conversation with the upstream), the line was written when it closed,
// and nginx had nothing left to write to the upstream (that would be
// proxy_send_timeout, not silence).
func nginxIdleTimer(in *Input, c *flows.Conversation, ic idleClose) *correlate.NginxError {
	for _, e := range in.logsFor(c.ID).Errors {
		r := e.Record
		if r.Message != nginxUpstreamTimedOut || r.Context != ctxUpgraded || writeBlocked(in.conversation(e.Upstream)) {
			continue
		}
		nginxSide := flows.Server
		if e.Upstream == c.ID {
			nginxSide = flows.Client
		}
		if ic.close.By != nginxSide {
			continue
		}
		if at := in.logStamp(r.Ref, r.Time, r.TimeHasZone).Time; !at.IsZero() && (at.Sub(ic.close.Time) > namedTimerSlack || ic.close.Time.Sub(at) > namedTimerSlack) {
			continue
		}
		return e
	}
	return nil
}

// upstreamTimeoutOnRequest reports whether nginx's error log, joined to c,
// blames an upstream timeout during a request (connecting, sending it,
// waiting for the answer): upstream-timeout tells those.
func upstreamTimeoutOnRequest(in *Input, c *flows.Conversation) bool {
	for _, e := range in.logsFor(c.ID).Errors {
		if timedOutOnUpstream(e.Record) && e.Record.Context != ctxUpgraded {
			return true
		}
	}
	return false
}

// reset reports whether the close was a RST rather than a FIN.
func (ic idleClose) reset() bool { return ic.c.Closing.RSTs[ic.close.By] == ic.close }

// closerKey names who closed: a server by its address, a client by its
// host and the service.
func closerKey(ic idleClose) string {
	if ic.close.By == flows.Server {
		return "server " + ic.c.Server.String()
	}
	return "client " + ic.c.Client.Addr().String() + " " + ic.c.Server.String()
}

func idleCloseIncident(group []idleClose) *draft {
	sort.Slice(group, func(i, j int) bool { return group[i].c.ID < group[j].c.ID })
	first := group[0]
	closer := first.close.By
	reset := first.reset()
	waiting := 0
	var idles []time.Duration
	for _, ic := range group {
		if ic.lastFrom == flows.Client {
			waiting++
		}
		idles = append(idles, ic.idle)
	}
	sort.Slice(idles, func(i, j int) bool { return idles[i] < idles[j] })
	sev := Low
	if reset || waiting > 0 {
		sev = Medium
	}
	d := newDraft(sev, "medium")
	how := "FIN"
	if reset {
		how = "RST"
	}
	timeout := formatConfigDuration(first.timeout)
	if len(group) == 1 {
		d.summary("%s closed its connection with %s with %s after %s of silence (the last data came from the %s), matching a %s timeout.",
			capitalize(who(first.c, closer)), who(first.c, closer.Other()), how, seconds(first.idle), first.lastFrom, timeout)
	} else {
		name := capitalize(who(first.c, closer))
		if closer == flows.Client {
			name = fmt.Sprintf("Client host %s", first.c.Client.Addr())
		}
		d.summary("%s closed %d connections with %s after %s of silence, matching a %s timeout; in %d of them the client's last bytes were unanswered.",
			name, len(group), how, secondsRange(idles[0], idles[len(idles)-1]), timeout, waiting)
	}
	var proof []int
	for _, ic := range group {
		d.flow(ic.c)
		last, _, _ := lastActivity(ic.c, ic.close.Time)
		proof = append(proof,
			d.cite(last, "last data (from the %s)", ic.lastFrom),
			d.cite(ic.close.Stamp, "%s from %s after %s of silence", how, who(ic.c, closer), seconds(ic.idle)))
	}
	setting := fmt.Sprintf("An idle or read timeout of %s on the %s", timeout, closer)
	if name := timeoutName(first.timeout); name != "" {
		setting += ": " + name
	}
	switch {
	case waiting > 0 && closer == flows.Client:
		d.cause(fmt.Sprintf("%s: the client sent its request and waited %s for an answer that never came, then gave up (an upstream read timeout such as nginx proxy_read_timeout when the client is a proxy).", setting, timeout), proof...)
		d.cause("The server is slow or stuck on these requests (a busy worker, a slow dependency).", proof...)
	case waiting > 0:
		d.cause(fmt.Sprintf("%s: the server waited %s for more from the client (a request it never finished sending, or an idle connection) and closed it (nginx client_header_timeout, client_body_timeout, or an application read timeout).", setting, timeout), proof...)
	default:
		d.cause(setting+": the connection sat idle after the last answer and was closed, as keep-alive connections are (nginx keepalive_timeout, a client pool's idle timeout).", proof...)
	}
	if reset {
		d.cause(fmt.Sprintf("A load balancer, NAT or firewall between them dropped the idle connection after %s and reset it (or the closer aborts idle connections with SO_LINGER 0, as nginx does with reset_timedout_connection on).", timeout), proof...)
	}
	d.next(
		fmt.Sprintf("Find the %s setting on the %s side: nginx (proxy_read_timeout, send_timeout, keepalive_timeout, client_body_timeout), HAProxy (timeout client, timeout server), a load balancer's idle timeout, or the application's own.", timeout, closer),
		fmt.Sprintf("If the connection must outlive %s of silence: send application pings (WebSocket ping frames) or TCP keep-alives more often than that, or raise the timeout on every hop consistently.", timeout),
	)
	if waiting > 0 {
		d.next("If a request was pending: find out why the answer took longer than the timeout (server logs, slow dependencies, stuck workers).")
	}
	return d
}

// nginxIdleIncident tells upgraded connections nginx closed on
// proxy_read_timeout: the clients' and the upstream's, with the error
// lines that name the timer.
func nginxIdleIncident(in *Input, group []idleClose) *draft {
	sort.Slice(group, func(i, j int) bool { return group[i].c.ID < group[j].c.ID })
	d := newDraft(Medium, "high")
	var idles []time.Duration
	var proof []int
	cited := map[*correlate.NginxError]bool{}
	clients, upstreams := 0, 0
	for _, ic := range group {
		d.flow(ic.c)
		idles = append(idles, ic.idle)
		nginxSide := ic.close.By
		if nginxSide == flows.Server {
			clients++
		} else {
			upstreams++
		}
		last, _, _ := lastActivity(ic.c, ic.close.Time)
		proof = append(proof,
			d.cite(last, "last data (from %s)", who(ic.c, ic.lastFrom)),
			d.cite(ic.close.Stamp, "%s from nginx (%s) to %s after %s of silence", closeWord(ic.c, ic.close), ic.c.Endpoint(nginxSide), who(ic.c, nginxSide.Other()), seconds(ic.idle)))
		if !cited[ic.named] {
			cited[ic.named] = true
			proof = append(proof, d.citeError(in, ic.named))
		}
	}
	sort.Slice(idles, func(i, j int) bool { return idles[i] < idles[j] })
	idle := secondsRange(idles[0], idles[len(idles)-1])
	first := group[0]
	if len(group) <= 2 && len(cited) == 1 {
		var parts []string
		for _, ic := range group {
			if ic.close.By == flows.Server {
				parts = append(parts, "the idle WebSocket of client "+ic.c.Client.String())
			} else {
				parts = append(parts, "its own connection to upstream "+ic.c.Server.String())
			}
		}
		d.summary("nginx closed %s after %s of silence: proxy_read_timeout fired (%s).", strings.Join(parts, " and "), idle, errorText(first.named.Record))
	} else {
		d.summary("nginx closed %s after %s of silence (%s to clients, %s to upstreams): proxy_read_timeout fired, as its error log says %s.",
			plural(len(group), "idle upgraded connection"), idle, plural(clients, "connection"), plural(upstreams, "connection"), plural(len(cited), "time"))
	}
	value := seconds(median(idles))
	d.cause(fmt.Sprintf("nginx's proxy_read_timeout is about %s, the silence before its FINs: on a proxied upgraded connection nginx re-arms it on every event in either direction and closes both connections when nothing came for that long (ngx_http_upstream_process_upgraded); its error log names the timer.", value), proof...)
	d.cause(fmt.Sprintf("The application sends no WebSocket ping or heartbeat more often than %s, so a quiet connection looks dead to nginx.", value), proof...)
	d.next(
		fmt.Sprintf("In nginx's WebSocket location, set proxy_read_timeout (and proxy_send_timeout) above the longest quiet period the application allows; the value now is about %s.", value),
		fmt.Sprintf("Or send WebSocket pings (or application heartbeats) from either side more often than %s; a ping from the client counts too, since any event re-arms the timer.", value),
		"Check the other hops for the same kind of idle timeout: a load balancer in front of nginx (often 60 s), and the upstream's own.",
	)
	return d
}
