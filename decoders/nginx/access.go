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

// Reasons an access line is unparsed (logline.Unparsed.Reason).
const (
	ReasonFormatMismatch = "format mismatch"
	ReasonBadValue       = "bad value"
)

// AccessRecord is one access log line. A field is zero when the format has
// no variable for it or nginx wrote "-" (no value).
//
// nginx writes the line when the request ends, so Time is the end of the
// request; it started about RequestTime earlier.
type AccessRecord struct {
	// Ref is the file and line.
	Ref evidence.Ref `json:"ref"`
	// Offset is the byte offset of the line in the file.
	Offset int64 `json:"offset"`
	// Time is when nginx logged the request: from $msec, else
	// $time_iso8601, else $time_local (the most precise one present).
	Time time.Time `json:"time,omitzero"`
	// TimeHasZone is true when Time came with its zone or offset (all of
	// the access log's time variables do).
	TimeHasZone bool `json:"time_has_zone"`

	// RemoteAddr is $remote_addr, the client's address (zero for a
	// unix-socket client, which nginx logs as "unix:").
	RemoteAddr netip.Addr `json:"remote_addr,omitzero"`
	// RemotePort is $remote_port, the client's port.
	RemotePort uint16 `json:"remote_port,omitempty"`
	// RemoteUser is $remote_user, the user name from Basic auth.
	RemoteUser string `json:"remote_user,omitempty"`
	// ServerAddr is $server_addr, the address that accepted the connection.
	ServerAddr netip.Addr `json:"server_addr,omitzero"`
	// ServerPort is $server_port, the port that accepted the connection.
	ServerPort uint16 `json:"server_port,omitempty"`
	// Host is $host: the Host header's name, or the server name.
	Host string `json:"host,omitempty"`

	// Request is $request, the full request line, unescaped.
	Request string `json:"request,omitempty"`
	// Method is the request method, from $request or $request_method.
	Method string `json:"method,omitempty"`
	// URI is the request target, from $request or $request_uri.
	URI string `json:"uri,omitempty"`
	// Protocol is the protocol, from $request or $server_protocol.
	Protocol string `json:"protocol,omitempty"`
	// Status is $status, the response status (499: the client closed the
	// connection first; 101: switched protocols, e.g. to WebSocket).
	Status int `json:"status,omitempty"`
	// BodyBytesSent is $body_bytes_sent, response body bytes sent.
	BodyBytesSent int64 `json:"body_bytes_sent,omitempty"`
	// BytesSent is $bytes_sent, all bytes sent to the client.
	BytesSent int64 `json:"bytes_sent,omitempty"`
	// RequestLength is $request_length, bytes of request line, headers and body.
	RequestLength int64 `json:"request_length,omitempty"`
	// RequestTime is $request_time: from the first byte read from the
	// client to the log write, at millisecond resolution.
	RequestTime time.Duration `json:"request_time_ns,omitempty"`

	// Connection is $connection, the connection serial number: the same
	// number as "*N" in the error log.
	Connection uint64 `json:"connection,omitempty"`
	// ConnectionRequests is $connection_requests, the number of requests
	// made over this connection so far (1 for the first).
	ConnectionRequests int64 `json:"connection_requests,omitempty"`

	// Upstreams are the upstream servers tried, in order, zipped from the
	// $upstream_* lists.
	Upstreams []UpstreamAttempt `json:"upstreams,omitempty"`
	// Headers are the $http_* variables in format order.
	Headers []Variable `json:"headers,omitempty"`
	// Other holds every other variable of the format, as text.
	Other []Variable `json:"other,omitempty"`
}

// Header returns the value of the $http_<name> variable ("user_agent",
// "referer", "x_forwarded_for"), or "".
func (r *AccessRecord) Header(name string) string {
	for _, h := range r.Headers {
		if h.Name == name {
			return h.Value
		}
	}
	return ""
}

// Variable is a variable's name (without "$", and without "http_" in
// Headers) and its unescaped value.
type Variable struct {
	// Name is the variable's name.
	Name string `json:"name"`
	// Value is the value, unescaped; "" when nginx wrote "-".
	Value string `json:"value"`
}

