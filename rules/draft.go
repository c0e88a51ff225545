package rules

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"wiremortem/evidence"
	"wiremortem/flows"
)

// draft builds one incident: rules cite evidence once and point causes at
// it by index.
type draft struct {
	Incident
}

func newDraft(sev Severity, confidence string) *draft {
	return &draft{Incident{Severity: sev, Confidence: confidence}}
}

// cite adds an evidence item and returns its index for causes; it also
// widens the incident's time span.
func (d *draft) cite(at evidence.Stamp, format string, args ...any) int {
	// The document's times are UTC whatever zone a log wrote.
	d.Evidence = append(d.Evidence, evidence.Item{Ref: at.Ref, Time: at.Time.UTC()})
	d.texts = append(d.texts, text{format, args})
	span(&d.Start, &d.End, at.Time)
	return len(d.Evidence) - 1
}

// keptAtMost returns how many of items, in time order (at), an incident
// can keep as evidence when it cites them all: the cap keeps max items,
// those causes cite first, then the earliest, so an item past the first
// max (and past those that tie with the last of them) would never be
// kept. A rule cites that many and counts the rest as omitted, with the
// same result as citing all: on a SYN storm, citing each of a million
// attempts was a fifth of the analysis. max 0 (no cap known) and items
// out of order keep them all.
func keptAtMost[T any](items []T, max int, at func(T) time.Time) int {
	if max <= 0 || len(items) <= max {
		return len(items)
	}
	for i := 1; i < len(items); i++ {
		if at(items[i]).Before(at(items[i-1])) {
			return len(items)
		}
	}
	n := max
	for n < len(items) && at(items[n]).Equal(at(items[max-1])) {
		n++
	}
	return n
}

// citeIf cites a stamp that may be missing; it returns -1 (cited by no
// cause) when at is nil.
func (d *draft) citeIf(at *evidence.Stamp, format string, args ...any) int {
	if at == nil {
		return -1
	}
	return d.cite(*at, format, args...)
}

// cause adds the next most likely cause, with the evidence it rests on.
func (d *draft) cause(text string, evidence ...int) {
	var refs []int
	for _, i := range evidence {
		if i >= 0 {
			refs = append(refs, i)
		}
	}
	d.Causes = append(d.Causes, Cause{Text: text, Evidence: refs})
}

// next adds steps to check or change.
func (d *draft) next(steps ...string) { d.Next = append(d.Next, steps...) }

// summary sets the one-sentence summary.
func (d *draft) summary(format string, args ...any) { d.Summary = fmt.Sprintf(format, args...) }

// flow lists a conversation as affected and widens the time span to it.
func (d *draft) flow(c *flows.Conversation) {
	d.Flows = append(d.Flows, Flow{Conversation: c.ID, conv: c})
	span(&d.Start, &d.End, c.Start)
	span(&d.Start, &d.End, c.End)
}

func (d *draft) done() Incident { return d.Incident }

// Words: how numbers read in summaries ("3 SYNs over 7.0 s", "108,528
// bytes").

// plural writes "1 SYN", "3 SYNs".
func plural[N int | int64](n N, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.FormatInt(int64(n), 10) + " " + noun + "s"
}

// seconds writes a duration for a sentence: "850 µs", "300 ms", "2.9 s",
// "62.3 s", "900 s".
func seconds(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return strconv.FormatInt(d.Microseconds(), 10) + " µs"
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + " ms"
	case d < 100*time.Second:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s"
	}
	return strconv.FormatInt(int64(math.Round(d.Seconds())), 10) + " s"
}

// secondsRange writes "59.8 s to 60.2 s", or one value when both read
// the same.
func secondsRange(lo, hi time.Duration) string {
	if seconds(lo) == seconds(hi) {
		return seconds(lo)
	}
	return seconds(lo) + " to " + seconds(hi)
}

// bytesText writes "1 byte", "108,528 bytes".
func bytesText(n int64) string {
	if n == 1 {
		return "1 byte"
	}
	return Thousands(n) + " bytes"
}

// Thousands writes n with separators, as incidents write numbers:
// 12,345. The report and the terminal write them the same way.
func Thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	if n < 0 {
		return "-" + Thousands(-n)
	}
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// endpointOf returns side's address in c, written the way incidents write
// endpoints ("10.0.0.5:46407", "[::1]:443").
func endpointOf(c *flows.Conversation, side flows.Side) string { return c.Endpoint(side).String() }

// who writes "client 10.0.0.5:46407" or "server 10.0.0.9:80".
func who(c *flows.Conversation, side flows.Side) string {
	return side.String() + " " + endpointOf(c, side)
}

// portOf returns the port of an endpoint as text, for commands in Next.
func portOf(a netip.AddrPort) string { return strconv.Itoa(int(a.Port())) }

// median of sorted durations.
func median(sorted []time.Duration) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[len(sorted)/2]
}
