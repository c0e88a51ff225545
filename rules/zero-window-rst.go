package rules

import (
	"fmt"
	"strings"
	"time"

	"wiremortem/flows"
)

func init() {
	Register(Rule{
		ID:       "zero-window-rst",
		Title:    "A reader stopped reading, then the connection was reset",
		Severity: High,
		Doc: `One side advertised a zero receive window (its application stopped calling recv(), its receive buffer filled) and the conversation ended in a RST, from either side, while the window was closed or soon after it reopened. ` +
			`The summary says who stopped reading, for how long, how many zero-window probes the sender sent and how many bytes were stuck, and who reset. ` +
			`Linux keeps probing a zero window for as long as the probes are answered (tcp_probe_timer), so a reset by the sender is an application decision: a write timeout such as nginx send_timeout (60 s) with reset_timedout_connection on, or SO_LINGER 0. ` +
			`A reset by the reader means it closed its socket with unread data in its receive queue, which sends RST instead of FIN (RFC 2525 section 2.17). ` +
			`With logs joined, the incident cites nginx's error lines ("client timed out (110: Connection timed out) while proxying upgraded connection" is send_timeout expiring on a client that stopped reading; "(104: Connection reset by peer)" a reader that reset) and the queues ss showed: the reader's unread Recv-Q, the sender's Send-Q, and, behind nginx, the bytes nginx left unread from its upstream as the backpressure spread. ` +
			`Traps: a zero window is normal for a moment under bulk transfer; an episode counts only with a probe or when it lasts min_duration, and a reset long after the window reopened is another story (rst-mid-stream).`,
		Params: []Param{
			CountParam("min_probes", 1, "an episode counts when the sender probed the zero window at least this many times..."),
			DurationParam("min_duration", time.Second, "...or when the window stayed closed at least this long"),
			DurationParam("reset_within", 5*time.Second, "the RST must come while the window was closed or at most this long after it reopened"),
		},
		Detect: detectZeroWindowRST,
	})
}

// stall is a zero-window episode that ended the conversation.
type stall struct {
	c     *flows.Conversation
	ep    *flows.ZeroWindowEpisode
	rst   *flows.CloseMark
	index int
	// held is how long the window stayed closed; during says the RST came
	// while it was still closed.
	held   time.Duration
	during bool
}

func detectZeroWindowRST(ctx *Context) []Incident {
	p := ctx.Params
	var out []Incident
	for _, c := range ctx.In.Conversations {
		if st := resetStall(c, p); st != nil {
			out = append(out, st.incident(ctx.In).done())
		}
	}
	return out
}

// resetStall finds the last qualifying episode the conversation's first
// RST came during or soon after.
func resetStall(c *flows.Conversation, p Params) *stall {
	rst := firstRST(c)
	if rst == nil {
		return nil
	}
	var found *stall
	for i := range c.ZeroWindows {
		ep := &c.ZeroWindows[i]
		if ep.Start.Time.After(rst.Time) {
			break
		}
		st := &stall{c: c, ep: ep, rst: rst, index: i}
		if ep.End == nil || ep.EndedBy == "rst" || !ep.End.Time.Before(rst.Time) {
			st.held, st.during = rst.Time.Sub(ep.Start.Time), true
		} else {
			st.held = ep.Duration
			if rst.Time.Sub(ep.End.Time) > p.Duration("reset_within") {
				continue
			}
		}
		if ep.Probes >= p.Count("min_probes") || st.held >= p.Duration("min_duration") {
			found = st
		}
	}
	return found
}