// UpstreamAttempt is one upstream server nginx tried for a request.
type UpstreamAttempt struct {
	// Group counts internal redirects: 0 for the first upstream group,
	// 1 after the first " : " in the lists, and so on.
	Group int `json:"group"`
	// Addr is the server as logged: "10.0.0.1:80", "unix:/run/app.sock",
	// or the upstream group's name when no server could be tried.
	Addr string `json:"addr,omitempty"`
	// AddrPort is Addr when it is an IP address and port.
	AddrPort netip.AddrPort `json:"addr_port,omitzero"`
	// Status is the upstream's response status (0: none, e.g. connect failed).
	Status int `json:"status,omitempty"`
	// ConnectTime is the time spent connecting to it.
	ConnectTime time.Duration `json:"connect_time_ns,omitempty"`
	// HeaderTime is the time until its response header arrived.
	HeaderTime time.Duration `json:"header_time_ns,omitempty"`
	// ResponseTime is the time until its whole response arrived.
	ResponseTime time.Duration `json:"response_time_ns,omitempty"`
}

// AccessScanner reads an access log one line at a time, like bufio.Scanner:
//
//	s := nginx.NewAccessScanner(r, format, logline.Options{Source: "access.log"})
//	for s.Scan() {
//		if rec := s.Record(); rec != nil { ... } else { u := s.Unparsed() ... }
//	}
//	if err := s.Err(); err != nil { ... }
type AccessScanner struct {
	lines    *logline.Reader
	format   *AccessFormat
	clock    *time.Location
	zones    zoneCache
	tally    logline.Tally
	record   AccessRecord
	unparsed logline.Unparsed
	isRecord bool
	err      error
}

// NewAccessScanner returns a scanner of r with the given format.
func NewAccessScanner(r io.Reader, format *AccessFormat, opts logline.Options) *AccessScanner {
	return &AccessScanner{lines: logline.NewReader(r, opts), format: format, clock: opts.Location()}
}

// Scan advances to the next non-blank line. It returns false at the end of
// the input or on a read error (see Err).
func (s *AccessScanner) Scan() bool {
	for s.err == nil {
		line, err := s.lines.Next()
		if err != nil {
			if err != io.EOF {
				s.err = err
			}
			return false
		}
		s.tally.Lines++
		switch {
		case line.TooLong:
			s.reject(line, logline.ReasonTooLong, fmt.Sprintf("%d bytes", line.Length))
		case logline.IsBlank(line.Text):
			s.tally.BlankLines++
			continue
		default:
			s.record = AccessRecord{Ref: s.lines.Ref(line), Offset: line.Offset}
			if m := s.format.parse(string(line.Text), &s.record, &s.zones); m != nil {
				s.reject(line, m.reason, m.detail)
			} else {
				s.isRecord = true
				s.tally.ParsedLines++
				s.tally.Records++
			}
		}
		return true
	}
	return false
}

func (s *AccessScanner) reject(line logline.Line, reason, detail string) {
	s.isRecord = false
	s.unparsed = s.lines.Unparsed(line, reason, detail)
	s.tally.CountUnparsed(reason)
}

// Record returns the current line's record, or nil if it did not parse.
// The record is valid until the next call to Scan.
func (s *AccessScanner) Record() *AccessRecord {
	if !s.isRecord {
		return nil
	}
	return &s.record
}

// Unparsed returns the current line when it did not parse.
func (s *AccessScanner) Unparsed() *logline.Unparsed {
	if s.isRecord {
		return nil
	}
	return &s.unparsed
}

// Err returns the read error that stopped Scan, if any.
func (s *AccessScanner) Err() error { return s.err }

// Tally accounts for the lines read so far.
func (s *AccessScanner) Tally() logline.Tally { return s.tally }

// mismatch is why one line did not fit the format.
type mismatch struct {
	reason string
	detail string
}

// Parse parses one line (without its newline) with the format. Times
// without a zone do not occur in access logs, so no clock is needed.
func (f *AccessFormat) Parse(line string) (AccessRecord, error) {
	var rec AccessRecord
	if m := f.parse(line, &rec, &zoneCache{}); m != nil {
		return rec, fmt.Errorf("%s: %s", m.reason, m.detail)
	}
	return rec, nil
}

