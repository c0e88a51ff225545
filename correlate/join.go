package correlate

import (
	"net/netip"
	"slices"
	"sort"
	"time"

	"wiremortem/decoders/http"
	"wiremortem/decoders/nginx"
	"wiremortem/decoders/sockstat"
	"wiremortem/decoders/strace"
	"wiremortem/flows"
)

// Sources are the records to put on the capture's clock and join.
type Sources struct {
	Conversations []*flows.Conversation
	// HTTP is the decoded HTTP of conversations, by ID.
	HTTP      map[int]*http.Conversation
	Straces   []StraceFile
	Access    []AccessFile
	Errors    []ErrorFile
	Snapshots []SnapshotFile
}

// StraceFile is one strace output.
type StraceFile struct {
	Path   string
	Result *strace.Result
	// Offset is a skew the user gave (--offset); Estimate is off when set.
	Offset      time.Duration
	OffsetGiven bool
}

// AccessFile is one nginx access log.
type AccessFile struct {
	Path        string
	Records     []nginx.AccessRecord
	Offset      time.Duration
	OffsetGiven bool
}

// ErrorFile is one nginx error log.
type ErrorFile struct {
	Path        string
	Records     []nginx.ErrorRecord
	Offset      time.Duration
	OffsetGiven bool
}

// SnapshotFile is one file of ss/netstat/nstat snapshots.
type SnapshotFile struct {
	Path        string
	Snapshots   []sockstat.Snapshot
	Offset      time.Duration
	OffsetGiven bool
}

// Join strengths: a key (4-tuple, connection number) is strong; a match on
// address and time alone is weaker and said so.
const (
	KeyFourTuple  = "4-tuple"
	KeyClientPort = "client address and port"
	KeyConnection = "nginx connection number"
	KeyTime       = "client address and time (weaker)"
	KeyUpstream   = "upstream address and time (weaker)"
)

// StraceSocket is a socket of a traced process, joined to its
// conversation when one matches.
type StraceSocket struct {
	Source string
	Life   *strace.SocketLife
	// Conversation is the joined conversation's ID, 0 when none.
	Conversation int
	Key          string
}

// NginxAccess is an access-log line, joined.
type NginxAccess struct {
	Source string
	Record *nginx.AccessRecord
	// Conversation is the client's conversation with nginx;
	// Upstream nginx's conversation with the upstream, 0 when unknown.
	Conversation int
	Upstream     int
	Key          string
}

// NginxError is an error-log line, joined.
type NginxError struct {
	Source string
	Record *nginx.ErrorRecord
	// Access is the access line with the same connection number.
	Access       *NginxAccess
	Conversation int
	Upstream     int
	Key          string
}

// SnapshotSocket is one socket line of an ss/netstat snapshot.
type SnapshotSocket struct {
	Source       string
	Snapshot     *sockstat.Snapshot
	Socket       *sockstat.Socket
	Conversation int
}

// ByConversation is every log record joined to one conversation.
type ByConversation struct {
	Straces []*StraceSocket
	Access  []*NginxAccess
	Errors  []*NginxError
	Sockets []*SnapshotSocket
}

// Joined is the result: every record with its join, and per-source clock
// estimates.
type Joined struct {
	Straces []*StraceSocket
	Access  []*NginxAccess
	Errors  []*NginxError
	Sockets []*SnapshotSocket
	// Snapshots keeps every snapshot (for counters and listeners).
	Snapshots      []SnapshotRef
	ByConversation map[int]*ByConversation
	// Clocks says, per source path, the offset applied and how it was
	// found.
	Clocks map[string]ClockResult
}

// SnapshotRef is a snapshot and its file.
type SnapshotRef struct {
	Source   string
	Snapshot *sockstat.Snapshot
}

// ClockResult is the offset applied to a source.
type ClockResult struct {
	Applied   time.Duration
	Given     bool
	Estimate  *SkewEstimate
	NotEnough string // why no estimate could be made
}

// conversationIndex finds conversations by endpoints. The lists by server
// and by client address can hold every conversation of a capture (all
// of nginx's connections to one upstream, all of a load balancer's to
// nginx), so they are also indexed by time: a log line looks only at the
// conversations near its time, not at all of them.
type conversationIndex struct {
	byTuple  map[[2]netip.AddrPort][]*flows.Conversation
	byClient map[netip.AddrPort][]*flows.Conversation
	byServer map[netip.AddrPort][]*flows.Conversation
	byAddr   map[netip.Addr][]*flows.Conversation

	serverTimes map[netip.AddrPort]*timeIndex
	addrTimes   map[netip.Addr]*timeIndex
}

func unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

func newIndex(convs []*flows.Conversation) *conversationIndex {
	ix := &conversationIndex{
		byTuple:  make(map[[2]netip.AddrPort][]*flows.Conversation, len(convs)),
		byClient: make(map[netip.AddrPort][]*flows.Conversation, len(convs)),
		byServer: map[netip.AddrPort][]*flows.Conversation{},
		byAddr:   map[netip.Addr][]*flows.Conversation{},
	}
	for _, c := range convs {
		cl, sv := unmap(c.Client), unmap(c.Server)
		ix.byTuple[[2]netip.AddrPort{cl, sv}] = append(ix.byTuple[[2]netip.AddrPort{cl, sv}], c)
		ix.byClient[cl] = append(ix.byClient[cl], c)
		ix.byServer[sv] = append(ix.byServer[sv], c)
		ix.byAddr[cl.Addr()] = append(ix.byAddr[cl.Addr()], c)
	}
	ix.serverTimes = make(map[netip.AddrPort]*timeIndex, len(ix.byServer))
	for k, cs := range ix.byServer {
		ix.serverTimes[k] = newTimeIndex(cs)
	}
	ix.addrTimes = make(map[netip.Addr]*timeIndex, len(ix.byAddr))
	for k, cs := range ix.byAddr {
		ix.addrTimes[k] = newTimeIndex(cs)
	}
	return ix
}

// serverNear returns the conversations to server that closest could pick
// for a log event at t, in index order.
func (ix *conversationIndex) serverNear(server netip.AddrPort, t time.Time) []*flows.Conversation {
	return ix.serverTimes[unmap(server)].near(t)
}

// addrNear returns the conversations from a client address that closest
// could pick for a log event at t, in index order.
func (ix *conversationIndex) addrNear(addr netip.Addr, t time.Time) []*flows.Conversation {
	return ix.addrTimes[addr.Unmap()].near(t)
}

// timeIndex orders one list of conversations by start time, in blocks
// that know their latest end, so that the conversations within slack of
// a time are found without looking at the others.
type timeIndex struct {
	list []*flows.Conversation // the list as indexed, for untimed events
	// byStart is list sorted by start (then by position in list); pos
	// gives each one's position in list.
	byStart []*flows.Conversation
	pos     []int
	// blockEnd is the latest end in each block of timeBlock conversations
	// of byStart; a conversation open when its capture ended counts as
	// never ending.
	blockEnd []time.Time
	// startOrdered says list was already in start order (the usual case:
	// conversations are numbered as they start), so byStart is list.
	startOrdered bool
}

const timeBlock = 32

// forever stands for the end of a conversation open at capture end.
var forever = time.Unix(1<<62, 0)

func newTimeIndex(list []*flows.Conversation) *timeIndex {
	ti := &timeIndex{list: list, pos: make([]int, len(list))}
	order := make([]int, len(list))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return list[order[a]].Start.Before(list[order[b]].Start) })
	ti.byStart = make([]*flows.Conversation, len(list))
	ti.startOrdered = true
	for i, o := range order {
		ti.byStart[i], ti.pos[i] = list[o], o
		ti.startOrdered = ti.startOrdered && o == i
	}
	for b := 0; b < len(list); b += timeBlock {
		var latest time.Time
		for _, c := range ti.byStart[b:min(b+timeBlock, len(list))] {
			end := c.End
			if c.EndReason == "capture-end" {
				end = forever
			}
			if end.After(latest) {
				latest = end
			}
		}
		ti.blockEnd = append(ti.blockEnd, latest)
	}
	return ti
}

// near returns, in list order, every conversation closest(list, t) could
// pick or must count: those starting before t+slack that end after
// t-slack or were open at capture end. The others are further than slack
// from t, so closest over near(t) picks what closest over the whole list
// would. With t zero (an untimed event) it is the whole list.
func (ti *timeIndex) near(t time.Time) []*flows.Conversation {
	if ti == nil {
		return nil
	}
	if t.IsZero() {
		return ti.list
	}
	before := t.Add(slack)
	after := t.Add(-slack)
	n := sort.Search(len(ti.byStart), func(i int) bool { return ti.byStart[i].Start.After(before) })
	var blocks []int
	for b := (n - 1) / timeBlock; b >= 0 && n > 0; b-- {
		if !ti.blockEnd[b].Before(after) {
			blocks = append(blocks, b)
		}
	}
	var hits []int
	for k := len(blocks) - 1; k >= 0; k-- {
		b := blocks[k]
		for i := b * timeBlock; i < min((b+1)*timeBlock, n); i++ {
			c := ti.byStart[i]
			if !c.End.Before(after) || c.EndReason == "capture-end" {
				hits = append(hits, i)
			}
		}
	}
	if !ti.startOrdered {
		slices.SortFunc(hits, func(a, b int) int { return ti.pos[a] - ti.pos[b] })
	}
	out := make([]*flows.Conversation, len(hits))
	for k, i := range hits {
		out[k] = ti.byStart[i]
	}
	return out
}

