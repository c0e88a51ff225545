package rules

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"wiremortem/correlate"
	"wiremortem/decoders/nginx"
	"wiremortem/decoders/sockstat"
	"wiremortem/decoders/strace"
	"wiremortem/evidence"
	"wiremortem/flows"
)

// What rules say about log records: the strace, nginx and ss evidence
// joined to conversations, cited by file and line.

// logStamp is a log record as evidence. Its time is kept only when the
// source's clock is known to match the capture's: given by the user,
// estimated from pairings with packets, or written with its zone. A
// time of day with no zone and nothing to pair it with (the strace -tt of
// a listener that accepted nothing) may be hours off and would stretch an
// incident's span across them; such a record is cited by its line alone.
func (in *Input) logStamp(ref evidence.Ref, t time.Time, hasZone bool) evidence.Stamp {
	if !in.clockKnown(ref.Source, hasZone) {
		t = time.Time{}
	}
	return evidence.Stamp{Time: t, Ref: ref}
}

// clockKnown reports whether a source's times are on the capture's clock
// (see correlate.Joined.ClockKnown).
func (in *Input) clockKnown(source string, hasZone bool) bool {
	return in.Logs.ClockKnown(source, hasZone)
}

// straceStamp is an strace mark as evidence.
func (in *Input) straceStamp(m strace.Mark) evidence.Stamp { return in.logStamp(m.Ref, m.Time, false) }

// conversation returns the conversation with an ID, nil when none (0 is
// no conversation). Conversations are in ID order.
func (in *Input) conversation(id int) *flows.Conversation {
	cs := in.Conversations
	i := sort.Search(len(cs), func(i int) bool { return cs[i].ID >= id })
	if id == 0 || i == len(cs) || cs[i].ID != id {
		return nil
	}
	return cs[i]
}

func sameAddrPort(a, b netip.AddrPort) bool {
	return a.Port() == b.Port() && a.Addr().Unmap() == b.Addr().Unmap()
}

// sideSocket returns the traced socket on one side of c: the one whose
// peer is the other side. Traces joined to c share its 4-tuple, and the
// peer is known even without strace -yy (accept and connect print it).
func sideSocket(in *Input, c *flows.Conversation, side flows.Side) *correlate.StraceSocket {
	for _, s := range in.logsFor(c.ID).Straces {
		if sameAddrPort(s.Life.Peer, c.Endpoint(side.Other())) {
			return s
		}
	}
	return nil
}

// serverSocket returns the traced socket on the server's side of c.
func serverSocket(in *Input, c *flows.Conversation) *correlate.StraceSocket {
	return sideSocket(in, c, flows.Server)
}

// listenerOf returns the traced listening socket of a server address.
func listenerOf(in *Input, server netip.AddrPort) *correlate.StraceSocket {
	if in.Logs == nil {
		return nil
	}
	for _, s := range in.Logs.Straces {
		l := s.Life
		if l.Kind == "listener" && l.Local.Port() == server.Port() && (l.Local.Addr().Unmap() == server.Addr().Unmap() || l.Local.Addr().IsUnspecified()) {
			return s
		}
	}
	return nil
}

// traceEnds returns, per trace file, the last time it shows any socket
// call: the trace ran at least until then.
func traceEnds(in *Input) map[string]time.Time {
	ends := map[string]time.Time{}
	if in.Logs == nil {
		return ends
	}
	for _, s := range in.Logs.Straces {
		l := s.Life
		end := later(ends[s.Source], l.Opened.Time)
		for _, m := range []*strace.Mark{l.LastRead, l.LastWrite, l.EOF, l.Error, l.Shutdown, l.Closed} {
			if m != nil {
				end = later(end, m.Time)
			}
		}
		if n := len(l.Events); n > 0 {
			end = later(end, l.Events[n-1].Time)
		}
		ends[s.Source] = end
	}
	return ends
}

// citeStraceLife cites what a traced process did with a connection:
// accept, first read, first write, EOF, close. It returns the indexes
// cited.
func (d *draft) citeStraceLife(in *Input, s *correlate.StraceSocket) []int {
	l := s.Life
	var out []int
	fd := fmt.Sprintf("fd %d", l.FD)
	for _, e := range l.Events {
		if e.Call == "accept" || e.Call == "accept4" {
			out = append(out, d.cite(in.straceStamp(e.Mark), "strace: accept returned %s for %s (pid %d)", fd, l.Peer, l.PID))
			break
		}
	}
	if l.FirstRead != nil {
		what := fmt.Sprintf("strace: first read on %s (%s in all)", fd, bytesText(l.BytesRead))
		for _, e := range l.Events {
			if e.Bytes > 0 && e.Ref == l.FirstRead.Ref && e.Data != "" {
				what += ": " + e.Data
			}
		}
		out = append(out, d.cite(in.straceStamp(*l.FirstRead), "%s", what))
	}
	if l.FirstWrite != nil {
		out = append(out, d.cite(in.straceStamp(*l.FirstWrite), "strace: first write on %s", fd))
	}
	if l.EOF != nil {
		out = append(out, d.cite(in.straceStamp(*l.EOF), "strace: read on %s returned 0: the peer had closed", fd))
	}
	if l.Closed != nil {
		quiet := ""
		if l.Kind == "accepted" && l.Writes == 0 {
			quiet = fmt.Sprintf("; nothing was ever written on fd %d", l.FD)
		}
		out = append(out, d.cite(in.straceStamp(*l.Closed), "strace: close(%d)%s", l.FD, quiet))
	}
	return out
}

