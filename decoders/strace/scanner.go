package strace

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"wiremortem/decoders/logline"
	"wiremortem/evidence"
)

// Options says how to read a trace.
type Options struct {
	logline.Options
	// Date is the day of the first time-of-day stamp (strace -t, -tt),
	// in the Clock zone; later stamps that go back in time move to the next
	// day. Without it, time-of-day stamps are kept on 1970-01-01 and
	// TimesKnown in the result says so.
	Date time.Time
	// Base is the time of the first line for relative stamps (strace -r).
	Base time.Time
	// PID is the process of a per-process file (strace -ff writes
	// trace.PID); 0 when lines carry their pid.
	PID int
}

// Result is what a trace says about sockets.
type Result struct {
	// Lives are every socket's life, in order of first appearance.
	Lives []*SocketLife `json:"lives"`
	// TimeFormat is how the trace wrote times: "time-of-day" (-t, -tt),
	// "epoch" (-ttt), "relative" (-r) or "none".
	TimeFormat string `json:"time_format"`
	// TimesKnown is false when times could not be placed on a date
	// (time-of-day stamps without Options.Date, relative stamps without
	// Options.Base, or no stamps).
	TimesKnown bool `json:"times_known"`
	// Calls counts system calls (an unfinished call and its resumption
	// count once); Unfinished counts calls never resumed.
	Calls      int64 `json:"calls"`
	Unfinished int64 `json:"unfinished"`
	// Signals and Exits are the "--- SIG... ---" and "+++ ... +++" lines,
	// capped.
	Signals []Note `json:"signals,omitempty"`
	Exits   []Note `json:"exits,omitempty"`
	// LivesOmitted counts sockets beyond the cap.
	LivesOmitted int64 `json:"lives_omitted,omitempty"`
}

// Note is a signal delivery or a process exit.
type Note struct {
	Mark
	PID  int    `json:"pid"`
	Text string `json:"text"`
}

// Caps.
const (
	maxLives   = 500_000
	maxNotes   = 200
	maxPending = 100_000
)

// Scanner reads strace output and tracks sockets.
type Scanner struct {
	lines   *logline.Reader
	opts    Options
	tally   logline.Tally
	res     Result
	format  timeFormat
	day     time.Time // midnight of the current day, for time-of-day stamps
	lastSec int64
	rel     time.Duration
	pending map[int]pendingCall // unfinished calls by pid
	tables  map[int]*fdTable
	cloneOf map[int]int // thread -> process whose table it shares
	unparse []logline.Unparsed
	err     error
}

type pendingCall struct {
	name  string
	args  string
	start Mark
}

// fdTable maps fds to sockets for one process (threads share one).
type fdTable struct {
	pid int
	fds map[int]*SocketLife
}

// NewScanner returns a scanner of r.
func NewScanner(r io.Reader, opts Options) *Scanner {
	s := &Scanner{
		lines:   logline.NewReader(r, opts.Options),
		opts:    opts,
		pending: map[int]pendingCall{},
		tables:  map[int]*fdTable{},
		cloneOf: map[int]int{},
	}
	if !opts.Date.IsZero() {
		d := opts.Date
		s.day = time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, opts.Location())
	}
	return s
}

// Run reads the whole trace. Lines that are not strace output are counted
// and kept as examples (Unparsed); reading stops only on an I/O error.
func (s *Scanner) Run() (*Result, error) {
	for {
		line, err := s.lines.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			s.err = err
			break
		}
		s.tally.Lines++
		if line.TooLong {
			s.reject(line, logline.ReasonTooLong, fmt.Sprintf("%d bytes", line.Length))
			continue
		}
		if logline.IsBlank(line.Text) {
			s.tally.BlankLines++
			continue
		}
		raw, problem := splitLine(string(line.Text), s.opts.PID)
		if problem != "" {
			s.reject(line, "not strace output", problem)
			continue
		}
		s.tally.ParsedLines++
		s.handle(raw, s.lines.Ref(line))
	}
	s.finish()
	return &s.res, s.err
}

// Tally accounts for every line read.
func (s *Scanner) Tally() logline.Tally { return s.tally }

// Unparsed returns the lines that were not strace output (the first ones,
// capped).
func (s *Scanner) Unparsed() []logline.Unparsed { return s.unparse }

