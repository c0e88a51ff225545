package nginx

import (
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"wiremortem/decoders/logline"
	"wiremortem/evidence"
)

// Reasons an error-log line is unparsed (logline.Unparsed.Reason).
const (
	// ReasonNoTimestamp: the line does not start with nginx's
	// "2006/01/02 15:04:05 " and continues no multi-line message.
	ReasonNoTimestamp = "no timestamp"
	// ReasonBadPrefix: the line has the date but not "[level] pid#tid: ".
	ReasonBadPrefix = "bad prefix"
	// ReasonMessageOverCap: a continuation line would make a multi-line
	// message longer than the line cap.
	ReasonMessageOverCap = "message over cap"
)

// Level is an error-log severity, as nginx writes it between brackets.
type Level string

// The levels of ngx_log.c's err_levels, least to most severe.
const (
	LevelDebug  Level = "debug"
	LevelInfo   Level = "info"
	LevelNotice Level = "notice"
	LevelWarn   Level = "warn"
	LevelError  Level = "error"
	LevelCrit   Level = "crit"
	LevelAlert  Level = "alert"
	LevelEmerg  Level = "emerg"
)

func parseLevel(s string) (Level, bool) {
	switch l := Level(s); l {
	case LevelDebug, LevelInfo, LevelNotice, LevelWarn, LevelError, LevelCrit, LevelAlert, LevelEmerg:
		return l, true
	}
	return "", false
}

// ErrorRecord is one error-log message. nginx writes it as
//
//	2020/04/15 18:02:51 [error] 374#0: *1917238 send() failed (104: Connection reset by peer)
//	    while proxying upgraded connection, client: 172.28.25.222, server: localhost,
//	    request: "GET /ws HTTP/1.1", upstream: "http://172.28.72.77:8899/ws", host: "h:8443"
//
// on one line (ngx_log_error_core, then ngx_http_log_error for the part
// from " while"). A message nginx got from elsewhere (FastCGI stderr, a Lua
// traceback) may span lines; then Lines > 1 and Message holds the newlines.
type ErrorRecord struct {
	// Ref is the file and the message's first line.
	Ref evidence.Ref `json:"ref"`
	// Lines is the number of lines the message spans, from Ref.Line on
	// (1 unless multi-line).
	Lines int `json:"lines"`
	// Offset is the byte offset of the first line in the file.
	Offset int64 `json:"offset"`
	// Time is the wall time nginx wrote, read in Options.Clock: the error
	// log carries no zone.
	Time time.Time `json:"time"`
	// TimeHasZone is always false for the error log; it is here so that all
	// records say the same thing the same way.
	TimeHasZone bool `json:"time_has_zone"`
	// Level is the severity.
	Level Level `json:"level"`
	// PID is the process id of the nginx worker that wrote the line.
	PID int64 `json:"pid"`
	// TID is the thread id (0 where nginx does not know it).
	TID int64 `json:"tid"`
	// Connection is the connection serial number "*N", the same number as
	// $connection in the access log; 0 when the line has none.
	Connection uint64 `json:"connection,omitempty"`
	// Message is the text before the errno, the context and the fields.
	Message string `json:"message"`
	// Call is the system or library call the message names, "recv" for
	// "recv() failed".
	Call string `json:"call,omitempty"`
	// Errno is the error number in "(104: Connection reset by peer)".
	Errno int `json:"errno,omitempty"`
	// ErrnoText is the error's text, "Connection reset by peer".
	ErrnoText string `json:"errno_text,omitempty"`
	// Context is what nginx was doing, after "while": "proxying upgraded
	// connection", "connecting to upstream", "reading response header from
	// upstream".
	Context string `json:"context,omitempty"`
	// Client is the client address as logged.
	Client string `json:"client,omitempty"`
	// ClientAddr is Client when it is an IP address.
	ClientAddr netip.Addr `json:"client_addr,omitzero"`
	// Server is the server name (HTTP) or listening address (stream).
	Server string `json:"server,omitempty"`
	// Request is the request line, as received (nginx does not escape it).
	Request string `json:"request,omitempty"`
	// Upstream is the upstream URL or address nginx was talking to.
	Upstream string `json:"upstream,omitempty"`
	// UpstreamAddr is the upstream's IP address and port when Upstream
	// names them.
	UpstreamAddr netip.AddrPort `json:"upstream_addr,omitzero"`
	// Host is the request's Host header.
	Host string `json:"host,omitempty"`
	// Referrer is the request's Referer header.
	Referrer string `json:"referrer,omitempty"`
	// OtherFields are the trailing fields of other modules, in line order:
	// "subrequest", "login", "bytes from/to client" and "bytes from/to
	// upstream".
	OtherFields []Variable `json:"other_fields,omitempty"`
}