// citeError cites one nginx error line.
func (d *draft) citeError(in *Input, e *correlate.NginxError) int {
	r := e.Record
	return d.cite(in.logStamp(r.Ref, r.Time, r.TimeHasZone), "nginx [%s] *%d: %s", r.Level, r.Connection, errorText(r))
}

// citeAccess cites one nginx access line.
func (d *draft) citeAccess(in *Input, a *nginx.AccessRecord) int {
	what := fmt.Sprintf("nginx access: %q answered %d", a.Request, a.Status)
	if a.RequestTime > 0 {
		what += " after " + seconds(a.RequestTime)
	}
	var ups []string
	for _, u := range a.Upstreams {
		s := u.Addr
		if u.Status != 0 {
			s += fmt.Sprintf(" (%d)", u.Status)
		}
		ups = append(ups, s)
	}
	if len(ups) > 0 {
		what += ", upstream " + strings.Join(ups, ", ")
	}
	return d.cite(in.logStamp(a.Ref, a.Time, a.TimeHasZone), "%s", what)
}

// errorText is an nginx error's gist in our words: "send() failed (104:
// Connection reset by peer) while proxying upgraded connection".
func errorText(r *nginx.ErrorRecord) string {
	var b strings.Builder
	b.WriteString(r.Message)
	if r.Errno != 0 {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "(%d: %s)", r.Errno, r.ErrnoText)
	}
	if r.Context != "" {
		b.WriteString(" while " + r.Context)
	}
	if b.Len() == 0 {
		return "error"
	}
	return b.String()
}

// nginx error lines the rules read: what nginx was doing (the "while"
// context, ngx_http_upstream.c's log actions) and which of its timers
// fired.
const (
	nginxUpstreamTimedOut = "upstream timed out"
	nginxClientTimedOut   = "client timed out"

	ctxConnecting      = "connecting to upstream"
	ctxSSLHandshaking  = "SSL handshaking to upstream"
	ctxSendingRequest  = "sending request to upstream"
	ctxReadingHeader   = "reading response header from upstream"
	ctxReadingUpstream = "reading upstream"
	ctxUpgraded        = "proxying upgraded connection"
	ctxSendingToClient = "sending to client"
)

// errnoConnRefused is Linux's ECONNREFUSED, as nginx prints it.
const errnoConnRefused = 111

// nginxTimer names the nginx setting whose timer fired for a "timed out"
// error line, from the message and its context. For an upgraded
// connection, "upstream timed out" is either proxy_read_timeout (nothing
// came from either side for that long: nginx re-arms the upstream read
// timer on every event, ngx_http_upstream_process_upgraded) or
// proxy_send_timeout (a write to the upstream blocked); writeBlocked says
// the capture showed the latter. The module's prefix comes from the
// upstream's scheme: fastcgi://, uwsgi://, scgi://, grpc:// or proxy_ for
// the rest.
func nginxTimer(r *nginx.ErrorRecord, writeBlocked bool) string {
	prefix := upstreamModule(r.Upstream) + "_"
	switch r.Message {
	case nginxUpstreamTimedOut:
		switch r.Context {
		case ctxConnecting, ctxSSLHandshaking:
			return prefix + "connect_timeout"
		case ctxSendingRequest:
			return prefix + "send_timeout"
		case ctxReadingHeader, ctxReadingUpstream:
			return prefix + "read_timeout"
		case ctxUpgraded:
			if writeBlocked {
				return "proxy_send_timeout"
			}
			return "proxy_read_timeout"
		}
	case nginxClientTimedOut:
		switch r.Context {
		case ctxUpgraded, ctxSendingToClient:
			return "send_timeout"
		}
	}
	return ""
}

func upstreamModule(upstream string) string {
	scheme, _, found := strings.Cut(upstream, "://")
	if !found {
		return "proxy"
	}
	switch scheme {
	case "fastcgi", "uwsgi", "scgi", "grpc":
		return scheme
	case "grpcs":
		return "grpc"
	case "suwsgi":
		return "uwsgi"
	}
	return "proxy"
}