const maxUnparsed = 20

func (s *Scanner) reject(line logline.Line, reason, detail string) {
	s.tally.CountUnparsed(reason)
	if len(s.unparse) < maxUnparsed {
		s.unparse = append(s.unparse, s.lines.Unparsed(line, reason, detail))
	}
}

// when turns a line's stamp into a time on the trace's clock.
func (s *Scanner) when(l rawLine) time.Time {
	if l.tsFormat == timeNone {
		return time.Time{}
	}
	if s.format == timeNone {
		s.format = l.tsFormat
	}
	switch l.tsFormat {
	case timeEpoch:
		return time.Unix(l.seconds, l.nanos).UTC()
	case timeRelative:
		s.rel += time.Duration(l.seconds)*time.Second + time.Duration(l.nanos)
		if s.opts.Base.IsZero() {
			return time.Time{}
		}
		return s.opts.Base.Add(s.rel)
	}
	if s.day.IsZero() {
		s.day = time.Date(1970, 1, 1, 0, 0, 0, 0, s.opts.Location())
	}
	if s.lastSec-l.seconds > 12*3600 {
		// Midnight passed between two lines.
		s.day = s.day.AddDate(0, 0, 1)
	}
	s.lastSec = l.seconds
	return s.day.Add(time.Duration(l.seconds)*time.Second + time.Duration(l.nanos))
}

// handle takes one parsed line.
func (s *Scanner) handle(l rawLine, ref evidence.Ref) {
	at := Mark{Ref: ref, Time: s.when(l)}
	switch l.kind {
	case lineNote:
		return
	case lineSignal:
		if len(s.res.Signals) < maxNotes {
			s.res.Signals = append(s.res.Signals, Note{Mark: at, PID: l.pid, Text: l.rest})
		}
		return
	case lineExit:
		if len(s.res.Exits) < maxNotes {
			s.res.Exits = append(s.res.Exits, Note{Mark: at, PID: l.pid, Text: l.rest})
		}
		return
	case lineUnfinished:
		if len(s.pending) < maxPending {
			s.pending[l.pid] = pendingCall{name: l.name, args: l.args, start: at}
		}
		return
	case lineResumed:
		p, ok := s.pending[l.pid]
		if !ok || p.name != l.name {
			// Resumed without its start (the trace began mid-call, or
			// pids were mixed up): keep what the line says.
			p = pendingCall{name: l.name, start: at}
		} else {
			delete(s.pending, l.pid)
		}
		args := p.args
		if l.args != "" {
			if args != "" {
				args += ", "
			}
			args += l.args
		}
		end := at.Time
		if l.dur >= 0 && !p.start.Time.IsZero() {
			end = p.start.Time.Add(time.Duration(l.dur))
		}
		s.call(l.pid, l.name, args, l.ret, p.start, end)
	case lineCall:
		end := at.Time
		if l.dur >= 0 && !end.IsZero() {
			end = end.Add(time.Duration(l.dur))
		}
		s.call(l.pid, l.name, l.args, l.ret, at, end)
	}
}

// table returns the fd table of a pid, following clone(CLONE_FILES).
func (s *Scanner) table(pid int) *fdTable {
	if owner, ok := s.cloneOf[pid]; ok {
		pid = owner
	}
	t := s.tables[pid]
	if t == nil {
		t = &fdTable{pid: pid, fds: map[int]*SocketLife{}}
		s.tables[pid] = t
	}
	return t
}

// lookup finds the socket behind fd for pid. When the pid's table does not
// have it but exactly one other table has it open, the pid is taken to be
// a thread of that process whose clone() was not traced (strace -e
// filters, or attached with -p after the threads started).
func (s *Scanner) lookup(pid, fd int) (*SocketLife, *fdTable) {
	t := s.table(pid)
	if life := t.fds[fd]; life != nil {
		return life, t
	}
	var found *fdTable
	for _, other := range s.tables {
		if other != t && other.fds[fd] != nil {
			if found != nil {
				return nil, t // ambiguous: leave it
			}
			found = other
		}
	}
	if found == nil {
		return nil, t
	}
	if _, traced := s.cloneOf[pid]; !traced && len(t.fds) == 0 {
		s.cloneOf[pid] = found.pid
		delete(s.tables, t.pid)
		life := found.fds[fd]
		life.SharedTableGuess = true
		return life, found
	}
	return nil, t
}

