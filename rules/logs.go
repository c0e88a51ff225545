package rules

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"wiremortem/correlate"
	"wiremortem/decoders/sockstat"
	"wiremortem/decoders/strace"
	"wiremortem/evidence"
	"wiremortem/flows"
)

// What rules say about log records: the strace, nginx and ss evidence
// joined to conversations, cited by file and line.

// markStamp turns an strace mark into the evidence form.
func markStamp(m strace.Mark) evidence.Stamp { return evidence.Stamp{Time: m.Time, Ref: m.Ref} }

// serverSocket returns the traced socket on the server's side of c (an
// accepted socket whose peer is the client), if a trace was joined.
func serverSocket(in *Input, c *flows.Conversation) *correlate.StraceSocket {
	for _, s := range in.logsFor(c.ID).Straces {
		if s.Life.Kind == "accepted" || s.Life.Peer == c.Client {
			return s
		}
	}
	return nil
}

// listenerOf returns the traced listening socket of a server address.
func listenerOf(in *Input, server netip.AddrPort) *correlate.StraceSocket {
	if in.Logs == nil {
		return nil
	}
	for _, s := range in.Logs.Straces {
		l := s.Life
		if l.Kind == "listener" && l.Local.Port() == server.Port() && (l.Local.Addr() == server.Addr() || l.Local.Addr().IsUnspecified()) {
			return s
		}
	}
	return nil
}

// citeStraceRead cites what a traced server did with a connection: read,
// write, EOF, close. It returns the indexes cited.
func (d *draft) citeStraceLife(s *correlate.StraceSocket) []int {
	l := s.Life
	var out []int
	fd := fmt.Sprintf("fd %d", l.FD)
	for _, e := range l.Events {
		if e.Call == "accept" || e.Call == "accept4" {
			out = append(out, d.cite(markStamp(e.Mark), "strace: accept returned %s for %s (pid %d)", fd, l.Peer, l.PID))
			break
		}
	}
	if l.FirstRead != nil {
		what := fmt.Sprintf("strace: the server read %s on %s", bytesText(l.BytesRead), fd)
		for _, e := range l.Events {
			if e.Bytes > 0 && e.Ref == l.FirstRead.Ref && e.Data != "" {
				what += ": " + e.Data
			}
		}
		out = append(out, d.cite(markStamp(*l.FirstRead), "%s", what))
	}
	if l.FirstWrite != nil {
		out = append(out, d.cite(markStamp(*l.FirstWrite), "strace: first write on %s", fd))
	}
	if l.EOF != nil {
		out = append(out, d.cite(markStamp(*l.EOF), "strace: read on %s returned 0: the peer had closed", fd))
	}
	if l.Closed != nil {
		quiet := ""
		if l.Kind == "accepted" && l.Writes == 0 {
			quiet = fmt.Sprintf("; nothing was ever written on fd %d", l.FD)
		}
		out = append(out, d.cite(markStamp(*l.Closed), "strace: close(%d)%s", l.FD, quiet))
	}
	return out
}

// citeErrors cites nginx error lines joined to a conversation.
func (d *draft) citeErrors(errs []*correlate.NginxError) []int {
	var out []int
	for _, e := range errs {
		r := e.Record
		out = append(out, d.cite(evidence.Stamp{Time: r.Time, Ref: r.Ref}, "nginx %s: %s", r.Level, errorText(r.Call, r.Errno, r.ErrnoText, r.Context)))
	}
	return out
}

// errorText is an nginx error's gist in our words: "send() failed (104:
// Connection reset by peer) while proxying upgraded connection".
func errorText(call string, errno int, errnoText, context string) string {
	var b strings.Builder
	if call != "" {
		b.WriteString(call + "() failed")
	}
	if errno != 0 {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "(%d: %s)", errno, errnoText)
	}
	if context != "" {
		b.WriteString(" while " + context)
	}
	if b.Len() == 0 {
		return "error"
	}
	return b.String()
}

// queues returns the largest receive and send queues ss showed for a
// conversation's sockets, with where.
type queueSample struct {
	q   int64
	at  evidence.Stamp
	loc netip.AddrPort
}

func queuesOf(socks []*correlate.SnapshotSocket, c *flows.Conversation) (recv map[flows.Side]queueSample, send map[flows.Side]queueSample) {
	recv, send = map[flows.Side]queueSample{}, map[flows.Side]queueSample{}
	for _, s := range socks {
		side := flows.Client
		if s.Socket.Local.Port() == c.Server.Port() && s.Socket.Local.Addr().Unmap() == c.Server.Addr().Unmap() {
			side = flows.Server
		}
		at := evidence.Stamp{Time: s.Snapshot.Time, Ref: s.Socket.Ref}
		if s.Socket.RecvQ > recv[side].q {
			recv[side] = queueSample{s.Socket.RecvQ, at, s.Socket.Local}
		}
		if s.Socket.SendQ > send[side].q {
			send[side] = queueSample{s.Socket.SendQ, at, s.Socket.Local}
		}
	}
	return recv, send
}

// counterDelta returns how much a kernel counter rose across the
// snapshots, the first and last snapshots that had it, and whether any
// did.
func counterDelta(in *Input, name string) (delta int64, first, last correlate.SnapshotRef, ok bool) {
	if in.Logs == nil {
		return 0, first, last, false
	}
	var seen []correlate.SnapshotRef
	for _, s := range in.Logs.Snapshots {
		if _, has := s.Snapshot.Counter(name); has {
			seen = append(seen, s)
		}
	}
	if len(seen) == 0 {
		return 0, first, last, false
	}
	sort.SliceStable(seen, func(i, j int) bool {
		a, b := seen[i].Snapshot, seen[j].Snapshot
		if !a.Time.Equal(b.Time) && !a.Time.IsZero() && !b.Time.IsZero() {
			return a.Time.Before(b.Time)
		}
		return seen[i].Source < seen[j].Source
	})
	first, last = seen[0], seen[len(seen)-1]
	a, _ := first.Snapshot.Counter(name)
	b, _ := last.Snapshot.Counter(name)
	return b.Value - a.Value, first, last, true
}

func snapshotStamp(s correlate.SnapshotRef) evidence.Stamp {
	return evidence.Stamp{Time: s.Snapshot.Time, Ref: s.Snapshot.Ref}
}

// closeWaitSockets counts CLOSE_WAIT sockets ss showed on a local address
// (the most in one snapshot).
func closeWaitSockets(in *Input, local netip.AddrPort) (int, *correlate.SnapshotRef) {
	if in.Logs == nil {
		return 0, nil
	}
	best, at := 0, (*correlate.SnapshotRef)(nil)
	for i := range in.Logs.Snapshots {
		s := in.Logs.Snapshots[i]
		n := 0
		for _, sock := range s.Snapshot.Sockets {
			if sock.State == sockstat.StateCloseWait && sock.Local.Port() == local.Port() && sock.Local.Addr().Unmap() == local.Addr().Unmap() {
				n++
			}
		}
		if n > best {
			best, at = n, &in.Logs.Snapshots[i]
		}
	}
	return best, at
}

// lateEnough reports whether t is at least d after from.
func lateEnough(from, t time.Time, d time.Duration) bool { return t.Sub(from) >= d }
