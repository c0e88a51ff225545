package rules

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"wiremortem/correlate"
	"wiremortem/decoders/sockstat"
	"wiremortem/flows"
)

func init() {
	Register(Rule{
		ID:           "close-wait",
		Title:        "Connections left in CLOSE_WAIT",
		Severity:     High,
		SeverityNote: "medium, high when one endpoint left pileup or more connections in CLOSE_WAIT",
		Doc: `One side sent FIN, the other side's kernel acknowledged it, and that side sent no FIN of its own for longer than min_age, or never before the capture ended: its socket sat in CLOSE_WAIT (RFC 9293 section 3.6) because its application did not call close() after read() returned 0. ` +
			`Conversations are grouped by the leaking endpoint: the server's address and port, or, when the client is the one in CLOSE_WAIT, the client host and the service it talks to; the summary gives the count and the ages. ` +
			`A common story: the peers close idle connections after their idle timeout and the application, which keeps them without watching them, never notices; or an error in the close path (an onClose handler that fails) leaks the socket. ` +
			`The logs prove a leak the capture is too short to show: a trace of the waiting side's process where read() returned 0 and no close() followed for min_age (to a late close, or to the trace's last call), or ss snapshots that still show the socket in CLOSE_WAIT min_age after the FIN. Then the connection counts whatever its age in the capture, and the incident cites those lines and the most CLOSE_WAIT sockets ss counted on the endpoint at once. ` +
			`Traps: a deliberate half-close (the client shuts down its sending side and the server keeps sending its answer) is not a leak, so the age counts from the last data the waiting side sent; a FIN never acknowledged (one-direction captures) does not count; a CLOSE_WAIT that ends within min_age is a normal close; a trace that stops right after the read() that returned 0 proves nothing.`,
		Params: []Param{
			DurationParam("min_age", time.Second, "how long a side may take to send its own FIN after acknowledging its peer's"),
			CountParam("pileup", 10, "connections of one endpoint left in CLOSE_WAIT that make it high severity"),
		},
		Detect: detectCloseWait,
	})
}

// closeWait is one conversation whose waiting side sat in CLOSE_WAIT.
type closeWait struct {
	c      *flows.Conversation
	hc     *flows.HalfClose
	waiter flows.Side
	age    time.Duration
	open   bool
	// idle is how long the conversation was silent before the peer's FIN.
	idle time.Duration
	// trace is the waiting side's traced socket when it read the EOF:
	// held is how long it stayed open after that, to its close or to the
	// trace's last call.
	trace *correlate.StraceSocket
	held  time.Duration
	// seen is the last ss line showing the socket in CLOSE_WAIT min_age
	// or more after the FIN.
	seen *correlate.SnapshotSocket
}

func detectCloseWait(ctx *Context) []Incident {
	minAge := ctx.Params.Duration("min_age")
	in := ctx.In
	stuck, traceEnd := closeWaitLines(in), traceEnds(in)
	groups := map[string][]closeWait{}
	for _, c := range in.Conversations {
		cw, ok := inCloseWait(c, in.endFor(c))
		if !ok {
			continue
		}
		cw.provenByLogs(in, stuck, traceEnd, minAge)
		if cw.age < minAge {
			continue
		}
		groups[leakKey(cw)] = append(groups[leakKey(cw)], cw)
	}
	var out []Incident
	for _, key := range sortedKeys(groups) {
		out = append(out, closeWaitIncident(in, groups[key], ctx.Params.Count("pileup"), minAge).done())
	}
	return out
}

// socketPair is a socket's local and peer address, unmapped.
type socketPair [2]netip.AddrPort

func pairOf(local, peer netip.AddrPort) socketPair {
	return socketPair{netip.AddrPortFrom(local.Addr().Unmap(), local.Port()), netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())}
}

// closeWaitLines indexes the ss and netstat lines that show a socket in
// CLOSE_WAIT by its addresses.
func closeWaitLines(in *Input) map[socketPair][]*correlate.SnapshotSocket {
	out := map[socketPair][]*correlate.SnapshotSocket{}
	if in.Logs == nil {
		return out
	}
	for _, s := range in.Logs.Sockets {
		if s.Socket.State == sockstat.StateCloseWait {
			k := pairOf(s.Socket.Local, s.Socket.Peer)
			out[k] = append(out[k], s)
		}
	}
	return out
}