// open starts a new socket life at fd.
func (s *Scanner) open(t *fdTable, fd int, kind string, at Mark) *SocketLife {
	if old := t.fds[fd]; old != nil {
		// The fd was reused without a close we saw.
		s.release(t, fd, old, nil)
	}
	life := &SocketLife{PID: t.pid, FD: fd, Kind: kind, Opened: at, refs: 1}
	t.fds[fd] = life
	if len(s.res.Lives) < maxLives {
		s.res.Lives = append(s.res.Lives, life)
	} else {
		s.res.LivesOmitted++
	}
	return life
}

// release drops one descriptor of a socket; the last one closes it.
func (s *Scanner) release(t *fdTable, fd int, life *SocketLife, at *Mark) {
	delete(t.fds, fd)
	life.refs--
	if life.refs <= 0 && at != nil && life.Closed == nil {
		closed := *at
		life.Closed = &closed
	}
}

// socketCalls are calls whose first argument is a socket.
var socketCalls = map[string]bool{
	"bind": true, "listen": true, "accept": true, "accept4": true, "connect": true,
	"getsockname": true, "getpeername": true, "recvfrom": true, "recvmsg": true, "recvmmsg": true,
	"sendto": true, "sendmsg": true, "sendmmsg": true, "shutdown": true, "setsockopt": true, "getsockopt": true,
	"recv": true, "send": true,
}

var readCalls = map[string]bool{"read": true, "recvfrom": true, "recvmsg": true, "readv": true, "recv": true, "pread64": true, "preadv": true, "recvmmsg": true}
var writeCalls = map[string]bool{"write": true, "sendto": true, "sendmsg": true, "writev": true, "send": true, "pwrite64": true, "pwritev": true, "sendmmsg": true}

// call applies one complete call to the fd tables.
func (s *Scanner) call(pid int, name, args, ret string, start Mark, end time.Time) {
	s.res.Calls++
	argv := splitArgs(args, 6)
	n, errno, retDeco, hasRet := parseResult(ret)
	ok := hasRet && n >= 0
	switch name {
	case "clone", "clone3", "fork", "vfork":
		if ok && n > 0 && (strings.Contains(args, "CLONE_FILES") || strings.Contains(args, "CLONE_THREAD")) {
			owner := pid
			if o, shared := s.cloneOf[pid]; shared {
				owner = o
			}
			s.cloneOf[int(n)] = owner
		}
		return
	case "socket":
		if ok {
			s.open(s.table(pid), int(n), "socket", start)
		}
		return
	}
	if len(argv) == 0 {
		return
	}
	fd, deco, isFD := parseFD(argv[0])
	if !isFD {
		return
	}
	life, t := s.lookup(pid, fd)
	local, peer, decoSocket := decorationAddrs(deco)
	if life == nil {
		if !socketCalls[name] && !decoSocket && name != "close" {
			return // a file, a pipe, or a socket we know nothing of
		}
		if name == "close" {
			return
		}
		life = s.open(t, fd, "socket", start)
	}
	if local.IsValid() && !life.Local.IsValid() {
		life.Local = local
	}
	if peer.IsValid() && !life.Peer.IsValid() {
		life.Peer = peer
	}
	ev := Event{Mark: start, End: end, Call: name, Result: ret}
	switch {
	case name == "bind":
		if len(argv) > 1 {
			if a, good := parseSockaddr(argv[1]); good {
				life.Local = a
			}
		}
	case name == "listen":
		life.Kind = "listener"
		if len(argv) > 1 {
			life.Backlog, _ = strconv.Atoi(argv[1])
		}
	case name == "accept" || name == "accept4":
		if !ok {
			if errno == "EAGAIN" || errno == "EWOULDBLOCK" {
				life.WouldBlock++
				return // a poll of an empty queue: not worth an event
			}
			break
		}
		life.Kind = "listener"
		life.Accepts++
		acceptedAt := Mark{Ref: start.Ref, Time: end}
		nl := s.open(t, int(n), "accepted", acceptedAt)
		nl.Local = life.Local
		if len(argv) > 1 {
			if a, good := parseSockaddr(argv[1]); good {
				nl.Peer = a
			}
		}
		if l, p, _ := decorationAddrs(retDeco); l.IsValid() {
			nl.Local, nl.Peer = l, p
		}
		nl.addEvent(Event{Mark: acceptedAt, End: end, Call: name, Result: ret})
	case name == "connect":
		life.Kind = "connected"
		if len(argv) > 1 {
			if a, good := parseSockaddr(argv[1]); good {
				life.Peer = a
			}
		}
		m := start
		life.Connect = &m
		if ok {
			life.ConnectResult = "ok"
		} else {
			life.ConnectResult = errno
		}
	case name == "getsockname" && ok && len(argv) > 1:
		if a, good := parseSockaddr(argv[1]); good {
			life.Local = a
		}
	case name == "getpeername" && ok && len(argv) > 1:
		if a, good := parseSockaddr(argv[1]); good {
			life.Peer = a
		}
	case readCalls[name]:
		if len(argv) > 1 {
			ev.Data, ev.DataHex = dataArg(argv[1])
		}
		s.transfer(life, &ev, ok, n, errno, true)
	case writeCalls[name]:
		if len(argv) > 1 {
			ev.Data, ev.DataHex = dataArg(argv[1])
		}
		s.transfer(life, &ev, ok, n, errno, false)
	case name == "sendfile":
		s.transfer(life, &ev, ok, n, errno, false)
	case name == "shutdown":
		m := start
		life.Shutdown = &m
	case name == "close":
		if ok {
			m := Mark{Ref: start.Ref, Time: end}
			s.release(t, fd, life, &m)
		}
	case name == "dup" || name == "dup2" || name == "dup3" || (name == "fcntl" && len(argv) > 1 && strings.HasPrefix(argv[1], "F_DUPFD")):
		if ok && int(n) != fd {
			if old := t.fds[int(n)]; old != nil {
				s.release(t, int(n), old, &start)
			}
			t.fds[int(n)] = life
			life.refs++
			life.Aliases = append(life.Aliases, int(n))
		}
	case name == "epoll_ctl" || name == "setsockopt" || name == "getsockopt" || name == "fcntl" || name == "ioctl":
		return // bookkeeping calls: not part of the story
	}
	life.addEvent(ev)
}

