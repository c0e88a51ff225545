package rules

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"wiremortem/decoders/sockstat"
	"wiremortem/flows"
)

func init() {
	Register(Rule{
		ID:           "syn-unanswered",
		Title:        "Connection attempts got no answer",
		Severity:     High,
		SeverityNote: "low for one unanswered attempt, medium for a few, high for a storm against one listener",
		Doc: `A client sent a SYN (and usually its retransmissions, 1 s, 3 s and 7 s after the first on Linux) and the server sent neither a SYN-ACK nor a RST. ` +
			`Attempts against one listening address that fall close together are one incident, with every affected flow, the SYN retransmission ladder, the peak SYN rate, the attempts answered only after a retransmission, and the SYN-ACKs the server had to repeat. ` +
			`When the same listener answered other SYNs in the same window, the likely cause is a full accept queue: Linux drops a SYN when the queue of accepted-but-not-yet-accept()ed connections, min(listen backlog, net.core.somaxconn), is full (tcp_conn_request), and drops the final ACK of handshakes it did answer, so clients with a connect timeout under the 1 s initial retransmission timeout fail with ETIMEDOUT after one SYN. ` +
			`The logs confirm or refute the overflow: the backlog the server passed to listen() and whether it called accept() at all (strace), the queue's length and limit (ss -lnt shows them as a listener's Recv-Q and Send-Q; a full queue holds one more than its limit), and TcpExtListenOverflows and TcpExtListenDrops rising across nstat or netstat -s snapshots taken around the episode (snapshots without times are put in order by the counters' values, which only grow). ` +
			`When the address never answered anything, it is a host that is down, a firewall that drops, or a wrong address. ` +
			`Traps: a SYN sent just before the capture stopped (capture_end_grace; shortened to twenty times the slowest answer for a listener that answered other SYNs), a capture that holds only one direction of the traffic, and port scans (many listeners, one attempt each).`,
		Params: []Param{
			CountParam("storm_attempts", 5, "unanswered attempts against one listener in one episode that make a storm (severity high)"),
			DurationParam("group_gap", 10*time.Second, "unanswered attempts against one listener closer together than this are one episode, one incident"),
			DurationParam("capture_end_grace", time.Second, "a first SYN sent less than this before the capture ended is not judged: its answer may have come after"),
			DurationParam("rate_window", 100*time.Millisecond, "the window over which the peak SYN rate is counted"),
		},
		Detect: detectSYNUnanswered,
	})
}

func detectSYNUnanswered(ctx *Context) []Incident {
	p := ctx.Params
	grace := p.Duration("capture_end_grace")
	attempts := byServer(ctx.In.Conversations, sentSYN)
	type episode struct {
		server     netip.AddrPort
		unanswered []*flows.Conversation
	}
	var episodes []episode
	for _, server := range sortedEndpoints(attempts) {
		var unanswered []*flows.Conversation
		g := listenerGrace(attempts[server], grace)
		for _, c := range attempts[server] {
			if neverAnswered(c, ctx.In.endFor(c), g) {
				unanswered = append(unanswered, c)
			}
		}
		for _, e := range groupInTime(unanswered, p.Duration("group_gap"), firstSYNTime) {
			episodes = append(episodes, episode{server, e})
		}
	}
	if len(episodes) == 0 {
		return nil
	}
	servers := map[netip.AddrPort]bool{}
	for _, e := range episodes {
		servers[e.server] = true
	}
	listeners := answeringListeners(ctx.In.Conversations, servers)
	var out []Incident
	for _, e := range episodes {
		s := newSYNStorm(e.server, e.unanswered, attempts[e.server], ctx.In.endFor(e.unanswered[0]))
		out = append(out, s.incident(ctx, listeners).done())
	}
	return out
}

func firstSYNTime(c *flows.Conversation) time.Time { return firstSYN(c).Time }

