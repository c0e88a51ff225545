// Package logline is what every text-log decoder shares: a line reader with a
// length cap that keeps going after an over-long line, the record of a line
// that could not be parsed, and the tally that proves no line was lost.
//
// The decoders (nginx, sockstat, strace) read files of any size in bounded
// memory: one line at a time, each line at most Options.MaxLineBytes long.
// A longer line is not an error that stops the read (bufio.Scanner's
// ErrTooLong would): it is counted, its first bytes are kept as an excerpt,
// and reading resumes at the next line.
package logline

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"time"

	"wiremortem/evidence"
)

// DefaultMaxLineBytes is the line-length cap when Options.MaxLineBytes is 0.
// nginx itself cuts error-log lines at 2048 bytes (NGX_MAX_ERROR_STR), and
// access-log lines with long URIs and cookies rarely pass a few KiB.
const DefaultMaxLineBytes = 64 << 10

// MaxExcerptBytes caps the copy of an unparsed line kept as an example.
const MaxExcerptBytes = 512

// ReasonTooLong is the Unparsed reason for a line longer than the cap.
const ReasonTooLong = "too long"

// Options says where lines come from and how to read them.
type Options struct {
	// Source names the file in evidence references and errors.
	Source string
	// Clock is the zone of times written without one (nginx's error log,
	// `date +%F\ %T`, watch headers). nil means UTC.
	Clock *time.Location
	// MaxLineBytes caps one line; 0 means DefaultMaxLineBytes.
	MaxLineBytes int
}

// Location returns the zone for zone-less times: Clock, or UTC.
func (o Options) Location() *time.Location {
	if o.Clock == nil {
		return time.UTC
	}
	return o.Clock
}

// LineCap returns the effective line-length cap.
func (o Options) LineCap() int {
	if o.MaxLineBytes <= 0 {
		return DefaultMaxLineBytes
	}
	return o.MaxLineBytes
}

// Line is one line of input.
type Line struct {
	// Text is the line without its "\n" or "\r\n". For a TooLong line it
	// holds only its first bytes, at most MaxExcerptBytes and the cap. It
	// is valid until the next call to Next.
	Text []byte
	// Number is the 1-based line number.
	Number int64
	// Offset is the byte offset of the line's first byte in the input.
	Offset int64
	// Length is the length of the whole line in bytes, without terminator.
	Length int64
	// TooLong is set when Length is over the cap.
	TooLong bool
}

// Reader reads lines with a length cap.
type Reader struct {
	br      *bufio.Reader
	source  string
	max     int
	number  int64
	offset  int64
	excerpt []byte
}

// NewReader returns a Reader over r.
func NewReader(r io.Reader, opts Options) *Reader {
	max := opts.LineCap()
	// Room for the longest allowed line plus "\r\n", so that a line of
	// exactly max bytes comes back whole from one ReadSlice.
	return &Reader{br: bufio.NewReaderSize(r, max+2), source: opts.Source, max: max}
}

// Next returns the next line, io.EOF after the last one, or a *ReadError.
func (r *Reader) Next() (Line, error) {
	start := r.offset
	chunk, err := r.br.ReadSlice('\n')
	switch {
	case err == nil || (err == io.EOF && len(chunk) > 0):
		r.offset += int64(len(chunk))
		r.number++
		text := trimEOL(chunk)
		line := Line{Text: text, Number: r.number, Offset: start, Length: int64(len(text))}
		if len(text) > r.max {
			line.TooLong = true
			line.Text = text[:min(MaxExcerptBytes, r.max)]
		}
		return line, nil
	case err == io.EOF:
		return Line{}, io.EOF
	case errors.Is(err, bufio.ErrBufferFull):
		r.excerpt = append(r.excerpt[:0], chunk[:min(len(chunk), MaxExcerptBytes, r.max)]...)
		total := int64(len(chunk))
		for errors.Is(err, bufio.ErrBufferFull) {
			chunk, err = r.br.ReadSlice('\n')
			total += int64(len(chunk))
		}
		if err != nil && err != io.EOF {
			return Line{}, &ReadError{Source: r.source, Line: r.number + 1, Offset: start + total, Err: err}
		}
		r.offset += total
		r.number++
		length := total - int64(len(chunk)-len(trimEOL(chunk)))
		return Line{Text: r.excerpt, Number: r.number, Offset: start, Length: length, TooLong: true}, nil
	default:
		return Line{}, &ReadError{Source: r.source, Line: r.number + 1, Offset: start + int64(len(chunk)), Err: err}
	}
}