func (f *AccessFormat) parse(line string, rec *AccessRecord, zones *zoneCache) *mismatch {
	var times timeSources
	var lists upstreamLists
	pos := 0
	for i, p := range f.pieces {
		if !p.isVariable() {
			if !strings.HasPrefix(line[pos:], p.literal) {
				// Only the format's leading text can differ here: a literal
				// after a variable is where that variable's value ended.
				return &mismatch{ReasonFormatMismatch, fmt.Sprintf("byte %d: expected %q, found %q",
					pos, p.literal, excerptAt(line, pos, len(p.literal)+8))}
			}
			pos += len(p.literal)
			continue
		}
		end, ok := f.valueEnd(line, pos, i)
		if !ok {
			return &mismatch{ReasonFormatMismatch, fmt.Sprintf("byte %d: no %q after $%s", pos, f.pieces[i+1].literal, p.field.name)}
		}
		raw := line[pos:end]
		value, ok := f.unescape(raw)
		if !ok {
			return &mismatch{ReasonBadValue, fmt.Sprintf("byte %d: $%s: bad escape in %q", pos, p.field.name, raw)}
		}
		if problem := rec.set(p.field, value, pos, &times, &lists, zones); problem != "" {
			return &mismatch{ReasonBadValue, fmt.Sprintf("byte %d: $%s: %s", pos, p.field.name, problem)}
		}
		pos = end
	}
	if pos != len(line) {
		return &mismatch{ReasonFormatMismatch, fmt.Sprintf("byte %d: unexpected text after the format's end: %q", pos, excerptAt(line, pos, 32))}
	}
	times.apply(rec)
	var problem string
	if rec.Upstreams, problem = lists.zip(); problem != "" {
		return &mismatch{ReasonBadValue, problem}
	}
	return nil
}

func excerptAt(s string, pos, n int) string {
	return s[pos:min(len(s), pos+n)]
}

// valueEnd finds where the value of pieces[i], starting at pos, ends.
func (f *AccessFormat) valueEnd(line string, pos, i int) (int, bool) {
	if i+1 == len(f.pieces) {
		return len(line), true
	}
	next := f.pieces[i+1]
	kind := f.pieces[i].field.kind
	if next.isVariable() {
		return pos + shapeLen(line[pos:], kind), true
	}
	lit := next.literal
	for from := pos; ; {
		j := strings.Index(line[from:], lit)
		if j < 0 {
			return 0, false
		}
		end := from + j
		switch {
		case f.Escape == EscapeJSON && oddBackslashesBefore(line, pos, end):
			// An escaped quote (\") inside the JSON string value.
			from = end + 1
		case kind.isUpstreamList() && isListSeparator(line, pos, end):
			// "a, b : c": the space belongs to the list, not the format.
			from = end + 1
		default:
			return end, true
		}
	}
}

func oddBackslashesBefore(line string, start, end int) bool {
	n := 0
	for k := end - 1; k >= start && line[k] == '\\'; k-- {
		n++
	}
	return n%2 == 1
}

// isListSeparator reports whether the space at end (where the format's
// next literal was found) is really inside an upstream list: after ",", or
// either space of " : ".
func isListSeparator(line string, start, end int) bool {
	if line[end] != ' ' {
		return false
	}
	if end > start && line[end-1] == ',' {
		return true
	}
	if end-1 > start && line[end-1] == ':' && line[end-2] == ' ' {
		return true
	}
	return strings.HasPrefix(line[end:], " : ")
}

// shapeLen is how many bytes at the start of s a value of the kind takes
// when no literal follows it (see fieldKind.hasShape).
func shapeLen(s string, kind fieldKind) int {
	n := 0
	if kind == kindHost {
		for n < len(s) && s[n] != '/' && s[n] != ' ' && s[n] != '"' && s[n] != '?' {
			n++
		}
		return n
	}
	if strings.HasPrefix(s, "-") {
		return 1
	}
	limit, decimals := len(s), false
	switch kind {
	case kindStatus:
		limit = min(limit, 3)
	case kindRequestTime, kindMsec:
		decimals = true
	}
	for n < limit && (s[n] >= '0' && s[n] <= '9' || decimals && s[n] == '.') {
		n++
	}
	return n
}

// unescape undoes nginx's escaping of one value. "-" (no value) becomes "".
func (f *AccessFormat) unescape(raw string) (string, bool) {
	switch f.Escape {
	case EscapeJSON:
		return unescapeJSON(raw)
	case EscapeNone:
		if raw == "-" {
			return "", true
		}
		return raw, true
	}
	if raw == "-" {
		return "", true
	}
	return unescapeHex(raw), true
}