// listenerGrace shortens capture_end_grace for a listener that answered
// other SYNs in the capture: once silence has lasted twenty times the
// slowest answer it gave (and at least 100 ms), no answer is coming. A
// burst of SYNs dropped by a full accept queue just before the capture
// stopped (seed 002's short-connection flood) is judged that way.
func listenerGrace(attempts []*flows.Conversation, grace time.Duration) time.Duration {
	var slowest time.Duration
	answered := false
	for _, c := range attempts {
		if w := synWait(c); c.Handshake.SYNACKCount > 0 {
			answered = true
			slowest = max(slowest, w)
		}
	}
	if !answered {
		return grace
	}
	return min(grace, max(20*slowest, 100*time.Millisecond))
}

// listenerFacts says what the rest of the capture shows about the
// server addresses of unanswered attempts: did one ever answer a SYN on
// its port, and did its host send anything at all.
type listenerFacts struct {
	answeredPorts map[netip.AddrPort]bool
	hostsSpoke    map[netip.Addr]bool
}

// answeringListeners gathers the facts about servers alone: a SYN storm's
// million clients would make maps nothing reads.
func answeringListeners(convs []*flows.Conversation, servers map[netip.AddrPort]bool) listenerFacts {
	hosts := map[netip.Addr]bool{}
	for s := range servers {
		hosts[s.Addr()] = true
	}
	f := listenerFacts{answeredPorts: map[netip.AddrPort]bool{}, hostsSpoke: map[netip.Addr]bool{}}
	for _, c := range convs {
		if c.Handshake.SYNACKCount > 0 && servers[c.Server] {
			f.answeredPorts[c.Server] = true
		}
		if c.FromServer.Packets > 0 && hosts[c.Server.Addr()] {
			f.hostsSpoke[c.Server.Addr()] = true
		}
		if c.FromClient.Packets > 0 && hosts[c.Client.Addr()] {
			f.hostsSpoke[c.Client.Addr()] = true
		}
	}
	return f
}

// synStorm is one episode of unanswered SYNs against one listener, with
// the other attempts the listener got meanwhile.
type synStorm struct {
	server     netip.AddrPort
	start, end time.Time
	// unanswered got nothing; late were answered only after the client
	// retransmitted its SYN; repeatedSYNACK were answered but the server
	// sent its SYN-ACK again on its own timer; prompt were answered at
	// once.
	unanswered, late, repeatedSYNACK, prompt []*flows.Conversation
	// gaveUp sent a single SYN and no retransmission although the capture
	// went on past the first retransmission's due time.
	gaveUp   int
	synTimes []time.Time
}

