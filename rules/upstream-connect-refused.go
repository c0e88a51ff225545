package rules

import (
	"fmt"
	"net/netip"
	"time"

	"wiremortem/decoders/nginx"
	"wiremortem/flows"
)

func init() {
	Register(Rule{
		ID:           "upstream-connect-refused",
		Title:        "A proxy's connections to its upstream were refused",
		Severity:     High,
		SeverityNote: "low when nginx retried another upstream server and every client got an answer; medium; high when many_attempts or more connects were refused in one episode",
		Doc: `nginx logged "connect() failed (111: Connection refused) while connecting to upstream", or a traced process's connect() returned -1 ECONNREFUSED: the upstream's host answered the SYN with RST, so nothing accepted the connection. ` +
			`Each refusal is joined to the client's conversation with nginx (and the 502 its access line shows, by the connection number) and, when the capture holds it, to nginx's own SYN and the RST that answered it. Refusals of one upstream address that fall close together are one incident. ` +
			`Usually nothing listens on the upstream's port: the service is down, crashed, restarting, or listens on another address or port than proxy_pass names (bound to 127.0.0.1 while nginx connects to the host's address). When the capture shows the same upstream completing other handshakes meanwhile, a listener exists and resets some connections: an accept queue overflowing with net.ipv4.tcp_abort_on_overflow=1, or a restart. ` +
			`nginx tries the next server of an upstream group after a refusal (proxy_next_upstream error, on by default), so a client may still get an answer; the severity says whether clients saw errors. ` +
			`syn-refused reports the same RST from the wire alone; this rule adds the proxy's view and the client's error.`,
		Params: []Param{
			DurationParam("group_gap", time.Minute, "refused connects to one upstream closer together than this are one episode, one incident"),
			CountParam("many_attempts", 5, "refused connects in one episode that make it high severity"),
		},
		Detect: detectUpstreamRefused,
	})
}

// refusedByUpstream accepts nginx's "connect() failed (111: Connection
// refused) while connecting to upstream" (written "connect() to
// unix:/path failed" for a unix socket).
func refusedByUpstream(r *nginx.ErrorRecord) bool {
	return r.Errno == errnoConnRefused && r.Context == ctxConnecting
}

func detectUpstreamRefused(ctx *Context) []Incident {
	in, p := ctx.In, ctx.Params
	failures := upstreamFailures(in, refusedByUpstream, "ECONNREFUSED", func(c *flows.Conversation) bool { return c.Handshake.RefusedBy != nil })
	accepted := byServer(in.Conversations, func(c *flows.Conversation) bool { return c.Handshake.SYNACKCount > 0 })
	var out []Incident
	for _, episode := range byUpstream(failures, p.Duration("group_gap"), func(f *upstreamFailure) string { return f.upstream }) {
		out = append(out, refusedEpisode(in, p, episode, accepted).done())
	}
	return out
}

func refusedEpisode(in *Input, p Params, episode []*upstreamFailure, accepted map[netip.AddrPort][]*flows.Conversation) *draft {
	first := episode[0]
	statuses := statusCounts(in, episode)
	errored := 0
	for status, n := range statuses {
		if status >= 500 {
			errored += n
		}
	}
	answered := len(episode) - errored - statuses[0]
	sev := Medium
	switch {
	case int64(len(episode)) >= p.Count("many_attempts"):
		sev = High
	case errored == 0 && answered == len(episode):
		sev = Low
	}
	d := newDraft(sev, "medium")
	var refused, logs []int
	var rsts int
	for _, f := range episode {
		f.flows(d)
		logs = append(logs, d.citeLogs(in, f)...)
		if a := f.attempt; a != nil && a.Handshake.RefusedBy != nil {
			rsts++
			if rsts == 1 {
				refused = append(refused,
					d.cite(firstSYN(a), "SYN from %s to upstream %s", a.Client, a.Server),
					d.cite(*a.Handshake.RefusedBy, "RST from %s answering it after %s: connection refused", a.Server, seconds(a.Handshake.RefusedBy.Time.Sub(firstSYN(a).Time))))
			}
		}
	}
	if rsts > 0 && len(logs) > 0 {
		d.Confidence = "high"
	}
	proxy := "nginx"
	if first.err == nil {
		proxy = fmt.Sprintf("Process %d", first.trace.Life.PID)
	}
	outcome := clientOutcome(in, episode)
	if len(episode) == 1 {
		how := " (111: Connection refused)"
		if rsts > 0 {
			how = ": its SYN was answered by RST" + how
		}
		d.summary("%s's connect() to upstream %s was refused%s%s.", proxy, first.upstream, how, outcome)
	} else {
		wire := ""
		if rsts > 0 {
			wire = fmt.Sprintf(" (%s answered by RST in the capture)", plural(rsts, "SYN"))
		}
		d.summary("%s's connects to upstream %s were refused %d times over %s%s%s.", proxy, first.upstream, len(episode), seconds(failureSpan(episode)), wire, outcome)
	}

	proof := append(append([]int(nil), refused...), logs...)
	var busy []*flows.Conversation
	if addr, err := netip.ParseAddrPort(first.upstream); err == nil {
		start, end := first.at, episode[len(episode)-1].at
		for _, c := range accepted[addr] {
			if t := c.Handshake.SYNACKs[0].Time; !t.Before(start.Add(-time.Second)) && !t.After(end.Add(time.Second)) {
				busy = append(busy, c)
			}
		}
	}
	if len(busy) > 0 {
		ok := d.cite(busy[0].Handshake.SYNACKs[0], "SYN-ACK from %s to %s: the upstream accepted other connections meanwhile", busy[0].Server, busy[0].Client)
		d.cause(fmt.Sprintf("A listener on %s exists but refused some connections: it completed %s in the same window, so its accept queue overflowed with net.ipv4.tcp_abort_on_overflow=1 (Linux then answers with RST instead of dropping), or it was restarting.", first.upstream, plural(len(busy), "other handshake")), append(proof, ok)...)
	} else {
		d.cause(fmt.Sprintf("Nothing listened on upstream %s: the service was down, crashed or restarting, or it listens on another address or port than nginx's proxy_pass (or upstream block) names, such as 127.0.0.1 while nginx connects to the host's address.", first.upstream), proof...)
	}
	d.cause("A firewall on the upstream's host rejects these connections with tcp-reset (an iptables REJECT rule); compare the RST's TTL with the upstream's other packets.", refused...)
	host, port := first.upstream, ""
	if addr, err := netip.ParseAddrPort(first.upstream); err == nil {
		host, port = addr.Addr().String(), portOf(addr)
	}
	listening := "ss -ltnp"
	if port != "" {
		listening = fmt.Sprintf("ss -ltnp 'sport = :%s'", port)
	}
	d.next(
		fmt.Sprintf("On %s: %s: is the service listening, and on which address?", host, listening),
		"The upstream service's state and logs at the time of the first refusal: systemctl status, container restarts, OOM kills, deploys.",
	)
	if first.err == nil {
		d.next(fmt.Sprintf("The address and port process %d is configured to connect to, and whether it retries another server.", first.trace.Life.PID))
		return d
	}
	d.next(
		fmt.Sprintf("nginx's configuration: the address and port in proxy_pass or the upstream block for %s.", first.upstream),
		"In the upstream block: several servers with max_fails and fail_timeout, and proxy_next_upstream error (the default), so one refusing server does not fail the clients' requests.",
	)
	return d
}
