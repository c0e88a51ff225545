package sockstat

import (
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"wiremortem/decoders/logline"
	"wiremortem/evidence"
)

// Caps on what one snapshot keeps; lines past them are counted as unparsed
// with ReasonOverCap.
const (
	MaxSocketsPerSnapshot  = 1 << 20
	MaxCountersPerSnapshot = 1 << 14
)

// Reasons a line is unparsed (logline.Unparsed.Reason).
const (
	ReasonNotInternetSocket = "not an internet socket"
	ReasonBadSocketLine     = "bad socket line"
	ReasonOrphanDetail      = "detail line without a socket"
	ReasonUnknownLine       = "unknown line"
	ReasonOverCap           = "snapshot over cap"
)

// Snapshot is what the tools printed at one moment: the lines from one
// timestamp line to the next. Without timestamp lines, a snapshot ends
// where the output visibly starts again: a header after sockets, a socket
// or counter seen twice.
type Snapshot struct {
	// Ref is the snapshot's first line (its timestamp line, if it has one).
	Ref evidence.Ref `json:"ref"`
	// Number counts snapshots in the file from 1.
	Number int `json:"number"`
	// Time is the timestamp line's time; zero when there is none.
	Time time.Time `json:"time,omitzero"`
	// TimeHasZone is true when Time came with its zone or offset.
	TimeHasZone bool `json:"time_has_zone"`
	// Sockets are the socket lines, in file order.
	Sockets []Socket `json:"sockets,omitempty"`
	// Counters are the netstat -s and nstat counters, in file order.
	Counters []Counter `json:"counters,omitempty"`
}

// Counter returns the counter with the given name.
func (s *Snapshot) Counter(name string) (Counter, bool) {
	for _, c := range s.Counters {
		if c.Name == name {
			return c, true
		}
	}
	return Counter{}, false
}

type connKey struct {
	proto       string
	local, peer netip.AddrPort
}

// Scanner reads snapshot files, like bufio.Scanner:
//
//	s := sockstat.NewScanner(r, logline.Options{Source: "ss.txt", Clock: loc})
//	for s.Scan() {
//		if snap := s.Snapshot(); snap != nil { ... } else { u := s.Unparsed() ... }
//	}
//
// Unparsed lines come as they are read; a snapshot comes when it is
// complete, at the start of the next one or at the end of the input.
type Scanner struct {
	lines *logline.Reader
	clock *time.Location
	tally logline.Tally

	number     int
	cur        *Snapshot
	lastSocket int // index in cur.Sockets of the socket a detail line belongs to, or -1
	conns      map[connKey]bool
	counters   map[string]bool
	sections   map[string]bool
	section    string // the netstat -s section being read
	subsection string // its histogram title, if any
	queue      []scanEntry
	current    scanEntry
	err        error

	maxSockets, maxCounters int
}

type scanEntry struct {
	snapshot *Snapshot
	unparsed *logline.Unparsed
}

// NewScanner returns a scanner of r. Options.Clock is the zone of
// timestamp lines written without one.
func NewScanner(r io.Reader, opts logline.Options) *Scanner {
	return &Scanner{lines: logline.NewReader(r, opts), clock: opts.Location(), lastSocket: -1,
		maxSockets: MaxSocketsPerSnapshot, maxCounters: MaxCountersPerSnapshot}
}

// Scan advances to the next snapshot or unparsed line. It returns false at
// the end of the input or on a read error (see Err).
func (s *Scanner) Scan() bool {
	for len(s.queue) == 0 {
		if s.err != nil {
			return false
		}
		line, err := s.lines.Next()
		if err != nil {
			if err != io.EOF {
				s.err = err
			}
			s.finish()
			if len(s.queue) == 0 {
				return false
			}
			break
		}
		s.tally.Lines++
		s.consume(line)
	}
	s.current = s.queue[0]
	s.queue = append(s.queue[:0], s.queue[1:]...)
	return true
}

// Snapshot returns the current snapshot, or nil if the current line is
// unparsed. It stays valid after later calls to Scan.
func (s *Scanner) Snapshot() *Snapshot { return s.current.snapshot }

// Unparsed returns the current line when it did not parse.
func (s *Scanner) Unparsed() *logline.Unparsed { return s.current.unparsed }

// Err returns the read error that stopped Scan, if any.
func (s *Scanner) Err() error { return s.err }

// Tally accounts for the lines read so far.
func (s *Scanner) Tally() logline.Tally { return s.tally }

