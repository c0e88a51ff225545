package rules

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"wiremortem/correlate"
	"wiremortem/decoders/strace"
	"wiremortem/flows"
)

func init() {
	Register(Rule{
		ID:       "server-read-no-write",
		Title:    "A traced server read a request and never answered",
		Severity: Medium,
		Doc: `From the server's strace: on a connection it accepted, the process read bytes (a request) and wrote none before the connection ended or the trace did, at least min_wait after the read. ` +
			`Connections are grouped by the listening address and traced file; the summary gives how many of the accepted connections that sent something got no answer, what the first bytes read were, and how each ended: the peer gave up (read returned 0), the server closed it without a word, or it was still open when the trace stopped. ` +
			`This is the application-side proof behind an unanswered request: the kernel delivered the bytes and the process took them, so the listen backlog, the network and the client are not the cause; its handler failed or hung. It works on a trace alone, without a capture. ` +
			`Traps: a server that reads a request and answers on another descriptor (a response written by a thread or process whose trace is missing, or through sendfile or io_uring, which this trace does not show) looks the same, so check that the trace followed every thread (strace -f) and the write calls; protocols where the server only listens (log shippers, uploads) read without answering by design.`,
		Params: []Param{
			DurationParam("min_wait", time.Second, "how long after its first read the connection must have stayed unanswered"),
		},
		Detect: detectReadNoWrite,
	})
}

// silent is one accepted socket that read and never wrote.
type silent struct {
	s *correlate.StraceSocket
	// waited runs from the first read to the end of the wait: EOF, close
	// or the trace's last call.
	waited time.Duration
	ending string // "eof", "closed", "error", "open"
}