// firstStartingIn returns the conversation that starts first within
// [from, to] (the earliest in list order among equal starts), or nil.
func (ti *timeIndex) firstStartingIn(from, to time.Time) *flows.Conversation {
	if ti == nil {
		return nil
	}
	i := sort.Search(len(ti.byStart), func(i int) bool { return !ti.byStart[i].Start.Before(from) })
	if i == len(ti.byStart) || ti.byStart[i].Start.After(to) {
		return nil
	}
	return ti.byStart[i]
}

// tuple returns the conversations between two endpoints, either way round.
func (ix *conversationIndex) tuple(a, b netip.AddrPort) []*flows.Conversation {
	a, b = unmap(a), unmap(b)
	if cs := ix.byTuple[[2]netip.AddrPort{a, b}]; len(cs) > 0 {
		return cs
	}
	return ix.byTuple[[2]netip.AddrPort{b, a}]
}

// slack is how far outside a conversation's packets a log event may fall
// and still belong to it (log writes lag packets; clocks are estimated).
const slack = 2 * time.Second

// closest picks the candidate whose span contains t, or the one nearest to
// it within slack; nil when none fits. With t zero (an untimed log), only a
// single candidate fits.
func closest(cands []*flows.Conversation, t time.Time) *flows.Conversation {
	if t.IsZero() {
		if len(cands) == 1 {
			return cands[0]
		}
		return nil
	}
	var best *flows.Conversation
	bestDist := time.Duration(1<<63 - 1)
	// A conversation still open when the capture stopped went on for an
	// unknown time: a log line after its last packet fits it (nginx logs
	// a WebSocket's request when it ends, often after the capture). Two
	// such candidates for one late line are ambiguous.
	openAfter := 0
	for _, c := range cands {
		var d time.Duration
		switch {
		case t.Before(c.Start):
			d = c.Start.Sub(t)
		case t.After(c.End) && c.EndReason == "capture-end":
			openAfter++
		case t.After(c.End):
			d = t.Sub(c.End)
		}
		if d <= slack && d < bestDist {
			best, bestDist = c, d
		}
	}
	if bestDist == 0 && openAfter > 1 && t.After(best.End) {
		return nil
	}
	return best
}