func (s *Scanner) consume(line logline.Line) {
	detailLine := s.lastSocket >= 0 && len(line.Text) > 0 && line.Text[0] == '\t'
	if !detailLine {
		s.lastSocket = -1
	}
	switch {
	case line.TooLong:
		s.reject(line, logline.ReasonTooLong, fmt.Sprintf("%d bytes", line.Length))
		return
	case logline.IsBlank(line.Text):
		s.tally.BlankLines++
		return
	}
	text := string(line.Text)
	if detailLine {
		// ss -i and -m print their details on a line of their own,
		// starting with a tab, under the socket.
		sock := &s.cur.Sockets[s.lastSocket]
		if sock.Info == nil {
			sock.Info = parseTCPInfo(text)
		} else {
			sock.Info.Raw += " " + strings.TrimSpace(text)
		}
		s.parsed()
		return
	}
	if text[0] == '\t' {
		s.reject(line, ReasonOrphanDetail, "a tab-indented ss detail line with no socket line above it")
		return
	}
	if t, zoned, ok := parseStampLine(text, s.clock); ok {
		s.start(line)
		s.cur.Time, s.cur.TimeHasZone = t, zoned
		s.parsed()
		return
	}
	if isSSHeader(text) || isNetstatHeader(text) {
		if s.cur != nil && len(s.cur.Sockets) > 0 && !strings.HasPrefix(text, "Proto ") {
			s.start(line)
		}
		s.parsed()
		return
	}
	if isNetstatUnixLine(text) {
		s.reject(line, ReasonNotInternetSocket, "UNIX-domain socket section of netstat")
		return
	}
	if text == "#kernel" {
		// nstat's header.
		if s.cur != nil && len(s.cur.Counters) > 0 {
			s.start(line)
		}
		s.parsed()
		return
	}
	if section, ok := netstatSection(text); ok {
		if s.sections[section] {
			s.start(line)
		}
		s.snapshot(line)
		s.sections[section] = true
		s.section, s.subsection = section, ""
		s.parsed()
		return
	}
	if sock, ok, problem := parseSocketLine(text); ok {
		if problem != "" {
			reason := ReasonBadSocketLine
			if strings.HasPrefix(problem, "not an internet socket") {
				reason = ReasonNotInternetSocket
			}
			s.reject(line, reason, problem)
			return
		}
		s.addSocket(line, sock)
		return
	}
	if strings.HasPrefix(text, " ") && strings.HasSuffix(text, ":") && strings.Contains(strings.TrimSpace(text), " ") {
		// A netstat -s histogram title, "    ICMP input histogram:".
		s.subsection = strings.TrimSpace(text)
		s.parsed()
		return
	}
	if c, ok := s.parseCounter(text); ok {
		s.addCounter(line, c)
		return
	}
	s.reject(line, ReasonUnknownLine, fmt.Sprintf("starts with %q", text[:min(len(text), 32)]))
}

// parseSocketLine tries netstat's shape (a Proto column, then numbers),
// then ss's.
func parseSocketLine(text string) (Socket, bool, string) {
	if sock, ok, problem := parseNetstatLine(text); ok {
		return sock, true, problem
	}
	return parseSSLine(text)
}

func (s *Scanner) parseCounter(text string) (Counter, bool) {
	if text[0] == ' ' {
		section := s.section
		if s.subsection != "" && strings.HasPrefix(text, "        ") {
			// Histogram entries are indented under their title.
			section += ": " + s.subsection
		}
		return parseNetstatStatsLine(text, section)
	}
	if c, ok := parseNstatLine(text); ok {
		return c, true
	}
	return parseNetstatStatsLine(text, s.section)
}

func (s *Scanner) addSocket(line logline.Line, sock Socket) {
	s.snapshot(line)
	key := connKey{sock.Proto, sock.Local, sock.Peer}
	if sock.Peer.Port() != 0 && s.conns[key] {
		// The same connection twice: the tool ran again with no timestamp
		// between (ss -tan | grep 443 in a loop).
		s.start(line)
	}
	if len(s.cur.Sockets) >= s.maxSockets {
		s.reject(line, ReasonOverCap, fmt.Sprintf("more than %d sockets", s.maxSockets))
		return
	}
	if sock.Peer.Port() != 0 {
		s.conns[key] = true
	}
	sock.Ref = s.lines.Ref(line)
	sock.Time, sock.TimeHasZone = s.cur.Time, s.cur.TimeHasZone
	s.cur.Sockets = append(s.cur.Sockets, sock)
	s.lastSocket = len(s.cur.Sockets) - 1
	s.parsed()
}

func (s *Scanner) addCounter(line logline.Line, c Counter) {
	s.snapshot(line)
	if s.counters[c.Name] {
		// The same counter twice: netstat -s | grep listen in a loop.
		s.start(line)
	}
	if len(s.cur.Counters) >= s.maxCounters {
		s.reject(line, ReasonOverCap, fmt.Sprintf("more than %d counters", s.maxCounters))
		return
	}
	s.counters[c.Name] = true
	c.Ref = s.lines.Ref(line)
	c.Time, c.TimeHasZone = s.cur.Time, s.cur.TimeHasZone
	s.cur.Counters = append(s.cur.Counters, c)
	s.parsed()
}

// snapshot makes sure there is a current snapshot, starting one at line.
func (s *Scanner) snapshot(line logline.Line) {
	if s.cur == nil {
		s.start(line)
	}
}

// start ends the current snapshot and begins a new one at line.
func (s *Scanner) start(line logline.Line) {
	s.finish()
	s.number++
	s.cur = &Snapshot{Ref: s.lines.Ref(line), Number: s.number}
	s.conns = make(map[connKey]bool)
	s.counters = make(map[string]bool)
	s.sections = make(map[string]bool)
	s.section, s.subsection = "", ""
	s.lastSocket = -1
}

// finish queues the current snapshot, if it holds anything.
func (s *Scanner) finish() {
	if s.cur == nil {
		return
	}
	if len(s.cur.Sockets) > 0 || len(s.cur.Counters) > 0 || !s.cur.Time.IsZero() {
		s.queue = append(s.queue, scanEntry{snapshot: s.cur})
		s.tally.Records++
	} else {
		s.number--
	}
	s.cur = nil
	s.lastSocket = -1
}

func (s *Scanner) parsed() { s.tally.ParsedLines++ }

func (s *Scanner) reject(line logline.Line, reason, detail string) {
	u := s.lines.Unparsed(line, reason, detail)
	s.queue = append(s.queue, scanEntry{unparsed: &u})
	s.tally.CountUnparsed(reason)
}