// provenByLogs looks for log lines that show the waiting side's socket
// still open min_age after the peer's FIN, and lengthens the age to what
// they show: a trace where read() returned 0 and close() did not follow,
// an ss snapshot with the socket still in CLOSE_WAIT.
func (cw *closeWait) provenByLogs(in *Input, stuck map[socketPair][]*correlate.SnapshotSocket, traceEnd map[string]time.Time, minAge time.Duration) {
	if in.Logs == nil {
		return
	}
	if s := sideSocket(in, cw.c, cw.waiter); s != nil && s.Life.EOF != nil {
		l := s.Life
		var held time.Duration
		switch {
		case l.Closed != nil:
			held = l.Closed.Time.Sub(l.EOF.Time)
		case l.NeverClosed:
			held = traceEnd[s.Source].Sub(l.EOF.Time)
		}
		cw.trace, cw.held = s, held
		if held >= minAge {
			cw.age = max(cw.age, held)
		}
	}
	fin := cw.hc.Since.Time
	for _, s := range stuck[pairOf(cw.c.Endpoint(cw.waiter), cw.c.Endpoint(cw.waiter.Other()))] {
		at := in.logStamp(s.Socket.Ref, s.Snapshot.Time, s.Snapshot.TimeHasZone).Time
		if s.Conversation != 0 && s.Conversation != cw.c.ID {
			continue // a later connection on the same addresses
		}
		if age := at.Sub(fin); !at.IsZero() && age >= minAge && (cw.seen == nil || at.After(cw.seen.Snapshot.Time)) {
			cw.seen = s
			cw.age = max(cw.age, age)
		}
	}
}

// inCloseWait measures the CLOSE_WAIT of a conversation, if it had one.
func inCloseWait(c *flows.Conversation, captureEnd time.Time) (closeWait, bool) {
	hc := c.Closing.HalfClose
	if hc == nil || hc.Acked == nil {
		return closeWait{}, false
	}
	cw := closeWait{c: c, hc: hc, waiter: hc.By.Other()}
	since := hc.Since.Time
	// A side still sending after its peer's FIN is answering a
	// half-close, not leaking: count from its last data.
	if d := c.From(cw.waiter).LastData; d != nil && d.Time.After(since) {
		since = d.Time
	}
	end := c.End
	switch {
	case hc.PeerFIN != nil:
		end = hc.PeerFIN.Time
	case hc.PeerRST != nil:
		end = hc.PeerRST.Time
	case c.EndReason == "capture-end" || c.EndReason == "idle":
		cw.open = true
		end = later(end, captureEnd)
	default:
		cw.open = true
	}
	cw.age = end.Sub(since)
	last, _, _ := lastActivity(c, hc.Since.Time)
	cw.idle = hc.Since.Time.Sub(last.Time)
	return cw, true
}

// leakKey names the leaking process: a server by its listening address, a
// client by its host and the service it talks to.
func leakKey(cw closeWait) string {
	if cw.waiter == flows.Server {
		return "server " + cw.c.Server.String()
	}
	return "client " + cw.c.Client.Addr().String() + " " + cw.c.Server.String()
}