// Join puts every log source on the capture's clock and joins its records
// to conversations. Records' times are shifted in place.
func Join(src Sources) *Joined {
	j := &Joined{ByConversation: map[int]*ByConversation{}, Clocks: map[string]ClockResult{}}
	if len(src.Straces)+len(src.Access)+len(src.Errors)+len(src.Snapshots) == 0 {
		// No log to join: the conversation index (four maps and time
		// indexes over every conversation) would be built for nothing.
		return j
	}
	ix := newIndex(src.Conversations)
	by := func(id int) *ByConversation {
		b := j.ByConversation[id]
		if b == nil {
			b = &ByConversation{}
			j.ByConversation[id] = b
		}
		return b
	}

	for _, f := range src.Straces {
		clock := j.settle(f.Path, f.Offset, f.OffsetGiven, straceSamples(ix, f.Result), func(d time.Duration) { shiftStrace(f.Result, d) })
		j.Clocks[f.Path] = clock
		for _, life := range f.Result.Lives {
			s := &StraceSocket{Source: f.Path, Life: life}
			if c := matchLife(ix, life); c != nil {
				s.Conversation, s.Key = c.ID, KeyFourTuple
				by(c.ID).Straces = append(by(c.ID).Straces, s)
			}
			j.Straces = append(j.Straces, s)
		}
	}

	accessByConn := map[uint64]*NginxAccess{}
	for _, f := range src.Access {
		j.Clocks[f.Path] = j.settle(f.Path, f.Offset, f.OffsetGiven, accessSamples(ix, src.HTTP, f.Records), func(d time.Duration) {
			for i := range f.Records {
				if !f.Records[i].Time.IsZero() {
					f.Records[i].Time = f.Records[i].Time.Add(d)
				}
			}
		})
		for i := range f.Records {
			r := &f.Records[i]
			a := &NginxAccess{Source: f.Path, Record: r}
			if c, key := matchAccess(ix, src.HTTP, r); c != nil {
				a.Conversation, a.Key = c.ID, key
				by(c.ID).Access = append(by(c.ID).Access, a)
				a.Upstream = matchUpstream(ix, r, c)
			}
			if r.Connection != 0 {
				accessByConn[r.Connection] = a
			}
			j.Access = append(j.Access, a)
		}
	}

	for _, f := range src.Errors {
		// The error log and the access log come from the same nginx, on
		// the same clock: what pairs them is the connection number, and
		// the access log's offset applies when none is given.
		offset, given := f.Offset, f.OffsetGiven
		clock := ClockResult{Applied: offset, Given: given}
		if !given {
			if d, n := errorLogShift(f.Records, accessByConn, j.Clocks); n > 0 {
				offset = d
				est := &SkewEstimate{Offset: d, Matches: n, Resolution: errorLogResolution(f.Records, accessByConn, j.Clocks)}
				est.Spread = est.Resolution
				clock = ClockResult{Applied: d, Estimate: est}
			} else {
				clock.NotEnough = "no access-log line shares a connection number with it"
			}
		}
		for i := range f.Records {
			f.Records[i].Time = f.Records[i].Time.Add(offset)
		}
		j.Clocks[f.Path] = clock
		for i := range f.Records {
			r := &f.Records[i]
			e := &NginxError{Source: f.Path, Record: r}
			if a := accessByConn[r.Connection]; r.Connection != 0 && a != nil {
				e.Access, e.Key = a, KeyConnection
				e.Conversation, e.Upstream = a.Conversation, a.Upstream
			} else if c := matchErrorByClient(ix, r); c != nil {
				e.Conversation, e.Key = c.ID, KeyTime
			}
			if r.UpstreamAddr.IsValid() && e.Upstream == 0 {
				if c := closest(ix.serverNear(r.UpstreamAddr, r.Time), r.Time); c != nil {
					e.Upstream = c.ID
				}
			}
			if e.Conversation != 0 {
				by(e.Conversation).Errors = append(by(e.Conversation).Errors, e)
			}
			if e.Upstream != 0 && e.Upstream != e.Conversation {
				by(e.Upstream).Errors = append(by(e.Upstream).Errors, e)
			}
			j.Errors = append(j.Errors, e)
		}
	}

	for _, f := range src.Snapshots {
		clock := ClockResult{Applied: f.Offset, Given: f.OffsetGiven}
		if !f.OffsetGiven {
			clock.NotEnough = NoteSnapshotsAsWritten
		}
		j.Clocks[f.Path] = clock
		for si := range f.Snapshots {
			snap := &f.Snapshots[si]
			if !snap.Time.IsZero() {
				snap.Time = snap.Time.Add(f.Offset)
			}
			j.Snapshots = append(j.Snapshots, SnapshotRef{Source: f.Path, Snapshot: snap})
			for k := range snap.Sockets {
				sock := &snap.Sockets[k]
				ss := &SnapshotSocket{Source: f.Path, Snapshot: snap, Socket: sock}
				if sock.Peer.Port() != 0 {
					if c := closest(ix.tuple(sock.Local, sock.Peer), snap.Time); c != nil {
						ss.Conversation = c.ID
						by(c.ID).Sockets = append(by(c.ID).Sockets, ss)
					}
				}
				j.Sockets = append(j.Sockets, ss)
			}
		}
	}
	return j
}

// settle decides a source's offset: the given one, or the estimate from
// its pairings with packets; shift applies it to the records.
func (j *Joined) settle(path string, given time.Duration, isGiven bool, samples []SkewSample, shift func(time.Duration)) ClockResult {
	res := ClockResult{Applied: given, Given: isGiven}
	if !isGiven {
		if est, ok := EstimateSkew(samples); ok {
			res.Estimate = &est
			res.Applied = est.Offset
		} else {
			res.NotEnough = "no record could be paired with a packet"
		}
	}
	if res.Applied != 0 {
		shift(res.Applied)
	}
	return res
}

