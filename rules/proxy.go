package rules

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"wiremortem/correlate"
	"wiremortem/decoders/nginx"
	"wiremortem/decoders/strace"
	"wiremortem/flows"
)

// What the proxy rules share: a proxy's failed attempt to use its
// upstream, told by nginx's error log or by the trace of the process that
// connected, joined to the client's conversation and the proxy's own
// conversation with the upstream.

// upstreamFailure is one failed attempt.
type upstreamFailure struct {
	// upstream names the upstream: its address, or the name nginx logged.
	upstream string
	// err is nginx's error line (nil when only a trace saw the failure);
	// access the access line of the same request, if joined.
	err    *correlate.NginxError
	access *nginx.AccessRecord
	// trace is the traced socket that connected, if any.
	trace *correlate.StraceSocket
	// client is the client's conversation with the proxy; attempt the
	// proxy's conversation with the upstream. Either may be missing from
	// the capture.
	client, attempt *flows.Conversation
	// at is when the attempt began: the proxy's first SYN when captured,
	// else the log's time.
	at time.Time
}

// upstreamFailures gathers the failures nginx logged (the error lines
// nginxFailed accepts) and those a trace shows (connects that ended with
// connectErrno), one per attempt: a traced connect that is also in
// nginx's log joins nginx's line. fits says whether a conversation looks
// like the failed attempt (a refused SYN, say): the correlation joins
// nginx's line to its upstream conversation by address and time when the
// access log does not name it, and of several connections to the same
// upstream in the same second it may pick one that went well.
func upstreamFailures(in *Input, nginxFailed func(*nginx.ErrorRecord) bool, connectErrno string, fits func(*flows.Conversation) bool) []*upstreamFailure {
	if in.Logs == nil {
		return nil
	}
	var out []*upstreamFailure
	byAttempt := map[int]*upstreamFailure{}
	candidates := byServer(in.Conversations, fits)
	for _, cs := range candidates {
		sort.SliceStable(cs, func(i, j int) bool { return cs[i].Start.Before(cs[j].Start) })
	}
	for _, e := range in.Logs.Errors {
		if !nginxFailed(e.Record) {
			continue
		}
		f := &upstreamFailure{upstream: upstreamName(e.Record), err: e, client: in.conversation(e.Conversation), attempt: in.conversation(e.Upstream)}
		if e.Access != nil {
			f.access = e.Access.Record
		}
		f.at = in.logStamp(e.Record.Ref, e.Record.Time, e.Record.TimeHasZone).Time
		if f.attempt == nil || !fits(f.attempt) {
			f.attempt = nearestAttempt(candidates[e.Record.UpstreamAddr], f.at, byAttempt)
		}
		if f.attempt != nil {
			f.at = f.attempt.Start
			byAttempt[f.attempt.ID] = f
		}
		out = append(out, f)
	}
	for _, s := range in.Logs.Straces {
		l := s.Life
		if l.Connect == nil || l.ConnectResult != connectErrno {
			continue
		}
		if f := byAttempt[s.Conversation]; f != nil && s.Conversation != 0 {
			f.trace = s
			continue
		}
		f := &upstreamFailure{upstream: l.Peer.String(), trace: s, attempt: in.conversation(s.Conversation), at: in.straceStamp(*l.Connect).Time}
		if f.attempt != nil {
			f.at = f.attempt.Start
		}
		out = append(out, f)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].at.Before(out[j].at) })
	return out
}

// attemptSlack is how far from a log line's time the attempt it tells of
// may have started: nginx writes whole seconds, and the clock is
// estimated.
const attemptSlack = 2 * time.Second

// nearestAttempt picks, among conversations that look like the failed
// attempt (sorted by start), the one that started nearest t and is not
// another failure's; nil when none is within attemptSlack (or t is
// unknown).
func nearestAttempt(cands []*flows.Conversation, t time.Time, taken map[int]*upstreamFailure) *flows.Conversation {
	if t.IsZero() {
		return nil
	}
	var best *flows.Conversation
	var bestDist time.Duration
	from := sort.Search(len(cands), func(i int) bool { return !cands[i].Start.Before(t.Add(-attemptSlack)) })
	for _, c := range cands[from:] {
		if c.Start.After(t.Add(attemptSlack)) {
			break
		}
		d := c.Start.Sub(t)
		if d < 0 {
			d = -d
		}
		if taken[c.ID] == nil && (best == nil || d < bestDist) {
			best, bestDist = c, d
		}
	}
	return best
}

// byUpstream groups failures by a key (the upstream, and what failed) and
// splits each group into episodes at gaps longer than gap.
func byUpstream(failures []*upstreamFailure, gap time.Duration, key func(*upstreamFailure) string) [][]*upstreamFailure {
	groups := map[string][]*upstreamFailure{}
	for _, f := range failures {
		groups[key(f)] = append(groups[key(f)], f)
	}
	var out [][]*upstreamFailure
	for _, k := range sortedKeys(groups) {
		out = append(out, groupInTime(groups[k], gap, func(f *upstreamFailure) time.Time { return f.at })...)
	}
	return out
}

// explainedBy returns the rule among those ctx defers to that already
// reported one of the failure's conversations, or "".
func (f *upstreamFailure) explainedBy(ctx *Context) string {
	for _, c := range []*flows.Conversation{f.client, f.attempt} {
		if c != nil {
			if id := ctx.ExplainedBy(c); id != "" {
				return id
			}
		}
	}
	return ""
}

