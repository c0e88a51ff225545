// Package strace reads strace output: every call, joined across
// "<unfinished ...>" and "<... resumed>", and the life of every socket file
// descriptor of the traced processes: accepted or connected when and to
// whom, bytes read and written, the peer's FIN (a read returning 0), and
// close() or its absence. Those lives are what proves "the server read the
// request and never wrote" (seed 000) or "never called close() after the
// peer's FIN" (seed 003), and what joins a file descriptor to a TCP
// conversation by its 4-tuple.
package strace

import (
	"strconv"
	"strings"
)

// lineKind is what a line of strace output holds.
type lineKind uint8

const (
	lineCall       lineKind = iota // name(args) = ret
	lineUnfinished                 // name(args <unfinished ...>
	lineResumed                    // <... name resumed>args) = ret
	lineSignal                     // --- SIGPIPE {...} ---
	lineExit                       // +++ exited with 0 +++ / +++ killed by SIGKILL +++
	lineNote                       // strace: Process 123 attached, and the like
)

// timeFormat is how strace wrote the line's timestamp.
type timeFormat uint8

const (
	timeNone     timeFormat = iota
	timeOfDay               // -t, -tt: HH:MM:SS[.micro]
	timeEpoch               // -ttt: seconds since 1970
	timeRelative            // -r: seconds since the previous line
)

func (f timeFormat) String() string {
	return [...]string{"none", "time-of-day", "epoch", "relative"}[f]
}

// rawLine is one line split into its parts, without interpretation of the
// arguments.
type rawLine struct {
	kind lineKind
	pid  int
	// ts is the timestamp text and tsFormat how to read it; seconds is
	// the parsed value (seconds since midnight, since 1970, or since the
	// previous line) with micros precision.
	tsFormat timeFormat
	seconds  int64
	nanos    int64
	name     string
	// args is the argument text: everything between the parentheses for a
	// complete call, up to "<unfinished" for an unfinished one, and after
	// "resumed>" up to the closing parenthesis for a resumed one.
	args string
	// ret is the text after " = ": "5", "-1 EAGAIN (Resource temporarily
	// unavailable)", "? <unavailable>", "0x7f..."; with retOK set when
	// there is one.
	ret   string
	retOK bool
	// dur is the -T duration in nanoseconds, -1 when absent.
	dur  int64
	rest string // signal or exit text
}

// splitLine parses one line of strace output. pidDefault is the pid of a
// per-process file (strace -ff), 0 otherwise.
func splitLine(s string, pidDefault int) (rawLine, string) {
	l := rawLine{pid: pidDefault, dur: -1}
	s = strings.Trim(s, " \t")
	if strings.HasPrefix(s, "[pid ") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return l, "unterminated [pid prefix"
		}
		n, err := strconv.Atoi(strings.TrimSpace(s[5:end]))
		if err != nil {
			return l, "bad pid in [pid prefix"
		}
		l.pid = n
		s = strings.TrimLeft(s[end+1:], " ")
	} else if i := leadingDigits(s); i > 0 && i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		// "1234 " pid column, but not a timestamp ("12:34:56" or
		// "1697048351.000001" have a ':' or '.' after the digits).
		n, _ := strconv.Atoi(s[:i])
		l.pid = n
		s = strings.TrimLeft(s[i:], " \t")
	}
	if strings.HasPrefix(s, "strace: ") {
		l.kind, l.rest = lineNote, s
		return l, ""
	}
	// Timestamp.
	if i := leadingDigits(s); i > 0 && i < len(s) {
		switch {
		case s[i] == ':':
			end := strings.IndexByte(s, ' ')
			if end < 0 {
				return l, "timestamp without a call"
			}
			sec, ns, ok := parseTimeOfDay(s[:end])
			if !ok {
				return l, "bad time of day " + strconv.Quote(s[:end])
			}
			l.tsFormat, l.seconds, l.nanos = timeOfDay, sec, ns
			s = strings.TrimLeft(s[end:], " ")
		case s[i] == '.':
			end := strings.IndexByte(s, ' ')
			if end < 0 {
				return l, "timestamp without a call"
			}
			sec, ns, ok := parseDecimal(s[:end])
			if !ok {
				return l, "bad timestamp " + strconv.Quote(s[:end])
			}
			// Relative times (-r) are small; epoch times (-ttt) are not.
			l.tsFormat = timeEpoch
			if sec < 1_000_000 {
				l.tsFormat = timeRelative
			}
			l.seconds, l.nanos = sec, ns
			s = strings.TrimLeft(s[end:], " ")
		}
	}
	switch {
	case len(s) >= 8 && strings.HasPrefix(s, "--- ") && strings.HasSuffix(s, " ---"):
		l.kind, l.rest = lineSignal, s[4:len(s)-4]
		return l, ""
	case len(s) >= 8 && strings.HasPrefix(s, "+++ ") && strings.HasSuffix(s, " +++"):
		l.kind, l.rest = lineExit, s[4:len(s)-4]
		return l, ""
	case strings.HasPrefix(s, "<... "):
		end := strings.Index(s, " resumed>")
		if end < 5 {
			return l, "\"<...\" without \"resumed>\""
		}
		l.kind, l.name = lineResumed, s[5:end]
		rest := s[end+len(" resumed>"):]
		close := matchClose(rest, 1)
		if close < 0 {
			return l, "resumed call without its closing parenthesis"
		}
		l.args = strings.TrimSpace(rest[:close])
		return l, l.tail(rest[close+1:])
	}
	open := strings.IndexByte(s, '(')
	if open <= 0 || !isName(s[:open]) {
		return l, "not a system call"
	}
	l.name = s[:open]
	rest := s[open+1:]
	if strings.HasSuffix(rest, "<unfinished ...>") {
		l.kind = lineUnfinished
		l.args = strings.TrimRight(strings.TrimSuffix(rest, "<unfinished ...>"), " ,")
		return l, ""
	}
	if i := strings.Index(rest, " <detached ...>"); i >= 0 {
		l.kind = lineUnfinished
		l.args = rest[:i]
		return l, ""
	}
	close := matchClose(rest, 1)
	if close < 0 {
		return l, "call without its closing parenthesis"
	}
	l.kind, l.args = lineCall, rest[:close]
	return l, l.tail(rest[close+1:])
}