// matchLife joins a socket to the conversation with its 4-tuple whose
// packets are nearest the socket's opening.
func matchLife(ix *conversationIndex, life *strace.SocketLife) *flows.Conversation {
	if !life.Peer.IsValid() || life.Peer.Port() == 0 {
		return nil
	}
	var cands []*flows.Conversation
	if life.Local.IsValid() && !life.Local.Addr().IsUnspecified() {
		cands = ix.tuple(life.Local, life.Peer)
	} else {
		// Bound to 0.0.0.0 or ::: the peer and the local port decide.
		near := ix.byClient[unmap(life.Peer)]
		if !life.Opened.Time.IsZero() {
			// A connect() to a busy upstream: only its conversations
			// near the call can be the one.
			near = append(near[:len(near):len(near)], ix.serverNear(life.Peer, life.Opened.Time)...)
		} else {
			near = append(near[:len(near):len(near)], ix.byServer[unmap(life.Peer)]...)
		}
		for _, c := range near {
			if c.Server.Port() == life.Local.Port() || c.Client.Port() == life.Local.Port() {
				cands = append(cands, c)
			}
		}
	}
	return closest(cands, life.Opened.Time)
}

// straceSamples pairs sockets with handshakes: accept() returns after the
// handshake's last ACK (a lower bound of the offset), connect() is entered
// before the SYN leaves (an upper bound). Only 4-tuples with a single
// conversation are used, so port reuse cannot pair the wrong one.
func straceSamples(ix *conversationIndex, r *strace.Result) []SkewSample {
	var out []SkewSample
	for _, life := range r.Lives {
		if life.Opened.Time.IsZero() || !life.Peer.IsValid() || !life.Local.IsValid() {
			continue
		}
		cands := ix.tuple(life.Local, life.Peer)
		if len(cands) != 1 {
			continue
		}
		c := cands[0]
		switch {
		case life.Kind == "accepted" && c.Handshake.ACK != nil:
			out = append(out, SkewSample{Capture: c.Handshake.ACK.Time, Log: life.Opened.Time, Bound: LowerBound})
		case life.Connect != nil && !life.Connect.Time.IsZero() && len(c.Handshake.SYNs) > 0:
			out = append(out, SkewSample{Capture: c.Handshake.SYNs[0].Time, Log: life.Connect.Time, Bound: UpperBound})
		}
	}
	return out
}

// shiftStrace moves every time of a trace by d.
func shiftStrace(r *strace.Result, d time.Duration) {
	shift := func(m *strace.Mark) {
		if m != nil && !m.Time.IsZero() {
			m.Time = m.Time.Add(d)
		}
	}
	for _, l := range r.Lives {
		shift(&l.Opened)
		for _, m := range []*strace.Mark{l.Connect, l.FirstRead, l.LastRead, l.FirstWrite, l.LastWrite, l.EOF, l.Error, l.Shutdown, l.Closed} {
			shift(m)
		}
		for i := range l.Events {
			shift(&l.Events[i].Mark)
			if !l.Events[i].End.IsZero() {
				l.Events[i].End = l.Events[i].End.Add(d)
			}
		}
	}
	for i := range r.Signals {
		shift(&r.Signals[i].Mark)
	}
	for i := range r.Exits {
		shift(&r.Exits[i].Mark)
	}
}

// matchAccess joins an access line to the client's conversation with nginx:
// by the client's address and port when the log_format has $remote_port,
// else by address, request line and time.
func matchAccess(ix *conversationIndex, decoded map[int]*http.Conversation, r *nginx.AccessRecord) (*flows.Conversation, string) {
	if !r.RemoteAddr.IsValid() {
		return nil, ""
	}
	if r.RemotePort != 0 {
		cands := ix.byClient[netip.AddrPortFrom(r.RemoteAddr.Unmap(), r.RemotePort)]
		if r.ServerPort != 0 {
			var keep []*flows.Conversation
			for _, c := range cands {
				if c.Server.Port() == r.ServerPort {
					keep = append(keep, c)
				}
			}
			cands = keep
		}
		if c := closest(cands, r.Time); c != nil {
			return c, KeyClientPort
		}
		return nil, ""
	}
	var cands []*flows.Conversation
	for _, c := range ix.addrNear(r.RemoteAddr, r.Time) {
		if r.ServerPort != 0 && c.Server.Port() != r.ServerPort {
			continue
		}
		if hasRequest(decoded[c.ID], r.Method, r.URI) {
			cands = append(cands, c)
		}
	}
	if c := closest(cands, r.Time); c != nil {
		return c, KeyTime
	}
	return nil, ""
}