func newSYNStorm(server netip.AddrPort, unanswered, all []*flows.Conversation, captureEnd time.Time) *synStorm {
	s := &synStorm{server: server, unanswered: unanswered, start: firstSYN(unanswered[0]).Time}
	for _, c := range unanswered {
		s.end = later(s.end, lastSYN(c).Time)
		if c.Handshake.SYNCount == 1 && !firstSYN(c).Time.Add(initialRTO+initialRTO/2).After(captureEnd) {
			s.gaveUp++
		}
	}
	// The listener's other attempts count when they came within one
	// initial RTO of the episode: the ones answered just before it are
	// often those that filled the accept queue.
	for _, c := range all {
		t := firstSYN(c).Time
		if t.Before(s.start.Add(-initialRTO)) || t.After(s.end.Add(initialRTO)) {
			continue
		}
		for _, syn := range c.Handshake.SYNs {
			s.synTimes = append(s.synTimes, syn.Time)
		}
		switch h := &c.Handshake; {
		case h.SYNACKCount == 0:
		case len(timerSYNACKs(c)) > 0:
			s.repeatedSYNACK = append(s.repeatedSYNACK, c)
		case h.SYNRetransmissions > 0:
			s.late = append(s.late, c)
		default:
			s.prompt = append(s.prompt, c)
		}
	}
	return s
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func (s *synStorm) answered() int { return len(s.late) + len(s.repeatedSYNACK) + len(s.prompt) }

func (s *synStorm) attempts() int { return len(s.unanswered) + s.answered() }

func (s *synStorm) incident(ctx *Context, facts listenerFacts) *draft {
	in, p := ctx.In, ctx.Params
	n := len(s.unanswered)
	sev, confidence := Low, "low"
	switch {
	case int64(n) >= p.Count("storm_attempts"):
		sev, confidence = High, "medium"
	case n > 1:
		sev = Medium
	}
	if s.answered() > 0 {
		confidence = "high"
	}
	first := s.unanswered[0]
	d := newDraft(sev, confidence)
	// A storm lists every attempt: room for them at once, not by doubling.
	d.Flows = slices.Grow(d.Flows, len(s.unanswered)+len(s.late)+len(s.repeatedSYNACK))
	d.Evidence = slices.Grow(d.Evidence, len(s.unanswered)+len(first.Handshake.SYNs)+2)
	d.texts = slices.Grow(d.texts, cap(d.Evidence))
	for _, group := range [][]*flows.Conversation{s.unanswered, s.late, s.repeatedSYNACK} {
		for _, c := range group {
			d.flow(c)
		}
	}
	d.Start, d.End = s.start, s.end
	d.Summary = s.sentence(p)

	noAnswer := d.cite(firstSYN(first), "SYN from %s to %s: never answered", first.Client, s.server)
	for i, syn := range first.Handshake.SYNs[1:] {
		d.cite(syn, "SYN retransmission %d from %s, +%s", i+1, first.Client, seconds(syn.Time.Sub(firstSYN(first).Time)))
	}
	rest := s.unanswered[1:]
	cited := keptAtMost(rest, ctx.limits.MaxEvidence, firstSYNTime)
	for _, c := range rest[:cited] {
		// The address by pointer: boxing the value was an allocation per
		// attempt, and the text is written only if the cap keeps it.
		d.cite(firstSYN(c), "SYN from %s: never answered", &c.Client)
	}
	d.EvidenceOmitted += len(rest) - cited
	upProof := -1
	if answered := append(append(append([]*flows.Conversation(nil), s.prompt...), s.late...), s.repeatedSYNACK...); len(answered) > 0 {
		c := earliestSYNACK(answered)
		upProof = d.cite(c.Handshake.SYNACKs[0], "SYN-ACK to %s: the listener answered others meanwhile", c.Client)
	}
	repeat := -1
	if len(s.repeatedSYNACK) > 0 {
		c := s.repeatedSYNACK[0]
		repeat = d.cite(timerSYNACKs(c)[0], "SYN-ACK to %s sent again: the server did not take the client's final ACK", c.Client)
	}
	q := s.acceptQueue(in, d)
	s.causes(d, q, facts, noAnswer, upProof, repeat)
	s.nextSteps(d, q, facts)
	return d
}

func earliestSYNACK(convs []*flows.Conversation) *flows.Conversation {
	best := convs[0]
	for _, c := range convs[1:] {
		if c.Handshake.SYNACKs[0].Time.Before(best.Handshake.SYNACKs[0].Time) {
			best = c
		}
	}
	return best
}

// sentence is the summary: one attempt told on its own, an episode told
// by its numbers.
func (s *synStorm) sentence(p Params) string {
	if len(s.unanswered) == 1 && s.answered() == 0 {
		c := s.unanswered[0]
		h := &c.Handshake
		if h.SYNCount == 1 {
			tail := ""
			if s.gaveUp == 1 {
				tail = fmt.Sprintf("; the client sent no retransmission (due after %s), so it gave up sooner", seconds(initialRTO))
			}
			return fmt.Sprintf("SYN from %s to %s got no answer%s.", c.Client, s.server, tail)
		}
		return fmt.Sprintf("SYN from %s to %s got no answer: %s over %s (retransmitted at %s).",
			c.Client, s.server, plural(h.SYNCount, "SYN"), seconds(lastSYN(c).Time.Sub(firstSYN(c).Time)), s.ladder())
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s left %d of %s from %s unanswered in %s (peak %s per %s",
		s.server, len(s.unanswered), plural(s.attempts(), "connection attempt"), plural(distinctClients(s.all()), "client host"),
		seconds(s.end.Sub(s.start)), plural(peakRate(s.synTimes, p.Duration("rate_window")), "SYN"), seconds(p.Duration("rate_window")))
	if ladder := s.ladder(); ladder != "" {
		fmt.Fprintf(&b, "; SYNs retransmitted at %s", ladder)
	}
	b.WriteString(")")
	var more []string
	if len(s.late) > 0 {
		more = append(more, fmt.Sprintf("%d answered only after a SYN retransmission", len(s.late)))
	}
	if len(s.repeatedSYNACK) > 0 {
		more = append(more, fmt.Sprintf("%d answered but with the SYN-ACK sent again because the final ACK was not taken", len(s.repeatedSYNACK)))
	}
	if s.gaveUp > 0 {
		more = append(more, fmt.Sprintf("%d of the unanswered clients gave up after a single SYN", s.gaveUp))
	}
	if len(more) > 0 {
		b.WriteString("; " + strings.Join(more, ", "))
	}
	b.WriteString(".")
	return b.String()
}

func (s *synStorm) all() []*flows.Conversation {
	return append(append(append(append([]*flows.Conversation(nil), s.unanswered...), s.late...), s.repeatedSYNACK...), s.prompt...)
}

// ladder is the typical time of each SYN retransmission after the first
// SYN ("+1.0 s, +3.0 s, +7.0 s"), the median over the unanswered attempts.
func (s *synStorm) ladder() string {
	var rungs [][]time.Duration
	for _, c := range s.unanswered {
		syns := c.Handshake.SYNs
		for i := 1; i < len(syns); i++ {
			if len(rungs) < i {
				rungs = append(rungs, nil)
			}
			rungs[i-1] = append(rungs[i-1], syns[i].Time.Sub(syns[0].Time))
		}
	}
	parts := make([]string, len(rungs))
	for i, r := range rungs {
		sort.Slice(r, func(a, b int) bool { return r[a] < r[b] })
		parts[i] = "+" + seconds(median(r))
	}
	return strings.Join(parts, ", ")
}

func (s *synStorm) causes(d *draft, q acceptQueue, facts listenerFacts, noAnswer, upProof, repeat int) {
	port := portOf(s.server)
	switch {
	case s.answered() > 0:
		text := fmt.Sprintf("The accept queue of %s was full: it answered %s within a second of these and silently dropped these SYNs. Linux drops a SYN when the listener's accept queue, %s, is full and the application is not calling accept() fast enough (tcp_conn_request)",
			s.server, plural(s.answered(), "other attempt"), q.limitText())
		if len(s.repeatedSYNACK) > 0 {
			text += fmt.Sprintf("; the %d repeated SYN-ACKs are the same queue: the kernel dropped those clients' final ACK and retried its SYN-ACK", len(s.repeatedSYNACK))
		}
		if q.text != "" {
			text += "; " + q.text
		}
		d.cause(text+".", append([]int{noAnswer, upProof, repeat}, q.cited...)...)
		d.cause("The SYN queue itself overflowed (net.ipv4.tcp_max_syn_backlog) under a burst with SYN cookies off.", noAnswer)
	case facts.answeredPorts[s.server]:
		text := fmt.Sprintf("%s answered SYNs at other times in this capture but not during this episode: the server stopped accepting (accept queue full, process paused or overloaded) or a firewall change dropped its traffic for a while", s.server)
		if q.text != "" {
			text += "; " + q.text
		}
		d.cause(text+".", append([]int{noAnswer}, q.cited...)...)
	case facts.hostsSpoke[s.server.Addr()]:
		d.cause(fmt.Sprintf("A firewall drops SYNs to port %s: host %s sent packets in other conversations of this capture but never answered on this port (a DROP rule or security group rather than REJECT).", port, s.server.Addr()), noAnswer)
		d.cause(fmt.Sprintf("Nothing listens on port %s and the host's firewall drops instead of answering with RST.", port), noAnswer)
	default:
		d.cause(fmt.Sprintf("Host %s is down, unreachable or the wrong address: nothing in the capture came from it.", s.server.Addr()), noAnswer)
		d.cause(fmt.Sprintf("A firewall on the path drops SYNs to %s.", s.server), noAnswer)
		d.cause("The capture holds only the client-to-server direction: check that the capture point can see the server's replies.", noAnswer)
	}
	if s.gaveUp > 0 {
		d.cause(fmt.Sprintf("%s sent one SYN and gave up before the kernel's first retransmission (due %s after it, RFC 6298 initial RTO): their connect timeout is shorter than %s, so one dropped SYN fails the connect with ETIMEDOUT (errno 110).",
			plural(s.gaveUp, "client"), seconds(initialRTO), seconds(initialRTO)), noAnswer)
	}
}

// acceptQueue is what the logs say about a listener's accept queue: the
// backlog listen() asked for (strace), the queue's length and limit (ss
// -lnt: Recv-Q and Send-Q of a listener), and the kernel's overflow
// counters (nstat, netstat -s), cited.
type acceptQueue struct {
	backlog       int
	neverAccepted bool
	queued, limit int64
	text          string
	cited         []int
}

// limitText writes the queue's limit with the numbers known:
// "min(listen backlog, net.core.somaxconn)", "min(backlog 1,
// net.core.somaxconn) = 1".
func (q acceptQueue) limitText() string {
	switch {
	case q.backlog > 0 && q.limit > 0:
		return fmt.Sprintf("min(backlog %d, net.core.somaxconn) = %d", q.backlog, q.limit)
	case q.backlog > 0:
		return fmt.Sprintf("min(backlog %d, net.core.somaxconn)", q.backlog)
	case q.limit > 0:
		return fmt.Sprintf("min(listen backlog, net.core.somaxconn) = %d", q.limit)
	}
	return "min(listen backlog, net.core.somaxconn)"
}

// acceptQueue gathers and cites the logs' word on the listener. Linux
// lets the queue hold one more connection than its limit
// (sk_acceptq_is_full compares with >), so ss shows Recv-Q = Send-Q + 1
// on a full queue.
func (s *synStorm) acceptQueue(in *Input, d *draft) acceptQueue {
	var q acceptQueue
	var parts []string
	if l := listenerOf(in, s.server); l != nil {
		life := l.Life
		q.backlog = life.Backlog
		for _, e := range life.Events {
			if e.Call == "listen" {
				q.cited = append(q.cited, d.cite(in.straceStamp(e.Mark), "strace: listen(%d, %d) on %s (pid %d)", life.FD, life.Backlog, life.Local, life.PID))
				parts = append(parts, fmt.Sprintf("the server called listen() with a backlog of %d", life.Backlog))
				break
			}
		}
		if life.Accepts == 0 && life.WouldBlock == 0 {
			q.neverAccepted = true
			parts = append(parts, "the trace shows no accept() on that socket at all")
		}
	}
	if in.Logs != nil {
		for _, ls := range in.Logs.Sockets {
			sock := ls.Socket
			if sock.State != sockstat.StateListen || sock.Local.Port() != s.server.Port() || (sock.Local.Addr().Unmap() != s.server.Addr().Unmap() && !sock.Local.Addr().IsUnspecified()) || sock.Tool != sockstat.ToolSS {
				continue
			}
			q.queued, q.limit = sock.RecvQ, sock.SendQ
			q.cited = append(q.cited, d.cite(in.logStamp(sock.Ref, ls.Snapshot.Time, ls.Snapshot.TimeHasZone), "ss: listener %s with %d connections waiting for accept() (Recv-Q) and a limit of %d (Send-Q)", sock.Local, sock.RecvQ, sock.SendQ))
			what := fmt.Sprintf("ss showed %d connections waiting in a queue whose limit is %d", sock.RecvQ, sock.SendQ)
			if sock.RecvQ > sock.SendQ {
				what += " (full: Linux keeps one more than the limit)"
			}
			parts = append(parts, what)
			break
		}
	}
	var rose, still []string
	var delta int64
	for _, name := range []string{sockstat.CounterListenOverflows, sockstat.CounterListenDrops} {
		rise, ok := counterDelta(in, name)
		if !ok || !s.during(rise) {
			continue
		}
		q.cited = append(q.cited, d.citeCounterRise(in, rise)...)
		if rise.delta() > 0 {
			rose = append(rose, fmt.Sprintf("%s by %s", name, Thousands(rise.delta())))
			delta = max(delta, rise.delta())
		} else {
			still = append(still, name)
		}
	}
	if len(rose) > 0 {
		syns := 0
		for _, c := range s.unanswered {
			syns += len(c.Handshake.SYNs)
		}
		parts = append(parts, fmt.Sprintf("the kernel's counters rose between the snapshots, %s (the capture holds %s left unanswered)", strings.Join(rose, " and "), plural(syns, "SYN")))
	}
	if len(still) > 0 {
		parts = append(parts, fmt.Sprintf("but %s did not rise between the snapshots, which speaks against an overflow", strings.Join(still, " and ")))
	}
	q.text = strings.Join(parts, "; ")
	return q
}

// during reports whether a counter's snapshots may bracket the episode:
// the first taken before it ended and the last after it began, or either
// untimed.
func (s *synStorm) during(r counterRise) bool {
	if r.before.Time.IsZero() || r.after.Time.IsZero() {
		return true
	}
	return !r.before.Time.After(s.end) && !r.after.Time.Before(s.start)
}

func (s *synStorm) nextSteps(d *draft, q acceptQueue, facts listenerFacts) {
	port := portOf(s.server)
	if s.answered() > 0 || facts.answeredPorts[s.server] {
		if q.neverAccepted {
			d.next("The traced server never called accept() on the listener: find why its accept loop is not running (not started yet, blocked, or busy on other work).")
		}
		if q.backlog > 0 {
			d.next(fmt.Sprintf("Raise the backlog the server passes to listen() (%d now) and net.core.somaxconn if it is lower; the new queue takes effect when the server calls listen() again.", q.backlog))
		}
		d.next(
			fmt.Sprintf("On %s: ss -lnt 'sport = :%s' and compare Recv-Q (connections waiting for accept()) with Send-Q (the accept queue limit).", s.server.Addr(), port),
			"nstat -az TcpExtListenOverflows TcpExtListenDrops (netstat -s: \"times the listen queue of a socket overflowed\", \"SYNs to LISTEN sockets dropped\") twice a few seconds apart: rising counters confirm the overflow.",
			"sysctl net.core.somaxconn net.ipv4.tcp_max_syn_backlog, and the backlog the server passes to listen() (strace -f -e trace=listen): the queue is the smaller of the two, fixed when listen() is called, so a new limit needs a restart.",
			"Check how fast the server calls accept(): a single accept loop, or a worker or thread pool that is saturated.",
			"On the clients: reuse connections (pooling, keep-alive) instead of one per request, and use a connect timeout above 1 s so the kernel's SYN retransmission can save a dropped SYN.",
		)
		return
	}
	d.next(
		fmt.Sprintf("On %s: ss -lnt 'sport = :%s': is anything listening?", s.server.Addr(), port),
		fmt.Sprintf("Firewall rules on the path and on the host (iptables -S, nft list ruleset, security groups) for drops on port %s.", port),
		fmt.Sprintf("From a client: ping %s and traceroute -T -p %s %s to see where the SYNs stop.", s.server.Addr(), port, s.server.Addr()),
	)
}