// ErrorScanner reads an error log one message at a time, like
// bufio.Scanner (see AccessScanner). A message's continuation lines are
// read before it is returned, so memory is bounded by the line cap.
type ErrorScanner struct {
	lines *logline.Reader
	clock *time.Location
	tally logline.Tally

	// pending is a message whose last line may still be to come. Its text
	// after the prefix is pendingText while it has one line; continuation
	// lines are joined in pendingBody.
	pending     *ErrorRecord
	pendingText string
	pendingBody []byte
	pendingLast int64 // number of the pending message's last line so far
	// overflowing is set after a message went over the cap, until the
	// next line with a timestamp.
	overflowing bool

	queue   []errorEntry
	current errorEntry
	err     error
}

type errorEntry struct {
	record   *ErrorRecord
	unparsed *logline.Unparsed
}

// NewErrorScanner returns a scanner of r.
func NewErrorScanner(r io.Reader, opts logline.Options) *ErrorScanner {
	return &ErrorScanner{lines: logline.NewReader(r, opts), clock: opts.Location()}
}

// Scan advances to the next message or unparsed line. It returns false at
// the end of the input or on a read error (see Err).
func (s *ErrorScanner) Scan() bool {
	for len(s.queue) == 0 {
		if s.err != nil {
			return false
		}
		line, err := s.lines.Next()
		if err != nil {
			if err != io.EOF {
				s.err = err
			}
			s.flush()
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

// Record returns the current message, or nil if the current line is
// unparsed. It stays valid after later calls to Scan.
func (s *ErrorScanner) Record() *ErrorRecord { return s.current.record }

// Unparsed returns the current line when it did not parse.
func (s *ErrorScanner) Unparsed() *logline.Unparsed { return s.current.unparsed }

// Err returns the read error that stopped Scan, if any.
func (s *ErrorScanner) Err() error { return s.err }

// Tally accounts for the lines read so far.
func (s *ErrorScanner) Tally() logline.Tally { return s.tally }

func (s *ErrorScanner) consume(line logline.Line) {
	if line.TooLong {
		s.flush()
		s.reject(line, logline.ReasonTooLong, fmt.Sprintf("%d bytes", line.Length))
		return
	}
	if logline.IsBlank(line.Text) {
		s.tally.BlankLines++
		return
	}
	text := string(line.Text)
	rec, body, problem := parseErrorPrefix(text, s.clock)
	switch {
	case rec != nil:
		s.flush()
		s.overflowing = false
		rec.Ref, rec.Offset, rec.Lines = s.lines.Ref(line), line.Offset, 1
		s.tally.ParsedLines++
		s.pending, s.pendingText, s.pendingLast = rec, body, line.Number
		if hasTail(body) {
			s.flush()
		}
	case problem != "":
		s.flush()
		s.reject(line, ReasonBadPrefix, problem)
	case s.pending != nil && s.pendingLen()+int(line.Number-s.pendingLast)+len(text) <= s.lines.Cap():
		// nginx starts every message with a timestamp, so a line without one
		// continues the message before it (as filebeat's multiline rule for
		// the nginx error log also assumes). Blank lines in between are
		// tallied as blank and kept in the message as empty lines.
		s.tally.ParsedLines++
		if s.pending.Lines == 1 {
			s.pendingBody = append(s.pendingBody[:0], s.pendingText...)
		}
		for n := s.pendingLast; n < line.Number; n++ {
			s.pendingBody = append(s.pendingBody, '\n')
		}
		s.pendingBody = append(s.pendingBody, text...)
		s.pendingLast = line.Number
		s.pending.Lines = int(line.Number-s.pending.Ref.Line) + 1
		if hasTail(text) {
			s.flush()
		}
	case s.pending != nil || s.overflowing:
		detail := "the message before it went over the cap"
		if s.pending != nil {
			detail = fmt.Sprintf("the message before it is already %d bytes", s.pendingLen())
		}
		s.flush()
		s.overflowing = true
		s.reject(line, ReasonMessageOverCap, detail)
	default:
		s.reject(line, ReasonNoTimestamp, fmt.Sprintf("starts with %q", excerptAt(text, 0, 24)))
	}
}

func (s *ErrorScanner) pendingLen() int {
	if s.pending.Lines == 1 {
		return len(s.pendingText)
	}
	return len(s.pendingBody)
}

// flush finishes the pending message and queues it.
func (s *ErrorScanner) flush() {
	if s.pending == nil {
		return
	}
	if s.pending.Lines == 1 {
		s.pending.fillBody(s.pendingText)
	} else {
		s.pending.fillBody(string(s.pendingBody))
	}
	s.queue = append(s.queue, errorEntry{record: s.pending})
	s.tally.Records++
	s.pending = nil
}

func (s *ErrorScanner) reject(line logline.Line, reason, detail string) {
	u := s.lines.Unparsed(line, reason, detail)
	s.queue = append(s.queue, errorEntry{unparsed: &u})
	s.tally.CountUnparsed(reason)
}

// hasTail reports whether text ends a message: the trailing fields are the
// last thing nginx writes, so once ", client: " is seen the message is whole.
func hasTail(text string) bool {
	return strings.Contains(text, ", client: ")
}

// ParseErrorLine parses one error-log line on its own, reading its time in
// clock (nil: UTC).
func ParseErrorLine(line string, clock *time.Location) (ErrorRecord, error) {
	if clock == nil {
		clock = time.UTC
	}
	rec, body, problem := parseErrorPrefix(line, clock)
	if rec == nil {
		if problem == "" {
			problem = fmt.Sprintf("%s: starts with %q", ReasonNoTimestamp, excerptAt(line, 0, 24))
		}
		return ErrorRecord{}, fmt.Errorf("nginx error log: %s", problem)
	}
	rec.Lines = 1
	rec.fillBody(body)
	return *rec, nil
}

// parseErrorPrefix parses "2006/01/02 15:04:05 [level] pid#tid: *N " and
// returns the record and the text after it. A line without the date gives
// no record and no problem; a line with the date but a bad rest gives a
// problem.
func parseErrorPrefix(line string, clock *time.Location) (*ErrorRecord, string, string) {
	t, ok := parseErrorTime(line, clock)
	if !ok {
		return nil, "", ""
	}
	rest := line[19:]
	if !strings.HasPrefix(rest, " [") {
		return nil, "", fmt.Sprintf("byte 19: expected \" [level]\", found %q", excerptAt(rest, 0, 16))
	}
	levelText, after, found := strings.Cut(rest[2:], "] ")
	level, ok := parseLevel(levelText)
	if !found || !ok {
		return nil, "", fmt.Sprintf("byte 21: unknown level in %q", excerptAt(rest, 0, 16))
	}
	ids, body, found := strings.Cut(after, ": ")
	if !found && strings.HasSuffix(after, ":") {
		ids, body, found = after[:len(after)-1], "", true
	}
	pidText, tidText, hasHash := strings.Cut(ids, "#")
	pid, ok1 := parseCount(pidText)
	tid, ok2 := parseCount(tidText)
	if !found || !hasHash || !ok1 || !ok2 {
		return nil, "", fmt.Sprintf("expected \"pid#tid: \" after the level, found %q", excerptAt(after, 0, 24))
	}
	rec := &ErrorRecord{Time: t, Level: level, PID: pid, TID: tid}
	if strings.HasPrefix(body, "*") {
		num, msg, _ := strings.Cut(body[1:], " ")
		if n, ok := logline.ParseUint(num, 1<<63-1); ok {
			rec.Connection = n
			body = msg
		}
	}
	return rec, body, ""
}

// parseErrorTime parses "2006/01/02 15:04:05" at the start of line.
func parseErrorTime(s string, clock *time.Location) (time.Time, bool) {
	if len(s) < 19 || s[4] != '/' || s[7] != '/' || s[10] != ' ' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	year, ok1 := digits(s, 0, 4)
	month, ok2 := digits(s, 5, 2)
	day, ok3 := digits(s, 8, 2)
	hour, ok4 := digits(s, 11, 2)
	minute, ok5 := digits(s, 14, 2)
	sec, ok6 := digits(s, 17, 2)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || !validClock(time.Month(month), day, hour, minute, sec) {
		return time.Time{}, false
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, 0, clock), true
}

// tailField is one of the ", name: value" fields nginx appends to a message
// (ngx_http_log_error and ngx_http_log_error_handler; the stream and mail
// modules' handlers), in the order nginx writes them.
type tailField struct {
	name   string
	marker string
	quoted bool // the value is always in double quotes
}

var tailFields = [...]tailField{
	{name: "client", marker: ", client: "},
	{name: "server", marker: ", server: "},
	{name: "request", marker: ", request: ", quoted: true},
	{name: "subrequest", marker: ", subrequest: ", quoted: true},
	{name: "login", marker: ", login: ", quoted: true},
	{name: "upstream", marker: ", upstream: "},
	{name: "host", marker: ", host: ", quoted: true},
	{name: "referrer", marker: ", referrer: ", quoted: true},
	{name: "bytes from/to client", marker: ", bytes from/to client:"},
	{name: "bytes from/to upstream", marker: ", bytes from/to upstream:"},
}

// fillBody splits the text after the prefix into message, errno, context
// and fields. It works from the right: the fields are last, and the values
// of request, host and referrer are the client's bytes, unescaped, so they
// may hold commas, quotes and even text like ", host: ". Walking the ", "
// from right to left, a field is taken where its marker starts a value that
// runs to the end of what is left (quoted values whole in quotes), and
// only fields that come earlier in nginx's order are looked for after it.
func (r *ErrorRecord) fillBody(body string) {
	rest := body
	var found [len(tailFields)]string
	var have [len(tailFields)]bool
	limit := len(tailFields)
	for pos := len(rest); limit > 0; {
		i := strings.LastIndexByte(rest[:pos], ',')
		if i < 0 {
			break
		}
		pos = i
		k := markerAt(rest[i:], limit)
		if k < 0 {
			continue
		}
		v := rest[i+len(tailFields[k].marker):]
		if !validFieldValue(v, tailFields[k].quoted) {
			continue
		}
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		found[k], have[k] = v, true
		rest, limit = rest[:i], k
	}
	for k, f := range tailFields {
		if !have[k] {
			continue
		}
		v := found[k]
		switch f.name {
		case "client":
			r.Client = v
			r.ClientAddr, _ = parseAddr(v)
		case "server":
			r.Server = v
		case "request":
			r.Request = v
		case "upstream":
			r.Upstream = v
			r.UpstreamAddr = upstreamAddrPort(v)
		case "host":
			r.Host = v
		case "referrer":
			r.Referrer = v
		default:
			r.OtherFields = append(r.OtherFields, Variable{Name: f.name, Value: v})
		}
	}
	// " while <action>" comes after the errno and before the fields; an
	// action is nginx's own text and never holds a quote, which keeps a
	// " while " inside quoted client text from being taken for it.
	if i := strings.LastIndex(rest, " while "); i >= 0 {
		if action := rest[i+len(" while "):]; action != "" && !strings.ContainsRune(action, '"') {
			r.Context = action
			rest = rest[:i]
		}
	}
	if msg, errno, text, ok := cutErrno(rest); ok {
		rest, r.Errno, r.ErrnoText = msg, errno, text
	}
	r.Message = rest
	r.Call = callName(rest)
}

// markerAt returns the index of the tail field whose marker s starts with,
// among the first limit fields, or -1.
func markerAt(s string, limit int) int {
	if len(s) < 3 || s[1] != ' ' {
		return -1
	}
	for k := range limit {
		if strings.HasPrefix(s, tailFields[k].marker) {
			return k
		}
	}
	return -1
}

func validFieldValue(v string, quoted bool) bool {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		return true
	}
	// An unquoted value (client, server, a mail upstream, byte counts) is an
	// address, name or number: no quotes, no field separator.
	return !quoted && !strings.ContainsRune(v, '"') && !strings.Contains(v, ", ")
}

// cutErrno cuts " (104: Connection reset by peer)" off the end of s
// (ngx_log_errno).
func cutErrno(s string) (string, int, string, bool) {
	if !strings.HasSuffix(s, ")") {
		return s, 0, "", false
	}
	i := strings.LastIndex(s, " (")
	if i < 0 {
		return s, 0, "", false
	}
	num, text, ok := strings.Cut(s[i+2:len(s)-1], ": ")
	n, okNum := logline.ParseUint(num, 1<<20)
	if !ok || !okNum || text == "" {
		return s, 0, "", false
	}
	return s[:i], int(n), text, true
}

// callName returns "recv" for a message starting "recv() failed".
func callName(msg string) string {
	i := strings.Index(msg, "() ")
	if i <= 0 && !strings.HasSuffix(msg, "()") {
		return ""
	}
	if i < 0 {
		i = len(msg) - 2
	}
	name := msg[:i]
	for j := 0; j < len(name); j++ {
		if !isNameByte(name[j]) {
			return ""
		}
	}
	return name
}

// upstreamAddrPort finds the IP address and port in an upstream field:
// "http://127.0.0.1:8080/ws", "127.0.0.1:8080", "[::1]:443".
func upstreamAddrPort(v string) netip.AddrPort {
	if _, rest, ok := strings.Cut(v, "://"); ok {
		v, _, _ = strings.Cut(rest, "/")
	}
	ap, _ := netip.ParseAddrPort(v)
	return ap
}
