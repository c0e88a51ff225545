package rules

import (
	"fmt"
	"time"

	"wiremortem/flows"
)

func init() {
	Register(Rule{
		ID:           "syn-refused",
		Title:        "Connection attempts refused with RST",
		Severity:     High,
		SeverityNote: "low for one refused attempt, medium for several, high when the same port accepted other connections meanwhile (a listener resetting under overflow)",
		Doc: `A server answered a client's SYN with RST: the client's connect() failed at once with ECONNREFUSED. ` +
			`Attempts against one server address that fall close together are one incident; a client kernel that retries the same connect() after the RST (Windows does, three times) counts as one attempt with several refused SYNs. ` +
			`Usually nothing listens on the port (service down, restarting, wrong port). When the same port completed other handshakes in the same window, a listener exists and resets because its accept queue is full with net.ipv4.tcp_abort_on_overflow=1 (Linux then answers with RST instead of dropping). ` +
			`A firewall REJECT rule with tcp-reset looks the same on the wire: compare the RST's TTL with the server's other packets. ` +
			`Traps: port scans (one refused SYN on each of many ports) are refusals too, and read as such.`,
		Params: []Param{
			DurationParam("group_gap", 10*time.Second, "refused attempts against one server closer together than this are one episode, one incident"),
			CountParam("many_attempts", 5, "refused connection attempts in one episode that make it medium rather than low"),
		},
		Detect: detectSYNRefused,
	})
}

func detectSYNRefused(ctx *Context) []Incident {
	p := ctx.Params
	refused := byServer(ctx.In.Conversations, func(c *flows.Conversation) bool {
		return sentSYN(c) && c.Handshake.RefusedBy != nil && c.Handshake.SYNACKCount == 0
	})
	completed := byServer(ctx.In.Conversations, func(c *flows.Conversation) bool { return c.Handshake.SYNACKCount > 0 })
	var out []Incident
	for _, server := range sortedEndpoints(refused) {
		for _, episode := range groupInTime(refused[server], p.Duration("group_gap"), firstSYNTime) {
			out = append(out, refusal(p, episode, completed[server]).done())
		}
	}
	return out
}

func refusal(p Params, episode, acceptedHere []*flows.Conversation) *draft {
	first := episode[0]
	start, end := firstSYN(first).Time, episode[len(episode)-1].Handshake.RefusedBy.Time
	// A conversation that retries a refused one is the same connect().
	attempts := 0
	for _, c := range episode {
		if c.Handshake.RetryOf == 0 {
			attempts++
		}
	}
	attempts = max(attempts, 1)
	var accepted []*flows.Conversation
	for _, c := range acceptedHere {
		if t := c.Handshake.SYNACKs[0].Time; !t.Before(start) && !t.After(end.Add(time.Second)) {
			accepted = append(accepted, c)
		}
	}
	sev, confidence := Low, "medium"
	if int64(attempts) >= p.Count("many_attempts") {
		sev = Medium
	}
	if len(accepted) > 0 {
		sev, confidence = High, "high"
	}
	d := newDraft(sev, confidence)
	for _, c := range episode {
		d.flow(c)
	}
	server := first.Server
	if len(episode) == 1 {
		d.summary("%s answered the SYN from %s with RST after %s: connection refused.",
			server, first.Client, seconds(first.Handshake.RefusedBy.Time.Sub(firstSYN(first).Time)))
	} else {
		d.summary("%s refused %s from %s with RST over %s (%s).",
			server, plural(len(episode), "SYN"), plural(distinctClients(episode), "client host"), seconds(end.Sub(start)), plural(attempts, "connection attempt"))
	}
	rst := d.cite(*first.Handshake.RefusedBy, "RST from %s answering the SYN from %s", server, first.Client)
	d.cite(firstSYN(first), "SYN from %s", first.Client)
	for _, c := range episode[1:] {
		d.cite(*c.Handshake.RefusedBy, "RST from %s answering %s", server, c.Client)
	}
	port := portOf(server)
	if len(accepted) > 0 {
		ok := d.cite(accepted[0].Handshake.SYNACKs[0], "SYN-ACK to %s: the port accepted other connections meanwhile", accepted[0].Client)
		d.cause(fmt.Sprintf("A listener on %s resets when its accept queue is full: it completed %s in the same window, and with net.ipv4.tcp_abort_on_overflow=1 Linux answers an overflowing connection with RST instead of dropping it.",
			server, plural(len(accepted), "other handshake")), rst, ok)
		d.cause("A firewall or load balancer in front of the server rejects some connections with tcp-reset (rate limit, connection limit).", rst)
		d.next(
			fmt.Sprintf("On %s: sysctl net.ipv4.tcp_abort_on_overflow, and ss -lnt 'sport = :%s' (Recv-Q against Send-Q, the accept queue limit).", server.Addr(), port),
			"nstat -az TcpExtListenOverflows TcpExtListenDrops twice a few seconds apart: rising counters confirm the overflow.",
			"Check how fast the server calls accept() and the backlog it passes to listen() (strace -f -e trace=listen,accept4).",
		)
		return d
	}
	d.cause(fmt.Sprintf("Nothing listens on port %s at %s: the service is down, restarting, bound to another address or port, or the client has the wrong port.", port, server.Addr()), rst)
	d.cause(fmt.Sprintf("A firewall REJECT rule (tcp-reset) for port %s: compare the RST's TTL and IP ID with the server's other packets in Wireshark.", port), rst)
	d.cause("A listener whose accept queue was full with net.ipv4.tcp_abort_on_overflow=1 (Linux then resets instead of dropping).", rst)
	d.next(
		fmt.Sprintf("On %s: ss -lnt 'sport = :%s' to see whether anything listens, and on which address.", server.Addr(), port),
		"Check the service's state and logs around the time of the first RST (systemctl status, container restarts).",
		fmt.Sprintf("Firewall rules that reject port %s (iptables -S | grep -i reject, nft list ruleset).", port),
	)
	return d
}