// flows lists the failure's conversations; with none captured, the flow
// from the client (as the logs name it) to the upstream.
func (f *upstreamFailure) flows(d *draft) {
	if f.client != nil {
		d.flow(f.client)
	}
	if f.attempt != nil {
		d.flow(f.attempt)
	}
	if f.client == nil && f.attempt == nil {
		d.Flows = append(d.Flows, Flow{Client: f.clientName(), Server: f.upstream})
	}
}

// clientName is who the failure hurt: the client of the proxied request,
// or the traced process.
func (f *upstreamFailure) clientName() string {
	switch {
	case f.client != nil:
		return f.client.Client.String()
	case f.access != nil && f.access.RemotePort != 0:
		return fmt.Sprintf("%s:%d", f.access.RemoteAddr, f.access.RemotePort)
	case f.err != nil && f.err.Record.Client != "":
		return f.err.Record.Client
	case f.trace != nil:
		return fmt.Sprintf("process %d", f.trace.Life.PID)
	}
	return "a client"
}

// status is the status the client got, from the access log or the
// decoded response; 0 when neither says.
func (f *upstreamFailure) status(in *Input) int {
	if f.access != nil && f.access.Status != 0 {
		return f.access.Status
	}
	if f.client != nil {
		if h := in.HTTP[f.client.ID]; h != nil && len(h.Exchanges) > 0 {
			if r := h.Exchanges[len(h.Exchanges)-1].Response; r != nil {
				return r.Status
			}
		}
	}
	return 0
}

// request is the request line the client sent, as the logs have it.
func (f *upstreamFailure) request() string {
	switch {
	case f.access != nil && f.access.Request != "":
		return f.access.Request
	case f.err != nil:
		return f.err.Record.Request
	}
	return ""
}

// citeLogs cites the failure's log lines: nginx's error and access lines,
// the traced connect. It returns the indexes cited.
func (d *draft) citeLogs(in *Input, f *upstreamFailure) []int {
	var out []int
	if f.err != nil {
		out = append(out, d.citeError(in, f.err))
	}
	if f.access != nil {
		out = append(out, d.citeAccess(in, f.access))
	}
	if f.trace != nil {
		l := f.trace.Life
		out = append(out, d.cite(in.straceStamp(*l.Connect), "strace: connect(%d, %s) = -1 %s (pid %d)%s", l.FD, l.Peer, l.ConnectResult, l.PID, connectDuration(l)))
	}
	return out
}

// connectDuration is how long a traced connect() took, as " after 2.0 s",
// when strace timed it (-T or an unfinished call).
func connectDuration(l *strace.SocketLife) string {
	if d, ok := connectWait(l); ok {
		return " after " + seconds(d)
	}
	return ""
}

func connectWait(l *strace.SocketLife) (time.Duration, bool) {
	for _, e := range l.Events {
		if e.Call == "connect" && !e.End.IsZero() && !e.Time.IsZero() {
			return e.End.Sub(e.Time), true
		}
	}
	return 0, false
}

// statusCounts tallies the statuses clients got ("502" -> 3), unknown
// ones under 0.
func statusCounts(in *Input, failures []*upstreamFailure) map[int]int {
	out := map[int]int{}
	for _, f := range failures {
		out[f.status(in)]++
	}
	return out
}

// distinctClientHosts counts the client hosts of failures whose client
// is known.
func distinctClientHosts(failures []*upstreamFailure) int {
	seen := map[string]bool{}
	for _, f := range failures {
		switch {
		case f.client != nil:
			seen[f.client.Client.Addr().String()] = true
		case f.access != nil && f.access.RemoteAddr.IsValid():
			seen[f.access.RemoteAddr.String()] = true
		case f.err != nil && f.err.Record.Client != "":
			seen[f.err.Record.Client] = true
		}
	}
	return len(seen)
}

// failureSpan is the time from the first failure to the last.
func failureSpan(failures []*upstreamFailure) time.Duration {
	return failures[len(failures)-1].at.Sub(failures[0].at)
}

// clientOutcome says what the clients got: "; client 10.0.0.5:4711 got
// 502 for GET /api", "; clients on 2 hosts got 502 for 3 requests", or
// that nginx's retry answered them.
func clientOutcome(in *Input, episode []*upstreamFailure) string {
	statuses := statusCounts(in, episode)
	if len(episode) == 1 {
		f := episode[0]
		status := f.status(in)
		if status == 0 {
			return ""
		}
		what := fmt.Sprintf("; client %s got %d", f.clientName(), status)
		if req := f.request(); req != "" {
			what += " for " + strings.TrimSuffix(strings.TrimSuffix(req, " HTTP/1.1"), " HTTP/1.0")
		}
		if status < 500 {
			what += " after nginx retried another upstream server"
		}
		return what
	}
	var parts []string
	for _, status := range slices.Sorted(maps.Keys(statuses)) {
		if status != 0 {
			parts = append(parts, fmt.Sprintf("%d for %s", status, plural(statuses[status], "request")))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return fmt.Sprintf("; clients on %s got %s", plural(distinctClientHosts(episode), "host"), strings.Join(parts, ", "))
}
