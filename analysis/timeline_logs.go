package analysis

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"wiremortem/correlate"
	"wiremortem/decoders/http"
	"wiremortem/decoders/nginx"
	"wiremortem/decoders/sockstat"
	"wiremortem/decoders/strace"
	"wiremortem/evidence"
	"wiremortem/flows"
	"wiremortem/rules"
)

// What the decoders and the logs add to the timeline: upgrades answered or
// not, frames sent without one, close frames and protocol violations from
// the decoded conversations; nginx errors and the access lines
// that matter, the traced calls of joined sockets and the ss snapshots
// from the logs. A log whose clock could not be put on the capture's is
// left off: its marks would sit hours away from the packets.

// decodedEvents are the 101s, the upgrades that failed, the WebSocket
// frames sent without an upgrade, the Close frames and the protocol
// violations.
func decodedEvents(convs []*flows.Conversation, decoded map[int]*http.Conversation, add func(TimelineEvent)) {
	for _, c := range convs {
		h := decoded[c.ID]
		if h == nil {
			continue
		}
		lane := c.Server.String()
		event := func(kind EventKind, at evidence.Stamp, what string) {
			add(TimelineEvent{Item: evidence.Item{Ref: at.Ref, Time: at.Time, What: what}, Kind: kind, Lane: lane, Conversation: c.ID})
		}
		for _, u := range h.Upgrades {
			switch {
			case u.Response != nil && u.Response.Status == 101:
				event(EventUpgrade101, u.Response.Start, fmt.Sprintf("101 Switching Protocols to %s (%s)", c.Client, u.Verdict))
				if u.Verdict == http.VerdictBadAccept {
					event(EventUpgradeFailed, u.Response.Start, fmt.Sprintf("101 to %s with a wrong Sec-WebSocket-Accept", c.Client))
				}
			case u.Response != nil:
				event(EventUpgradeFailed, u.Response.Start, fmt.Sprintf("%d %s to the %s upgrade from %s", u.Response.Status, Safe(rules.CapText(u.Response.Reason, 60)), Safe(rules.CapText(u.Protocol, 40)), c.Client))
			case u.Request != nil:
				event(EventUpgradeFailed, u.Request.Start, fmt.Sprintf("%s upgrade from %s: no response in %s", Safe(rules.CapText(u.Protocol, 40)), c.Client, FormatDuration(u.Waited)))
			}
			for _, f := range u.FramesWithoutUpgrade {
				event(EventWSFrameWithoutUpgrade, f.Stamp, fmt.Sprintf("%s sent a WebSocket %s frame (%s) although no 101 came", c.Client, f.Opcode, f.Hex))
			}
		}
		if h.WebSocket != nil {
			for _, cl := range h.WebSocket.Closes {
				event(EventWSClose, cl.Stamp, fmt.Sprintf("WebSocket Close %d from the %s", cl.Code, cl.From))
			}
			for _, v := range h.WebSocket.Violations {
				if !v.Time.IsZero() {
					event(EventWSViolation, v.Stamp, fmt.Sprintf("WebSocket protocol violation from the %s: %s", v.From, v.Kind))
				}
			}
		}
	}
}

// logEvents are the log records worth a mark.
func logEvents(j *correlate.Joined, add func(TimelineEvent)) {
	if j == nil {
		return
	}
	event := func(kind EventKind, source string, ref evidence.Ref, at timeOf, conv int, what string) {
		if at.t.IsZero() || !j.ClockKnown(source, at.zone) {
			return
		}
		add(TimelineEvent{Item: evidence.Item{Ref: ref, Time: at.t.UTC(), What: what}, Kind: kind, Lane: source, Conversation: conv})
	}
	for _, e := range j.Errors {
		r := e.Record
		if !errorWorthAMark(r) {
			continue
		}
		event(EventLogError, e.Source, r.Ref, timeOf{r.Time, r.TimeHasZone}, e.Conversation, "nginx "+string(r.Level)+": "+Safe(rules.CapText(r.Message, 160)))
	}
	for _, a := range j.Access {
		r := a.Record
		kind := EventLogRequest
		switch {
		case r.Status >= 500:
			kind = EventLogError
		case r.Status == 101 || r.Status >= 400:
		default:
			continue
		}
		event(kind, a.Source, r.Ref, timeOf{r.Time, r.TimeHasZone}, a.Conversation, fmt.Sprintf("nginx access: %d for %s", r.Status, Safe(rules.CapText(r.Request, 120))))
	}
	for _, s := range j.Straces {
		if s.Conversation == 0 && s.Life.Kind != "listener" {
			continue
		}
		straceEvents(s, func(kind EventKind, m strace.Mark, what string) {
			event(kind, s.Source, m.Ref, timeOf{m.Time, false}, s.Conversation, what)
		})
	}
	for _, s := range j.Snapshots {
		if what := snapshotText(s.Snapshot); what != "" {
			event(EventSnapshot, s.Source, s.Snapshot.Ref, timeOf{s.Snapshot.Time, s.Snapshot.TimeHasZone}, 0, what)
		}
	}
}