// upstreamName is the upstream an nginx error line names: its address when
// it has one, else the URL as logged ("unix:/run/app.sock", a group name).
func upstreamName(r *nginx.ErrorRecord) string {
	if r.UpstreamAddr.IsValid() {
		return r.UpstreamAddr.String()
	}
	if _, rest, found := strings.Cut(r.Upstream, "://"); found {
		return rest
	}
	return r.Upstream
}

// queueSample is the largest queue ss showed for one side of a
// conversation, and where.
type queueSample struct {
	bytes int64
	at    evidence.Stamp
}

// queuesOf returns, per side, the largest receive and send queues ss
// showed for a conversation's sockets.
func queuesOf(in *Input, c *flows.Conversation) (recv, send map[flows.Side]queueSample) {
	recv, send = map[flows.Side]queueSample{}, map[flows.Side]queueSample{}
	for _, s := range in.logsFor(c.ID).Sockets {
		side := flows.Client
		if sameAddrPort(s.Socket.Local, c.Server) {
			side = flows.Server
		}
		at := in.logStamp(s.Socket.Ref, s.Snapshot.Time, s.Snapshot.TimeHasZone)
		if s.Socket.RecvQ > recv[side].bytes {
			recv[side] = queueSample{s.Socket.RecvQ, at}
		}
		if s.Socket.SendQ > send[side].bytes {
			send[side] = queueSample{s.Socket.SendQ, at}
		}
	}
	return recv, send
}

// counterRise is how much a kernel counter rose between the snapshots
// that show it.
type counterRise struct {
	name          string
	before, after sockstat.Counter
	// ordered says how the snapshots were put in order: "by time", or
	// "by value" when some have no time (kernel counters only grow, so the
	// smaller value is the earlier snapshot, barring a reboot).
	ordered string
}

func (r counterRise) delta() int64 { return r.after.Value - r.before.Value }

// counterDelta returns how a kernel counter moved across the snapshots
// that show it, as printed by one tool (the first that shows it: nstat
// and netstat -s read the same counters, and a pair from one tool reads
// better); false when fewer than two do.
func counterDelta(in *Input, name string) (counterRise, bool) {
	if in.Logs == nil {
		return counterRise{}, false
	}
	var seen []sockstat.Counter
	timed := true
	for _, s := range in.Logs.Snapshots {
		if c, has := s.Snapshot.Counter(name); has && (len(seen) == 0 || c.Tool == seen[0].Tool) {
			seen = append(seen, c)
			timed = timed && !c.Time.IsZero()
		}
	}
	if len(seen) < 2 {
		return counterRise{}, false
	}
	rise := counterRise{name: name, ordered: "by time"}
	less := func(a, b sockstat.Counter) bool { return a.Time.Before(b.Time) }
	if !timed {
		rise.ordered = "by value"
		less = func(a, b sockstat.Counter) bool { return a.Value < b.Value }
	}
	sort.SliceStable(seen, func(i, j int) bool { return less(seen[i], seen[j]) })
	rise.before, rise.after = seen[0], seen[len(seen)-1]
	return rise, true
}

// citeCounterRise cites the two counter lines of a rise.
func (d *draft) citeCounterRise(in *Input, r counterRise) []int {
	return []int{
		d.cite(in.logStamp(r.before.Ref, r.before.Time, r.before.TimeHasZone), "%s %s = %s", r.before.Tool, r.name, Thousands(r.before.Value)),
		d.cite(in.logStamp(r.after.Ref, r.after.Time, r.after.TimeHasZone), "%s %s = %s: up %s", r.after.Tool, r.name, Thousands(r.after.Value), Thousands(r.delta())),
	}
}

// closeWaitSockets counts CLOSE_WAIT sockets ss or netstat showed on a
// local address: the most in one snapshot, and that snapshot (a timed one
// when several show as many).
func closeWaitSockets(in *Input, local netip.AddrPort) (int, *correlate.SnapshotRef) {
	if in.Logs == nil {
		return 0, nil
	}
	best, at := 0, (*correlate.SnapshotRef)(nil)
	for i := range in.Logs.Snapshots {
		s := in.Logs.Snapshots[i]
		n := 0
		for _, sock := range s.Snapshot.Sockets {
			if sock.State == sockstat.StateCloseWait && sameAddrPort(sock.Local, local) {
				n++
			}
		}
		if n > best || (n == best && n > 0 && at.Snapshot.Time.IsZero() && !s.Snapshot.Time.IsZero()) {
			best, at = n, &in.Logs.Snapshots[i]
		}
	}
	return best, at
}

func snapshotStamp(in *Input, s correlate.SnapshotRef) evidence.Stamp {
	return in.logStamp(s.Snapshot.Ref, s.Snapshot.Time, s.Snapshot.TimeHasZone)
}