func detectReadNoWrite(ctx *Context) []Incident {
	if ctx.In.Logs == nil {
		return nil
	}
	minWait := ctx.Params.Duration("min_wait")
	traceEnd := lastCalls(ctx.In.Logs.Straces)
	type group struct {
		silent []silent
		served int
	}
	groups := map[string]*group{}
	for _, s := range ctx.In.Logs.Straces {
		l := s.Life
		if l.Kind != "accepted" || l.BytesRead == 0 {
			continue
		}
		key := s.Source + " " + l.Local.String()
		g := groups[key]
		if g == nil {
			g = &group{}
			groups[key] = g
		}
		if l.Writes > 0 || l.BytesWritten > 0 {
			g.served++
			continue
		}
		// A silence shorter than min_wait is not judged either way.
		if sl, ok := waitedSilently(s, traceEnd[s.Source]); ok && sl.waited >= minWait {
			g.silent = append(g.silent, sl)
		}
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	byID := map[int]*flows.Conversation{}
	for _, c := range ctx.In.Conversations {
		byID[c.ID] = c
	}
	var out []Incident
	for _, k := range keys {
		if g := groups[k]; len(g.silent) > 0 {
			out = append(out, readNoWriteIncident(ctx.In, g.silent, g.served, byID).done())
		}
	}
	return out
}

// lastCalls returns, per traced file, the time of its last call seen on a
// socket: where a socket still open stops being watched.
func lastCalls(socks []*correlate.StraceSocket) map[string]time.Time {
	out := map[string]time.Time{}
	for _, s := range socks {
		for _, e := range s.Life.Events {
			if e.Time.After(out[s.Source]) {
				out[s.Source] = e.Time
			}
		}
	}
	return out
}

// waitedSilently measures how long a socket that read and never wrote
// stayed unanswered, and how that ended.
func waitedSilently(s *correlate.StraceSocket, traceEnd time.Time) (silent, bool) {
	l := s.Life
	if l.FirstRead == nil {
		return silent{}, false
	}
	sl := silent{s: s}
	end := traceEnd
	switch {
	case l.EOF != nil && (l.Closed == nil || !l.Closed.Time.Before(l.EOF.Time)):
		sl.ending, end = "eof", l.EOF.Time
	case l.Error != nil && (l.Closed == nil || !l.Closed.Time.Before(l.Error.Time)):
		sl.ending, end = "error", l.Error.Time
	case l.Closed != nil:
		sl.ending, end = "closed", l.Closed.Time
	default:
		sl.ending = "open"
	}
	sl.waited = end.Sub(l.FirstRead.Time)
	return sl, true
}

func readNoWriteIncident(in *Input, group []silent, served int, byID map[int]*flows.Conversation) *draft {
	d := newDraft(Medium, "high")
	var reads, ends []int
	endings := map[string]int{}
	var waits []time.Duration
	for _, sl := range group {
		l := sl.s.Life
		if c := byID[sl.s.Conversation]; c != nil {
			d.flow(c)
		} else {
			d.Flows = append(d.Flows, Flow{Client: l.Peer.String(), Server: l.Local.String()})
			span(&d.Start, &d.End, l.Opened.Time)
		}
		waits = append(waits, sl.waited)
		endings[sl.ending]++
		reads = append(reads, d.citeStraceLife(in, sl.s)...)
		switch sl.ending {
		case "eof":
			ends = append(ends, d.cite(in.straceStamp(*l.EOF), "strace: read on fd %d returned 0 %s after the first read: the peer gave up first", l.FD, seconds(sl.waited)))
		case "error":
			ends = append(ends, d.cite(in.straceStamp(*l.Error), "strace: a call on fd %d failed with %s %s after the first read", l.FD, l.ErrorErrno, seconds(sl.waited)))
		case "closed":
			ends = append(ends, d.cite(in.straceStamp(*l.Closed), "strace: the server closed fd %d %s after reading, without having written", l.FD, seconds(sl.waited)))
		}
	}
	sort.Slice(waits, func(i, j int) bool { return waits[i] < waits[j] })
	first := group[0].s.Life
	server := first.Local.String()
	if !first.Local.IsValid() {
		server = fmt.Sprintf("pid %d", first.PID)
	}
	data := firstData(first)
	if len(group) == 1 {
		d.summary("The traced server %s (pid %d) read %s from %s on fd %d (%s line %d)%s and wrote nothing in %s; %s.", server, first.PID, bytesText(first.BytesRead), first.Peer, first.FD, group[0].s.Source, first.FirstRead.Line, data, seconds(waits[0]), endingText(group[0].ending))
	} else {
		d.summary("The traced server %s (pid %d) read requests on %d of %d accepted connections and wrote nothing on them in %s%s; %s.", server, first.PID, len(group), len(group)+served, secondsRange(waits[0], waits[len(waits)-1]), data, endingsText(endings))
	}
	d.cause("The application read the request and never produced an answer: its handler failed without answering (an exception swallowed, an early return, a callback that never fired) or hung (blocked on a lock, a backend call or a full worker pool). The kernel delivered the bytes and the process took them, so the network, the listen backlog and the client are not the cause.", reads...)
	if endings["closed"] > 0 {
		d.cause("The server closed connections itself without writing: an error path that closes instead of answering (look for an error logged at the close times).", ends...)
	}
	if served > 0 {
		d.cause(fmt.Sprintf("The fault is intermittent: %d other connections on the same listener were answered. One stuck worker, or a race in handing connections to workers, fits better than an overload.", served), reads...)
	}
	d.next(
		"Find the request's handler in the application log at the times of the reads above; look for an exception or a timeout logged there or not at all.",
		"See where the process stands while a request hangs: strace -f -tt -T -k -p PID (the stack of each call), py-spy/jstack/gdb -p PID for the threads, or the framework's worker status.",
		"Check that the trace followed every thread and the calls that may carry the answer (strace -f, and write, writev, sendto, sendmsg, sendfile): an answer written elsewhere would also look like silence here.",
	)
	return d
}

// firstData quotes the start of the first read, when the trace shows it:
// ` ("GET /ws HTTP/1.1\r\n...")`.
func firstData(l *strace.SocketLife) string {
	for _, e := range l.Events {
		if l.FirstRead != nil && e.Ref == l.FirstRead.Ref && e.Data != "" {
			return " (" + CapText(e.Data, 60) + ")"
		}
	}
	return ""
}

func endingText(ending string) string {
	switch ending {
	case "eof":
		return "the peer gave up and closed first"
	case "error":
		return "the connection failed first"
	case "closed":
		return "then the server closed it"
	}
	return "it was still open when the trace ended"
}

// endingsText writes how a group of silent connections ended: "2 peers
// gave up and closed first; the server closed 1 connection itself".
func endingsText(endings map[string]int) string {
	var parts []string
	if n := endings["eof"]; n > 0 {
		parts = append(parts, plural(n, "peer")+" gave up and closed first")
	}
	if n := endings["closed"]; n > 0 {
		parts = append(parts, "the server closed "+plural(n, "connection")+" itself")
	}
	if n := endings["error"]; n > 0 {
		parts = append(parts, plural(n, "connection")+" failed")
	}
	if n := endings["open"]; n > 0 {
		parts = append(parts, plural(n, "connection")+" still open when the trace ended")
	}
	return strings.Join(parts, "; ")
}
