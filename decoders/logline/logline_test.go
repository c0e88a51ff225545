package logline

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"wiremortem/evidence"
)

func TestReader(t *testing.T) {
	long := strings.Repeat("L", 40)
	// With a cap of 16, a line of 17 bytes is too long; only 16 are kept.
	input := "a\r\n\n" + strings.Repeat("x", 16) + "\n" + strings.Repeat("y", 17) + "\n" + long + "\nlast"
	type got struct {
		Text    string
		Number  int64
		Offset  int64
		Length  int64
		TooLong bool
	}
	want := []got{
		{"a", 1, 0, 1, false},
		{"", 2, 3, 0, false},
		{strings.Repeat("x", 16), 3, 4, 16, false},
		{strings.Repeat("y", 16), 4, 21, 17, true},
		{strings.Repeat("L", 16), 5, 39, 40, true},
		{"last", 6, 80, 4, false},
	}
	for _, name := range []string{"whole", "one byte at a time"} {
		var src io.Reader = strings.NewReader(input)
		if name != "whole" {
			src = iotest.OneByteReader(src)
		}
		r := NewReader(src, Options{Source: "t.log", MaxLineBytes: 16})
		var lines []got
		for {
			l, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			lines = append(lines, got{string(l.Text), l.Number, l.Offset, l.Length, l.TooLong})
		}
		if len(lines) != len(want) {
			t.Fatalf("%s: %d lines %+v", name, len(lines), lines)
		}
		for i := range want {
			if lines[i] != want[i] {
				t.Errorf("%s: line %d = %+v, want %+v", name, i+1, lines[i], want[i])
			}
		}
	}
}

func TestReaderExcerptCap(t *testing.T) {
	r := NewReader(strings.NewReader(strings.Repeat("z", 3*MaxExcerptBytes)+"\nnext\n"), Options{MaxLineBytes: 2 * MaxExcerptBytes})
	l, err := r.Next()
	if err != nil || !l.TooLong || len(l.Text) != MaxExcerptBytes || l.Length != 3*MaxExcerptBytes {
		t.Fatalf("long line: %v, too long %v, %d bytes kept of %d", err, l.TooLong, len(l.Text), l.Length)
	}
	u := r.Unparsed(l, ReasonTooLong, "x")
	if len(u.Excerpt) != MaxExcerptBytes || u.Ref != (evidence.Ref{Line: 1}) {
		t.Errorf("unparsed %+v", u)
	}
	if l, _ := r.Next(); string(l.Text) != "next" || l.Number != 2 || l.Offset != 3*MaxExcerptBytes+1 {
		t.Errorf("line after the long one: %+v", l)
	}
}

func TestReaderError(t *testing.T) {
	boom := errors.New("disk on fire")
	r := NewReader(io.MultiReader(strings.NewReader("ok\npart"), iotest.ErrReader(boom)), Options{Source: "e.log"})
	if l, err := r.Next(); err != nil || string(l.Text) != "ok" {
		t.Fatalf("first line: %q, %v", l.Text, err)
	}
	_, err := r.Next()
	var re *ReadError
	if !errors.As(err, &re) || !errors.Is(err, boom) || re.Line != 2 || re.Offset != 7 {
		t.Fatalf("err = %v", err)
	}
	if want := "e.log: line 2 (byte 7): read: disk on fire"; err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
}

func TestUnparsedAndTally(t *testing.T) {
	u := Unparsed{Ref: evidence.Ref{Source: "a.log", Line: 3}, Offset: 40, Reason: "bad", Detail: `saw "\x00"`}
	if got, want := u.String(), `a.log:3 (byte 40): bad: saw "\x00"`; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	var tally Tally
	tally.Lines, tally.ParsedLines, tally.BlankLines = 5, 2, 1
	tally.CountUnparsed("bad")
	if tally.Balanced() {
		t.Error("4 of 5 lines accounted for, yet balanced")
	}
	tally.CountUnparsed("worse")
	if !tally.Balanced() || tally.Unparsed() != 2 {
		t.Errorf("tally %+v", tally)
	}
	if (Options{}).Location().String() != "UTC" || (Options{}).LineCap() != DefaultMaxLineBytes {
		t.Error("defaults")
	}
	for _, blank := range []string{"", " \t ", "\t"} {
		if !IsBlank([]byte(blank)) {
			t.Errorf("IsBlank(%q) false", blank)
		}
	}
	if IsBlank([]byte(" x")) {
		t.Error("IsBlank(\" x\")")
	}
}