// transfer counts a read or a write.
func (s *Scanner) transfer(life *SocketLife, ev *Event, ok bool, n int64, errno string, read bool) {
	m := ev.Mark
	switch {
	case ok && n == 0 && read:
		if life.EOF == nil {
			life.EOF = &m
		}
	case ok && read:
		ev.Bytes = n
		life.BytesRead += n
		life.Reads++
		if life.FirstRead == nil {
			life.FirstRead = &m
		}
		last := m
		life.LastRead = &last
	case ok:
		ev.Bytes = n
		life.BytesWritten += n
		life.Writes++
		if life.FirstWrite == nil {
			life.FirstWrite = &m
		}
		last := m
		life.LastWrite = &last
	case errno == "EAGAIN" || errno == "EWOULDBLOCK":
		life.WouldBlock++
	default:
		if life.Error == nil {
			life.Error, life.ErrorErrno = &m, errno
		}
	}
}

// finish closes the books: unfinished calls, sockets still open.
func (s *Scanner) finish() {
	s.res.Unfinished = int64(len(s.pending))
	for _, life := range s.res.Lives {
		if life.Closed == nil {
			life.NeverClosed = true
		}
	}
	sort.SliceStable(s.res.Lives, func(i, j int) bool { return s.res.Lives[i].Opened.Line < s.res.Lives[j].Opened.Line })
	s.res.TimeFormat = s.format.String()
	switch s.format {
	case timeEpoch:
		s.res.TimesKnown = true
	case timeOfDay:
		s.res.TimesKnown = !s.opts.Date.IsZero()
	case timeRelative:
		s.res.TimesKnown = !s.opts.Base.IsZero()
	}
	if s.res.Lives == nil {
		s.res.Lives = []*SocketLife{}
	}
}

// Sniff scores how much a sample of lines looks like strace output.
func Sniff(sample [][]byte) float64 {
	if len(sample) == 0 {
		return 0
	}
	good := 0
	for _, line := range sample {
		l, problem := splitLine(string(line), 0)
		if problem == "" && (l.kind != lineCall || l.retOK) {
			good++
		}
	}
	return float64(good) / float64(len(sample))
}