// set stores one variable's value in the record, or says why it cannot.
func (r *AccessRecord) set(fd field, v string, at int, times *timeSources, lists *upstreamLists, zones *zoneCache) string {
	if v == "" && fd.kind != kindHeader && fd.kind != kindOther {
		return ""
	}
	var ok bool
	switch fd.kind {
	case kindRemoteAddr:
		if v == "unix:" {
			return ""
		}
		if r.RemoteAddr, ok = parseAddr(v); !ok {
			return fmt.Sprintf("%q is not an IP address", v)
		}
	case kindServerAddr:
		if v == "unix:" {
			return ""
		}
		if r.ServerAddr, ok = parseAddr(v); !ok {
			return fmt.Sprintf("%q is not an IP address", v)
		}
	case kindRemotePort:
		if r.RemotePort, ok = parsePort(v); !ok {
			return fmt.Sprintf("%q is not a port", v)
		}
	case kindServerPort:
		if r.ServerPort, ok = parsePort(v); !ok {
			return fmt.Sprintf("%q is not a port", v)
		}
	case kindRemoteUser:
		r.RemoteUser = v
	case kindHost:
		r.Host = v
	case kindTimeLocal:
		if times.local, ok = parseTimeLocal(v, zones); !ok {
			return fmt.Sprintf("%q is not a time like 02/Jan/2006:15:04:05 -0700", v)
		}
	case kindTimeISO8601:
		if times.iso, ok = parseTimeISO8601(v, zones); !ok {
			return fmt.Sprintf("%q is not a time like 2006-01-02T15:04:05-07:00", v)
		}
	case kindMsec:
		ns, ok := parseDecimalNanos(v)
		if !ok {
			return fmt.Sprintf("%q is not seconds since the epoch", v)
		}
		times.msec = time.Unix(0, ns).UTC()
	case kindRequest:
		r.Request = v
		method, uri, proto, ok := SplitRequestLine(v)
		if ok {
			r.Method, r.URI, r.Protocol = method, uri, proto
		}
	case kindRequestMethod:
		r.Method = v
	case kindRequestURI:
		r.URI = v
	case kindServerProtocol:
		r.Protocol = v
	case kindStatus:
		n, ok := logline.ParseUint(v, 999)
		if !ok {
			return fmt.Sprintf("%q is not a status code", v)
		}
		r.Status = int(n)
	case kindBodyBytesSent:
		if r.BodyBytesSent, ok = parseCount(v); !ok {
			return fmt.Sprintf("%q is not a byte count", v)
		}
	case kindBytesSent:
		if r.BytesSent, ok = parseCount(v); !ok {
			return fmt.Sprintf("%q is not a byte count", v)
		}
	case kindRequestLength:
		if r.RequestLength, ok = parseCount(v); !ok {
			return fmt.Sprintf("%q is not a byte count", v)
		}
	case kindRequestTime:
		ns, ok := parseDecimalNanos(v)
		if !ok {
			return fmt.Sprintf("%q is not a time in seconds", v)
		}
		r.RequestTime = time.Duration(ns)
	case kindConnection:
		n, ok := logline.ParseUint(v, 1<<63-1)
		if !ok {
			return fmt.Sprintf("%q is not a connection number", v)
		}
		r.Connection = n
	case kindConnectionRequests:
		if r.ConnectionRequests, ok = parseCount(v); !ok {
			return fmt.Sprintf("%q is not a count", v)
		}
	case kindUpstreamAddr, kindUpstreamStatus, kindUpstreamConnectTime, kindUpstreamHeaderTime, kindUpstreamResponseTime:
		lists.set(fd.kind, v, at)
	case kindHeader:
		r.Headers = append(r.Headers, Variable{Name: fd.name[len("http_"):], Value: v})
	default:
		r.Other = append(r.Other, Variable{Name: fd.name, Value: v})
	}
	return ""
}

// SplitRequestLine splits "GET /path HTTP/1.1" into its three parts. A
// line of two parts is HTTP/0.9 ("GET /"), with an empty protocol. It
// returns false for anything else (a TLS handshake sent to a plain-HTTP
// port, a truncated line).
func SplitRequestLine(line string) (method, uri, protocol string, ok bool) {
	method, rest, found := strings.Cut(line, " ")
	if !found || method == "" || !isToken(method) {
		return "", "", "", false
	}
	if i := strings.LastIndexByte(rest, ' '); i >= 0 && strings.HasPrefix(rest[i+1:], "HTTP/") {
		uri, protocol = rest[:i], rest[i+1:]
	} else {
		uri = rest
	}
	if uri == "" || strings.ContainsAny(uri, " \t") {
		return "", "", "", false
	}
	return method, uri, protocol, true
}

