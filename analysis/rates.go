package analysis

import (
	"time"

	"wiremortem/flows"
)

// Rates are counts per time step over the whole analysis: the overview
// chart of the report. Each series has one count per step from Start.
type Rates struct {
	Start  time.Time     `json:"start"`
	Step   time.Duration `json:"step_ns"`
	Series []RateSeries  `json:"series"`
}

// RateSeries is one counted quantity.
type RateSeries struct {
	Name   string  `json:"name"`
	Counts []int64 `json:"counts"`
}

// maxRateSteps caps the overview: ten minutes at one-second steps, wider
// steps for longer captures.
const maxRateSteps = 600

// BuildRates counts, per step over [start, end]: conversations started
// (first packet), conversations ended (closed by FINs or reset; idle and
// capture-end are not ends) and resets (each side's first RST).
func BuildRates(convs []*flows.Conversation, start, end time.Time) Rates {
	if len(convs) == 0 || end.Before(start) {
		return Rates{}
	}
	b := newBuckets(start, end, NiceStep(end.Sub(start), maxRateSteps, time.Second))
	started, ended, resets := b.counts(), b.counts(), b.counts()
	for _, c := range convs {
		b.add(started, c.Start)
		if c.EndReason == "closed" || c.EndReason == "reset" {
			b.add(ended, c.End)
		}
		for _, m := range c.Closing.RSTs {
			if m != nil {
				b.add(resets, m.Time)
			}
		}
	}
	return Rates{Start: b.from, Step: b.step, Series: []RateSeries{
		{Name: "conversations started", Counts: started},
		{Name: "conversations ended", Counts: ended},
		{Name: "resets", Counts: resets},
	}}
}

// niceSteps are the step sizes charts use: round numbers a reader can
// take in at a glance.
var niceSteps = []time.Duration{
	time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond,
	10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
}

// NiceStep returns the smallest round step of at least minStep that cuts
// span into at most maxSteps steps.
func NiceStep(span time.Duration, maxSteps int, minStep time.Duration) time.Duration {
	for _, s := range niceSteps {
		if s >= minStep && span/s < time.Duration(maxSteps) {
			return s
		}
	}
	const day = 24 * time.Hour
	return (span/time.Duration(maxSteps)/day + 1) * day
}

// buckets cuts [from, to] into steps aligned on multiples of step, so
// labels fall on round times.
type buckets struct {
	from time.Time
	step time.Duration
	n    int
}

func newBuckets(from, to time.Time, step time.Duration) buckets {
	from = from.Truncate(step)
	return buckets{from: from, step: step, n: int(to.Sub(from)/step) + 1}
}

func (b buckets) counts() []int64 { return make([]int64, b.n) }

// index returns the step holding t.
func (b buckets) index(t time.Time) (int, bool) {
	if t.Before(b.from) {
		return 0, false
	}
	i := int(t.Sub(b.from) / b.step)
	return i, i < b.n
}

func (b buckets) add(counts []int64, t time.Time) {
	if i, ok := b.index(t); ok {
		counts[i]++
	}
}

// start returns when step i begins.
func (b buckets) start(i int) time.Time { return b.from.Add(time.Duration(i) * b.step) }