type timeOf struct {
	t    time.Time
	zone bool
}

// errorWorthAMark keeps nginx's warnings and worse, and the info lines
// that carry an errno (nginx logs a client's reset or timeout at info).
func errorWorthAMark(r *nginx.ErrorRecord) bool {
	switch r.Level {
	case nginx.LevelWarn, nginx.LevelError, nginx.LevelCrit, nginx.LevelAlert, nginx.LevelEmerg:
		return true
	case nginx.LevelInfo:
		return r.Errno != 0
	}
	return false
}

// straceEvents calls mark for the calls that tell a socket's story.
func straceEvents(s *correlate.StraceSocket, mark func(EventKind, strace.Mark, string)) {
	l := s.Life
	fd := fmt.Sprintf("fd %d (pid %d)", l.FD, l.PID)
	switch l.Kind {
	case "listener":
		if l.Backlog > 0 {
			mark(EventStrace, l.Opened, fmt.Sprintf("listen(%s, backlog %d) on %s", fd, l.Backlog, l.Local))
		}
		return
	case "accepted":
		mark(EventStrace, l.Opened, fmt.Sprintf("accept: %s for %s", fd, l.Peer))
	}
	if l.Connect != nil {
		kind := EventStrace
		if l.ConnectResult != "" && l.ConnectResult != "ok" && l.ConnectResult != "EINPROGRESS" {
			kind = EventLogError
		}
		mark(kind, *l.Connect, fmt.Sprintf("connect(%s) to %s: %s", fd, l.Peer, l.ConnectResult))
	}
	if l.FirstRead != nil {
		mark(EventStrace, *l.FirstRead, fmt.Sprintf("first read on %s", fd))
	}
	if l.FirstWrite != nil {
		mark(EventStrace, *l.FirstWrite, fmt.Sprintf("first write on %s", fd))
	}
	if l.EOF != nil {
		mark(EventStrace, *l.EOF, fmt.Sprintf("read on %s returned 0: the peer closed", fd))
	}
	if l.Error != nil {
		mark(EventLogError, *l.Error, fmt.Sprintf("a call on %s failed: %s", fd, l.ErrorErrno))
	}
	if l.Closed != nil {
		mark(EventStrace, *l.Closed, fmt.Sprintf("close(%d)", l.FD))
	}
}

// snapshotText counts a snapshot's sockets by state: "ss: 5 CLOSE_WAIT, 2
// ESTABLISHED, 1 LISTEN". A counters-only snapshot (nstat) gets no mark.
func snapshotText(s *sockstat.Snapshot) string {
	if len(s.Sockets) == 0 {
		return ""
	}
	counts := map[string]int{}
	for _, sock := range s.Sockets {
		counts[sock.State.String()]++
	}
	states := make([]string, 0, len(counts))
	for st := range counts {
		states = append(states, st)
	}
	sort.Slice(states, func(i, j int) bool {
		if counts[states[i]] != counts[states[j]] {
			return counts[states[i]] > counts[states[j]]
		}
		return states[i] < states[j]
	})
	parts := make([]string, len(states))
	for i, st := range states {
		parts[i] = fmt.Sprintf("%d %s", counts[st], st)
	}
	return "sockets: " + strings.Join(parts, ", ")
}