func (st *stall) incident(in *Input) *draft {
	c, ep, rst := st.c, st.ep, st.rst
	reader, sender := ep.Receiver, ep.Receiver.Other()
	confidence := "high"
	if ep.Probes == 0 {
		confidence = "medium"
	}
	d := newDraft(High, confidence)
	d.flow(c)
	resetBy := "the " + sender.String() + " reset the connection"
	if rst.By == reader {
		resetBy = "it reset the connection itself"
	}
	when := ""
	if !st.during {
		when = fmt.Sprintf(" %s after the window reopened", seconds(rst.Time.Sub(ep.End.Time)))
	}
	d.summary("%s stopped reading: it advertised a zero window to %s for %s (%s), then %s%s.",
		capitalize(who(c, reader)), endpointOf(c, sender), seconds(st.held), stuck(ep), resetBy, when)

	closed := d.cite(ep.Start, "zero window advertised by %s", who(c, reader))
	evidence := []int{closed}
	probes := keyPacketsBetween(c, sender, ep.Start.Time, rst.Time.Add(time.Nanosecond), "zero-window-probe")
	for i, kp := range probes {
		if i == 0 || i == len(probes)-1 {
			evidence = append(evidence, d.cite(kp.Stamp, "zero-window probe %d from the %s, +%s", i+1, sender, seconds(kp.Time.Sub(ep.Start.Time))))
		}
	}
	if !st.during {
		d.cite(*ep.End, "%s reopened its window after %s", who(c, reader), seconds(ep.Duration))
	}
	reset := d.cite(rst.Stamp, "RST from %s%s", who(c, rst.By), unackedText(rst))

	queues := st.citeQueues(in, d)
	stopped := fmt.Sprintf("The %s's application stopped reading: it did not call recv(), its receive buffer filled and the kernel advertised a zero window (RFC 9293 section 3.8.6.1), so the %s could send nothing but probes while its own data piled up in its socket buffer (Send-Q)", reader, sender)
	if queues.text != "" {
		stopped += "; " + queues.text
	}
	d.cause(stopped+".", append(evidence, queues.cited...)...)
	timer, nginxLines := st.nginxTimer(in, d)
	if rst.By == sender {
		if timer != "" {
			d.cause(fmt.Sprintf("nginx's %s expired, as its error log says: it could not write to the %s for %s, which is about the setting's value, and gave up; with reset_timedout_connection on, nginx resets a timed-out connection instead of closing it.", timer, reader, seconds(st.held)), append([]int{closed, reset}, nginxLines...)...)
		} else if name := timeoutName(st.held); name != "" {
			d.cause(fmt.Sprintf("The %s gave up after %s with data stuck, which matches %s; nginx with reset_timedout_connection on resets rather than closes.", sender, seconds(st.held), name), closed, reset)
		} else {
			d.cause(fmt.Sprintf("A write timeout in the %s's application expired and it aborted the connection (SO_LINGER 0, or nginx reset_timedout_connection); the kernel itself keeps probing a zero window as long as the probes are answered.", sender), closed, reset)
		}
	} else {
		d.cause(fmt.Sprintf("The %s closed its socket with unread data in its receive queue, which makes the kernel send RST instead of FIN (RFC 2525 section 2.17): its application timed out, crashed or gave up on the connection.", reader), append([]int{closed, reset}, nginxLines...)...)
	}
	if st.index > 0 {
		d.cause(fmt.Sprintf("The %s had already stopped reading %s earlier on this connection: a consumer that keeps falling behind.", reader, plural(st.index, "time")), closed)
	}
	d.next(
		fmt.Sprintf("On the %s (%s), while it happens: ss -tnm 'dst %s'; a large, growing Recv-Q means its application is not calling recv().", reader, c.Endpoint(reader).Addr(), c.Endpoint(sender)),
		fmt.Sprintf("Take a thread dump or profile of the application at %s: is the thread that reads this socket blocked (slow handler, lock, synchronous work on the I/O thread)? Handle messages on a worker pool.", c.Endpoint(reader)),
		fmt.Sprintf("On the %s (%s): Send-Q in ss -tn, and its write timeouts (nginx send_timeout, proxy_send_timeout, proxy_read_timeout for upgraded connections, reset_timedout_connection).", sender, c.Endpoint(sender).Addr()),
	)
	if len(nginxLines) == 0 {
		d.next("If nginx proxies this connection: its error log around the RST, lines ending 'while proxying upgraded connection' for this client.")
	}
	return d
}

// stallQueues is what ss showed of the stuck bytes, cited.
type stallQueues struct {
	text  string
	cited []int
}