func hasRequest(h *http.Conversation, method, uri string) bool {
	if h == nil {
		return false
	}
	for _, x := range h.Exchanges {
		if x.Request.Method == method && x.Request.URI == uri {
			return true
		}
	}
	for _, u := range h.Upgrades {
		if u.Request != nil && u.Request.Method == method && u.Request.URI == uri {
			return true
		}
	}
	return false
}

// matchUpstream finds nginx's conversation with the upstream for an access
// line: to the upstream's address, from nginx's host, starting after the
// client's conversation did.
func matchUpstream(ix *conversationIndex, r *nginx.AccessRecord, client *flows.Conversation) int {
	for _, u := range r.Upstreams {
		if !u.AddrPort.IsValid() {
			continue
		}
		if best := ix.serverTimes[unmap(u.AddrPort)].firstStartingIn(client.Start, client.End.Add(slack)); best != nil {
			return best.ID
		}
	}
	return 0
}

// accessSamples pairs access lines with the HTTP exchanges they log:
// nginx writes the line after the response left, so the last byte of the
// response bounds the offset from below.
func accessSamples(ix *conversationIndex, decoded map[int]*http.Conversation, recs []nginx.AccessRecord) []SkewSample {
	var out []SkewSample
	for i := range recs {
		r := &recs[i]
		if r.Time.IsZero() || r.RemotePort == 0 || r.Status == 101 {
			continue
		}
		cands := ix.byClient[netip.AddrPortFrom(r.RemoteAddr.Unmap(), r.RemotePort)]
		if len(cands) != 1 || decoded[cands[0].ID] == nil {
			continue
		}
		for _, x := range decoded[cands[0].ID].Exchanges {
			if x.Request.Method == r.Method && x.Request.URI == r.URI && x.Response != nil && x.Response.Status == r.Status {
				out = append(out, SkewSample{Capture: x.Response.End.Time, Log: r.Time, Bound: LowerBound})
				break
			}
		}
	}
	return out
}

// NoteSnapshotsAsWritten is the clock note of socket snapshots (ss,
// netstat): nothing in them pairs with a packet, and it says what is done
// with their times.
const NoteSnapshotsAsWritten = "snapshots carry no event to pair with a packet; their times are taken as written"

// errorLogResolution is how finely the error log's shift is known: the
// coarser of its own times' resolution and that of the access log it was
// paired with.
func errorLogResolution(errs []nginx.ErrorRecord, access map[uint64]*NginxAccess, clocks map[string]ClockResult) time.Duration {
	var times []time.Time
	var res time.Duration
	for i := range errs {
		times = append(times, errs[i].Time)
		if a := access[errs[i].Connection]; errs[i].Connection != 0 && a != nil {
			if e := clocks[a.Source].Estimate; e != nil {
				res = max(res, e.Resolution)
			}
		}
	}
	return max(res, coarseResolution(times))
}

// errorLogShift estimates how far an error log's clock (local time without
// a zone, read in the assumed zone) is from its access log's (which has
// one): error lines come during the request the access line logs at its
// end, so for a shared connection number the access line is later by at
// most the request's duration. The shift is the median difference
// rounded to the nearest quarter hour (time zones), plus the access log's
// own offset already applied.
func errorLogShift(errs []nginx.ErrorRecord, access map[uint64]*NginxAccess, clocks map[string]ClockResult) (time.Duration, int) {
	var diffs []time.Duration
	var skew time.Duration
	for i := range errs {
		a := access[errs[i].Connection]
		if errs[i].Connection == 0 || a == nil || a.Record.Time.IsZero() {
			continue
		}
		// Back to the access log's own clock: the zone difference is
		// between the two logs as written.
		applied := clocks[a.Source].Applied
		skew = applied
		diffs = append(diffs, a.Record.Time.Add(-applied).Sub(errs[i].Time)-a.Record.RequestTime)
	}
	if len(diffs) == 0 {
		return 0, 0
	}
	sort.Slice(diffs, func(i, j int) bool { return diffs[i] < diffs[j] })
	med := diffs[len(diffs)/2]
	return med.Round(15*time.Minute) + skew, len(diffs)
}

// matchErrorByClient joins an error line without an access line by the
// client address, the request line and the time.
func matchErrorByClient(ix *conversationIndex, r *nginx.ErrorRecord) *flows.Conversation {
	if !r.ClientAddr.IsValid() {
		return nil
	}
	return closest(ix.addrNear(r.ClientAddr, r.Time), r.Time)
}