func closeWaitIncident(in *Input, group []closeWait, pileup int64, minAge time.Duration) *draft {
	sort.Slice(group, func(i, j int) bool { return group[i].c.ID < group[j].c.ID })
	sev := Medium
	if int64(len(group)) >= pileup {
		sev = High
	}
	d := newDraft(sev, "high")
	var ages, idles []time.Duration
	open, closedLate, reset := 0, 0, 0
	var proof, traced []int
	var unread int64
	for _, cw := range group {
		d.flow(cw.c)
		ages = append(ages, cw.age)
		idles = append(idles, cw.idle)
		peer := cw.waiter.Other()
		proof = append(proof,
			d.cite(cw.hc.Since, "FIN from %s: it closed its side", who(cw.c, peer)),
			d.cite(*cw.hc.Acked, "%s acknowledged the FIN", capitalize(who(cw.c, cw.waiter))))
		if t := cw.trace; t != nil {
			l := t.Life
			var after string
			switch {
			case l.Closed != nil:
				after = fmt.Sprintf("close(%d) came %s later", l.FD, seconds(cw.held))
			case cw.held > 0:
				after = fmt.Sprintf("no close(%d) followed in the %s the trace went on", l.FD, seconds(cw.held))
			default:
				after = fmt.Sprintf("the trace ends there, without close(%d)", l.FD)
			}
			at := d.cite(in.straceStamp(*l.EOF), "strace: read(%d) returned 0 on the socket from %s (pid %d): the application saw the FIN; %s", l.FD, l.Peer, l.PID, after)
			if l.Closed == nil || cw.held >= minAge {
				traced = append(traced, at)
			}
		}
		if s := cw.seen; s != nil {
			unread += s.Socket.RecvQ
			proof = append(proof, d.cite(in.logStamp(s.Socket.Ref, s.Snapshot.Time, s.Snapshot.TimeHasZone), "%s: %s -> %s still in CLOSE_WAIT %s after the FIN (Recv-Q %d)",
				s.Socket.Tool, s.Socket.Local, s.Socket.Peer, seconds(s.Snapshot.Time.Sub(cw.hc.Since.Time)), s.Socket.RecvQ))
		}
		switch {
		case cw.open:
			open++
		case cw.hc.PeerFIN != nil:
			closedLate++
			d.cite(*cw.hc.PeerFIN, "FIN from %s, %s late", who(cw.c, cw.waiter), seconds(cw.age))
		default:
			reset++
			d.cite(*cw.hc.PeerRST, "RST from %s after %s in CLOSE_WAIT", who(cw.c, cw.waiter), seconds(cw.age))
		}
	}
	sort.Slice(ages, func(i, j int) bool { return ages[i] < ages[j] })
	sort.Slice(idles, func(i, j int) bool { return idles[i] < idles[j] })
	first := group[0]
	leaker := capitalize(who(first.c, first.waiter))
	if first.waiter == flows.Client && len(group) > 1 {
		leaker = fmt.Sprintf("Client host %s (talking to %s)", first.c.Client.Addr(), first.c.Server)
	}
	var fates []string
	for _, f := range []struct {
		n    int
		text string
	}{{open, "still open when the capture ended"}, {closedLate, "closed late"}, {reset, "reset in the end"}} {
		if f.n > 0 {
			fates = append(fates, fmt.Sprintf("%d %s", f.n, f.text))
		}
	}
	fate := strings.Join(fates, ", ")
	if len(group) == 1 {
		how := "no FIN back; still open when the capture ended"
		switch {
		case closedLate == 1:
			how = "its own FIN came only then"
		case reset == 1:
			how = "it reset the connection then instead of closing"
		}
		d.summary("%s stayed in CLOSE_WAIT for %s after %s closed (FIN acknowledged, %s).", leaker, seconds(first.age), who(first.c, first.waiter.Other()), how)
	} else {
		age := fmt.Sprintf("ages %s (median %s)", secondsRange(ages[0], ages[len(ages)-1]), seconds(median(ages)))
		if seconds(ages[0]) == seconds(ages[len(ages)-1]) {
			age = "each for " + seconds(ages[0])
		}
		d.summary("%s left %d connections in CLOSE_WAIT after their peers closed, %s; %s.", leaker, len(group), age, fate)
	}

	waiterName := first.c.Endpoint(first.waiter).String()
	if first.waiter == flows.Client {
		waiterName = first.c.Client.Addr().String()
	}
	leak := fmt.Sprintf("The application at %s did not call close() after read() returned 0 (end of stream): a leak on its close path, such as an error or fatal error in the onClose handler, or a missing finally/defer close()", waiterName)
	if len(traced) > 0 {
		leak += fmt.Sprintf("; the trace shows it on %s: read() returned 0 and no close() followed", plural(len(traced), "socket"))
	}
	count := -1
	if n, snap := closeWaitSockets(in, first.c.Endpoint(first.waiter)); n > 0 {
		count = d.cite(snapshotStamp(in, *snap), "%s sockets in CLOSE_WAIT on %s in one snapshot", Thousands(int64(n)), first.c.Endpoint(first.waiter))
	}
	d.cause(leak+".", append(append(traced, count), proof...)...)
	if unread > 0 {
		d.cause(fmt.Sprintf("The application stopped reading these sockets altogether: ss shows %s still unread in CLOSE_WAIT, so it never even reached the end of stream (a stuck or dead worker that owns them).", bytesText(unread)), proof...)
	}
	if idle := median(idles); idle >= 5*time.Second {
		text := fmt.Sprintf("The peers closed idle connections: the connections were silent for %s (median) before the peer's FIN", seconds(idle))
		if name := timeoutName(idle); name != "" {
			text += ", which matches " + name
		}
		d.cause(text+"; the application keeps idle connections without watching them for EOF, so it never noticed.", proof...)
	}
	switch late := closedLate + reset; {
	case late == 1 && len(group) == 1:
		d.cause(fmt.Sprintf("The application closes, but late (after %s): its workers are busy or blocked before they reach close().", seconds(first.age)), proof...)
	case late > 0:
		d.cause(fmt.Sprintf("The application closes, but late: %d of these connections were closed after up to %s, so its workers are busy or blocked before they reach close().", late, seconds(ages[len(ages)-1])), proof...)
	}
	port := portOf(first.c.Endpoint(first.waiter))
	filter := fmt.Sprintf("'( sport = :%s )'", port)
	if first.waiter == flows.Client {
		filter = fmt.Sprintf("'( dport = :%s )'", portOf(first.c.Server))
	}
	d.next(
		fmt.Sprintf("On %s: ss -tan state close-wait %s | wc -l, and ss -tanp state close-wait %s to find the owning process; a count that only grows is a leak.", first.c.Endpoint(first.waiter).Addr(), filter, filter),
		"lsof -nP -p PID | grep CLOSE_WAIT, and ls /proc/PID/fd | wc -l: leaked sockets also leak file descriptors until the process hits its limit.",
		"Review the close path: the onClose/error handlers, and that every exit path closes the socket (finally, defer, try-with-resources).",
		"strace -f -e trace=close,shutdown -p PID while a peer closes: does close() ever come for that fd?",
	)
	return d
}