// citeQueues cites the largest queues ss showed on the stalled
// connection: the reader's unread bytes (Recv-Q), the sender's unsent
// ones (Send-Q), and, when nginx was the sender, what it left unread on
// its connection to the upstream, where the backpressure went next.
func (st *stall) citeQueues(in *Input, d *draft) stallQueues {
	c := st.c
	reader, sender := st.ep.Receiver, st.ep.Receiver.Other()
	recv, send := queuesOf(in, c)
	var q stallQueues
	var parts []string
	if r := recv[reader]; r.bytes > 0 {
		q.cited = append(q.cited, d.cite(r.at, "ss: %s had %s unread in its receive queue (Recv-Q)", who(c, reader), bytesText(r.bytes)))
		parts = append(parts, fmt.Sprintf("ss showed %s unread at the %s", bytesText(r.bytes), reader))
	}
	if s := send[sender]; s.bytes > 0 {
		q.cited = append(q.cited, d.cite(s.at, "ss: %s had %s waiting in its send queue (Send-Q)", who(c, sender), bytesText(s.bytes)))
		parts = append(parts, fmt.Sprintf("%s waiting to be sent at the %s", bytesText(s.bytes), sender))
	}
	for _, e := range in.logsFor(c.ID).Errors {
		up := in.conversation(e.Upstream)
		if e.Conversation != c.ID || sender != flows.Server || up == nil {
			continue
		}
		if r, _ := queuesOf(in, up); r[flows.Client].bytes > 0 {
			q.cited = append(q.cited, d.cite(r[flows.Client].at, "ss: nginx's connection to upstream %s had %s unread (Recv-Q): nginx stopped reading from the upstream too", up.Server, bytesText(r[flows.Client].bytes)))
			parts = append(parts, fmt.Sprintf("nginx in turn left %s unread from upstream %s", bytesText(r[flows.Client].bytes), up.Server))
		}
		break
	}
	q.text = strings.Join(parts, ", ")
	return q
}

// nginxTimer cites the nginx error lines joined to the stalled
// connection and returns the write timer they say expired on the sender
// (send_timeout towards a client, proxy_send_timeout towards an
// upstream), "" when none did.
func (st *stall) nginxTimer(in *Input, d *draft) (string, []int) {
	var timer string
	var cited []int
	for _, e := range in.logsFor(st.c.ID).Errors {
		r := e.Record
		nginxSide := flows.Server
		if e.Upstream == st.c.ID {
			nginxSide = flows.Client
		}
		at := in.logStamp(r.Ref, r.Time, r.TimeHasZone).Time
		if !at.IsZero() && (at.Before(st.ep.Start.Time.Add(-namedTimerSlack)) || at.After(st.rst.Time.Add(namedTimerSlack))) {
			continue // another moment of a long connection
		}
		cited = append(cited, d.citeError(in, e))
		writer := nginxSide == st.ep.Receiver.Other()
		switch t := nginxTimer(r, true); {
		case writer && t == "send_timeout" && nginxSide == flows.Server:
			timer = t
		case writer && t == "proxy_send_timeout" && nginxSide == flows.Client:
			timer = t
		}
	}
	return timer, cited
}

// stuck writes an episode's probes and, when the capture shows them, the
// bytes in flight when the window closed: "9 probes, 108,528 bytes
// waiting". A receiver that acknowledged everything before closing its
// window leaves nothing in flight; the data then waits in the sender's
// socket buffer (its Send-Q), which the wire does not show.
func stuck(ep *flows.ZeroWindowEpisode) string {
	s := plural(ep.Probes, "probe")
	if ep.BytesWaiting > 0 {
		s += ", " + bytesText(ep.BytesWaiting) + " waiting"
	}
	return s
}

// unackedText describes the data a RST's sender had in flight, if any.
func unackedText(rst *flows.CloseMark) string {
	if rst.Unacked == 0 {
		return ""
	}
	return ", " + bytesText(rst.Unacked) + " of its own unacknowledged"
}

// capitalize upper-cases the first letter of a sentence.
func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