// tail parses " = RET [<DUR>]" after a call's closing parenthesis.
func (l *rawLine) tail(s string) string {
	s = strings.TrimLeft(s, " ")
	if !strings.HasPrefix(s, "=") {
		if s == "" {
			// "exit_group(0) = ?" is sometimes cut; a call with no
			// result is still a call.
			return ""
		}
		return "no \" = \" after the arguments"
	}
	s = strings.TrimSpace(s[1:])
	if strings.HasSuffix(s, ">") {
		if i := strings.LastIndex(s, " <"); i >= 0 {
			if sec, ns, ok := parseDecimal(s[i+2 : len(s)-1]); ok {
				l.dur = sec*1e9 + ns
				s = strings.TrimSpace(s[:i])
			}
		}
	}
	l.ret, l.retOK = s, true
	return ""
}

// matchClose returns the index in s of the parenthesis that closes depth
// open parentheses, skipping quoted strings (with escapes) and nested
// brackets, or -1.
func matchClose(s string, depth int) int {
	inString := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			depth--
			if depth == 0 {
				if c != ')' {
					return -1
				}
				return i
			}
		}
	}
	return -1
}

func leadingDigits(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

func isName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '?') {
			return false
		}
	}
	return true
}

// parseTimeOfDay reads "HH:MM:SS" or "HH:MM:SS.ffffff".
func parseTimeOfDay(s string) (sec, ns int64, ok bool) {
	if len(s) < 8 || s[2] != ':' || s[5] != ':' {
		return 0, 0, false
	}
	h, err1 := strconv.Atoi(s[0:2])
	m, err2 := strconv.Atoi(s[3:5])
	secs, frac, ok := parseDecimal(s[6:])
	if err1 != nil || err2 != nil || !ok || h > 23 || m > 59 || secs > 60 {
		return 0, 0, false
	}
	return int64(h*3600+m*60) + secs, frac, true
}

// parseDecimal reads "123" or "123.456789" into seconds and nanoseconds.
func parseDecimal(s string) (sec, ns int64, ok bool) {
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" || len(whole) > 12 || len(frac) > 9 {
		return 0, 0, false
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || w < 0 {
		return 0, 0, false
	}
	var f int64
	for i := 0; i < 9; i++ {
		f *= 10
		if i < len(frac) {
			c := frac[i]
			if c < '0' || c > '9' {
				return 0, 0, false
			}
			f += int64(c - '0')
		}
	}
	return w, f, true
}

// splitArgs splits top-level arguments on commas, respecting strings and
// brackets. It stops after max arguments (the rest stays in the last).
func splitArgs(s string, max int) []string {
	var out []string
	depth, start, inString := 0, 0, false
	for i := 0; i < len(s) && len(out) < max-1; i++ {
		c := s[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, strings.TrimSpace(s[start:i]))
				start = i + 1
			}
		}
	}
	if rest := strings.TrimSpace(s[start:]); rest != "" || len(out) > 0 {
		out = append(out, rest)
	}
	return out
}