// Cap returns the line-length cap.
func (r *Reader) Cap() int { return r.max }

// Ref returns the evidence reference of a line.
func (r *Reader) Ref(l Line) evidence.Ref {
	return evidence.Ref{Source: r.source, Line: l.Number}
}

// Unparsed builds the record of a line that yields no record. reason is a
// short fixed category (it keys the tally); detail says what exactly, with
// any bytes from the line quoted.
func (r *Reader) Unparsed(l Line, reason, detail string) Unparsed {
	return Unparsed{
		Ref:     r.Ref(l),
		Offset:  l.Offset,
		Reason:  reason,
		Detail:  detail,
		Excerpt: string(l.Text[:min(len(l.Text), MaxExcerptBytes)]),
		Length:  l.Length,
	}
}

func trimEOL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}

// ParseUint parses decimal digits (no sign, no blanks) up to limit. The
// decoders parse every number of every line with it, without allocating.
func ParseUint(s string, limit uint64) (uint64, bool) {
	if s == "" || len(s) > 20 {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (limit-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// IsBlank reports whether a line holds only spaces and tabs.
func IsBlank(text []byte) bool {
	for _, c := range text {
		if c != ' ' && c != '\t' {
			return false
		}
	}
	return true
}

// Unparsed is a line that no record could be made of, kept so that nothing
// is lost silently.
type Unparsed struct {
	// Ref is the file and line.
	Ref evidence.Ref `json:"ref"`
	// Offset is the byte offset of the line in the file.
	Offset int64 `json:"offset"`
	// Reason is a short fixed category such as "too long"; the tally counts
	// by it.
	Reason string `json:"reason"`
	// Detail says what exactly did not fit; bytes from the line are quoted.
	Detail string `json:"detail,omitempty"`
	// Excerpt is the first MaxExcerptBytes bytes of the line, as read.
	Excerpt string `json:"excerpt"`
	// Length is the length of the whole line in bytes.
	Length int64 `json:"length"`
}

// String cites the line the way an error message would.
func (u Unparsed) String() string {
	s := fmt.Sprintf("%s (byte %d): %s", u.Ref, u.Offset, u.Reason)
	if u.Detail != "" {
		s += ": " + u.Detail
	}
	return s
}

// Tally accounts for every line read: Lines == ParsedLines + BlankLines +
// the sum of UnparsedLines.
type Tally struct {
	// Lines is the number of lines read.
	Lines int64 `json:"lines"`
	// Records is the number of records made (a record may span lines).
	Records int64 `json:"records"`
	// ParsedLines is the number of lines that went into a record.
	ParsedLines int64 `json:"parsed_lines"`
	// BlankLines is the number of empty or whitespace-only lines.
	BlankLines int64 `json:"blank_lines"`
	// UnparsedLines counts the other lines by Unparsed.Reason.
	UnparsedLines map[string]int64 `json:"unparsed_lines,omitempty"`
}

// CountUnparsed counts one unparsed line under reason.
func (t *Tally) CountUnparsed(reason string) {
	if t.UnparsedLines == nil {
		t.UnparsedLines = make(map[string]int64)
	}
	t.UnparsedLines[reason]++
}

// Unparsed returns the number of unparsed lines over all reasons.
func (t Tally) Unparsed() int64 {
	var n int64
	for _, c := range t.UnparsedLines {
		n += c
	}
	return n
}

// Balanced reports whether every line read is accounted for exactly once.
func (t Tally) Balanced() bool {
	return t.Lines == t.ParsedLines+t.BlankLines+t.Unparsed()
}

// ReadError is an I/O error while reading a log, with where it happened.
type ReadError struct {
	// Source is the file being read.
	Source string
	// Line is the number of the line being read.
	Line int64
	// Offset is the byte offset reached.
	Offset int64
	// Err is the underlying error.
	Err error
}

func (e *ReadError) Error() string {
	return fmt.Sprintf("%s: line %d (byte %d): read: %v", e.Source, e.Line, e.Offset, e.Err)
}

func (e *ReadError) Unwrap() error { return e.Err }