// isToken reports whether s is an RFC 9110 token (what a method must be).
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// timeSources keeps every time variable of a line; the most precise wins.
type timeSources struct {
	msec, iso, local time.Time
}

func (t timeSources) apply(r *AccessRecord) {
	for _, c := range []time.Time{t.msec, t.iso, t.local} {
		if !c.IsZero() {
			r.Time, r.TimeHasZone = c, true
			return
		}
	}
}

// upstreamLists holds the $upstream_* lists of one line until they are
// zipped into attempts.
type upstreamLists struct {
	addr, status, connect, header, response listValue
}

// listValue is one list as logged and its byte offset in the line.
type listValue struct {
	s  string
	at int
}

func (l *upstreamLists) set(kind fieldKind, v string, at int) {
	lv := listValue{v, at}
	switch kind {
	case kindUpstreamAddr:
		l.addr = lv
	case kindUpstreamStatus:
		l.status = lv
	case kindUpstreamConnectTime:
		l.connect = lv
	case kindUpstreamHeaderTime:
		l.header = lv
	default:
		l.response = lv
	}
}

// zip pairs the lists' items by position into attempts, or says which item
// is not what its variable holds.
func (l *upstreamLists) zip() ([]UpstreamAttempt, string) {
	n := max(listLen(l.addr.s), listLen(l.status.s), listLen(l.connect.s), listLen(l.header.s), listLen(l.response.s))
	if n == 0 {
		return nil, ""
	}
	out := make([]UpstreamAttempt, n)
	addr := listCursor{s: l.addr.s}
	for i := 0; addr.next(); i++ {
		out[i].Group = addr.group
		if addr.item != "-" {
			out[i].Addr = addr.item
			out[i].AddrPort, _ = netip.ParseAddrPort(addr.item)
		}
	}
	status := listCursor{s: l.status.s}
	for i := 0; status.next(); i++ {
		out[i].Group = status.group
		if status.item == "-" {
			continue
		}
		n, ok := logline.ParseUint(status.item, 999)
		if !ok {
			return nil, fmt.Sprintf("byte %d: $upstream_status: %q is not a status code", l.status.at, status.item)
		}
		out[i].Status = int(n)
	}
	for _, d := range []struct {
		name string
		list listValue
		set  func(*UpstreamAttempt, time.Duration)
	}{
		{"upstream_connect_time", l.connect, func(a *UpstreamAttempt, d time.Duration) { a.ConnectTime = d }},
		{"upstream_header_time", l.header, func(a *UpstreamAttempt, d time.Duration) { a.HeaderTime = d }},
		{"upstream_response_time", l.response, func(a *UpstreamAttempt, d time.Duration) { a.ResponseTime = d }},
	} {
		c := listCursor{s: d.list.s}
		for i := 0; c.next(); i++ {
			out[i].Group = c.group
			if c.item == "-" {
				continue
			}
			ns, ok := parseDecimalNanos(c.item)
			if !ok {
				return nil, fmt.Sprintf("byte %d: $%s: %q is not a time in seconds", d.list.at, d.name, c.item)
			}
			d.set(&out[i], time.Duration(ns))
		}
	}
	return out, ""
}

// listLen counts the items of "a, b : c".
func listLen(s string) int {
	switch {
	case s == "":
		return 0
	case strings.IndexByte(s, ' ') < 0:
		return 1
	}
	return 1 + strings.Count(s, ", ") + strings.Count(s, " : ")
}

// listCursor walks the items of "a, b : c", counting groups at " : ".
type listCursor struct {
	s        string
	pos      int
	item     string
	group    int
	newGroup bool // the last separator was " : "
}

func (c *listCursor) next() bool {
	if c.s == "" || c.pos > len(c.s) {
		return false
	}
	if c.newGroup {
		c.group++
	}
	rest := c.s[c.pos:]
	end := len(rest)
	sep := 0
	if strings.IndexByte(rest, ' ') >= 0 {
		if i := strings.Index(rest, ", "); i >= 0 {
			end, sep = i, 2
		}
		if i := strings.Index(rest[:end], " : "); i >= 0 {
			end, sep = i, 3
		}
	}
	c.item, c.newGroup = rest[:end], sep == 3
	if sep == 0 {
		c.pos = len(c.s) + 1
	} else {
		c.pos += end + sep
	}
	return true
}
