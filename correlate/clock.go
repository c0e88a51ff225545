// Package correlate puts every source on the capture's clock and joins log
// events to the TCP conversations they describe: an strace file descriptor
// or an nginx connection to a 4-tuple. That join is what no other tool
// does, and what each seed incident's author had to do by hand.
package correlate

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ParseZone reads a time zone given as an IANA name ("Asia/Shanghai"),
// "UTC", "Local", or a fixed offset ("+08:00", "-0530", "UTC+8").
func ParseZone(s string) (*time.Location, error) {
	switch s {
	case "", "UTC", "utc", "Z":
		return time.UTC, nil
	case "Local", "local":
		return time.Local, nil
	}
	off := strings.TrimPrefix(strings.TrimPrefix(s, "UTC"), "GMT")
	if len(off) > 1 && (off[0] == '+' || off[0] == '-') {
		sign := 1
		if off[0] == '-' {
			sign = -1
		}
		digits := strings.ReplaceAll(off[1:], ":", "")
		var h, m int
		var err error
		switch len(digits) {
		case 1, 2:
			h, err = strconv.Atoi(digits)
		case 4:
			h, err = strconv.Atoi(digits[:2])
			if err == nil {
				m, err = strconv.Atoi(digits[2:])
			}
		default:
			err = fmt.Errorf("bad length")
		}
		if err != nil || h > 14 || m > 59 {
			return nil, fmt.Errorf("time zone %q: want an IANA name (Asia/Shanghai) or an offset like +08:00", s)
		}
		secs := sign * (h*3600 + m*60)
		return time.FixedZone(s, secs), nil
	}
	loc, err := time.LoadLocation(s)
	if err != nil {
		return nil, fmt.Errorf("time zone %q: %v", s, err)
	}
	return loc, nil
}

// SplitSourceSpec splits "SOURCE=VALUE" (a per-source setting) from a bare
// "VALUE" (a default for every source). SOURCE is a file path or base name,
// or a kind (nginx-error, strace, ...).
func SplitSourceSpec(spec string) (source, value string) {
	if i := strings.LastIndex(spec, "="); i >= 0 {
		return spec[:i], spec[i+1:]
	}
	return "", spec
}

// Bound says how a skew sample relates to the true offset between a log's
// clock and the capture's: offset = capture time - log time, the amount to
// add to log times.
type Bound int

const (
	// LowerBound: the log event happened after the packet (accept()
	// returns after the handshake's last ACK arrived; nginx writes its
	// access line after the response left), so the true offset is at
	// least this sample.
	LowerBound Bound = iota
	// UpperBound: the log event happened before the packet (connect() is
	// entered before the SYN leaves; write() before the data is sent), so
	// the true offset is at most this sample.
	UpperBound
)

// SkewSample is one pairing of a log event with the packet it caused or
// followed.
type SkewSample struct {
	Capture, Log time.Time
	Bound        Bound
}

// SkewEstimate is the offset to add to a source's times to put them on the
// capture's clock, and how sure we are.
type SkewEstimate struct {
	Offset time.Duration `json:"offset_ns"`
	// Matches is the number of log events paired with packets.
	Matches int `json:"matches"`
	// Spread is how far the samples near the estimate scatter, or the
	// log's time resolution when that is coarser: the estimate is good to
	// about this much.
	Spread time.Duration `json:"spread_ns"`
	// Resolution is how finely the log writes its times (1 s for nginx's
	// $time_local and error log, 1 µs for strace -tt), when coarser than
	// a microsecond: an offset smaller than it cannot be told from the
	// rounding.
	Resolution time.Duration `json:"resolution_ns,omitempty"`
}

// TimeResolution returns how finely times are written: 1 s when every one
// is a whole second, 1 ms when whole milliseconds, 1 µs when whole
// microseconds, 0 when finer or when there is none.
func TimeResolution(times []time.Time) time.Duration {
	if len(times) == 0 {
		return 0
	}
	for _, unit := range []time.Duration{time.Second, time.Millisecond, time.Microsecond} {
		all := true
		for _, t := range times {
			if t.Nanosecond()%int(unit) != 0 {
				all = false
				break
			}
		}
		if all {
			return unit
		}
	}
	return 0
}

// coarseResolution is TimeResolution when coarser than a microsecond (a
// SkewEstimate's Resolution), 0 otherwise.
func coarseResolution(times []time.Time) time.Duration {
	if r := TimeResolution(times); r > time.Microsecond {
		return r
	}
	return 0
}

// EstimateSkew estimates a source's clock offset from pairings. Samples of
// each bound cluster on one side of the true offset, at a distance of the
// scheduling delay between packet and system call (microseconds on an idle
// host, more under load), with stray pairings further out; a high quantile
// of lower bounds and a low quantile of upper bounds are robust to both.
func EstimateSkew(samples []SkewSample) (SkewEstimate, bool) {
	var lower, upper []time.Duration
	for _, s := range samples {
		d := s.Capture.Sub(s.Log)
		if s.Bound == LowerBound {
			lower = append(lower, d)
		} else {
			upper = append(upper, d)
		}
	}
	if len(lower)+len(upper) == 0 {
		return SkewEstimate{}, false
	}
	sort.Slice(lower, func(i, j int) bool { return lower[i] < lower[j] })
	sort.Slice(upper, func(i, j int) bool { return upper[i] < upper[j] })
	est := SkewEstimate{Matches: len(samples)}
	logTimes := make([]time.Time, len(samples))
	for i, x := range samples {
		logTimes[i] = x.Log
	}
	est.Resolution = coarseResolution(logTimes)

	switch {
	case len(lower) > 0 && len(upper) > 0:
		lo, hi := quantile(lower, 0.9), quantile(upper, 0.1)
		est.Offset = lo + (hi-lo)/2
		est.Spread = absDur(hi-lo) / 2
	case len(lower) > 0:
		est.Offset = quantile(lower, 0.9)
		est.Spread = est.Offset - quantile(lower, 0.5)
	default:
		est.Offset = quantile(upper, 0.1)
		est.Spread = quantile(upper, 0.5) - est.Offset
	}
	est.Spread = max(est.Spread, est.Resolution)
	return est, true
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(q * float64(len(sorted)-1))
	return sorted[i]
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// DescribeOffset reads an estimated offset (what was added to a log's
// times, read as local time in zone read, to put them on the capture's
// clock) as a zone and a clock error: -8h0m3.2s on a log read as UTC is
// a log written in UTC+08:00 by a clock 3.2 s fast. Zones are whole
// quarter hours; the rest is the clocks' disagreement. at is when the
// zone's offset is taken (a zone's offset changes with summer time);
// given says the zone came from --tz, so a whole-hour offset means --tz
// named the wrong zone, not that it is missing. resolution is how finely
// the log writes its times: a clock error below it is not claimed.
func DescribeOffset(applied, resolution time.Duration, read *time.Location, at time.Time, given bool) string {
	const quarter = 15 * time.Minute
	residual := (-applied).Round(quarter)
	ahead := -applied - residual
	var parts []string
	if residual != 0 {
		_, readOffset := at.In(read).Zone()
		written := time.Duration(readOffset)*time.Second + residual
		if given {
			parts = append(parts, fmt.Sprintf("its times read as local time in a UTC%s zone, not in %s (UTC%s then) as --tz says", zoneOffset(written), read, zoneOffset(time.Duration(readOffset)*time.Second)))
		} else {
			parts = append(parts, fmt.Sprintf("its times read as local time in a UTC%s zone (pass --tz to say which)", zoneOffset(written)))
		}
	}
	coarse := ""
	if resolution > time.Millisecond {
		coarse = fmt.Sprintf(" (its times are written to the %s)", resolutionName(resolution))
	}
	switch {
	case resolution > time.Millisecond && absDur(ahead) < resolution:
		parts = append(parts, fmt.Sprintf("its clock agreed with the capture's as far as its times tell: they are written to the %s", resolutionName(resolution)))
	case ahead > time.Millisecond:
		parts = append(parts, fmt.Sprintf("its clock ran %v ahead of the capture's%s", ahead.Round(time.Millisecond), coarse))
	case ahead < -time.Millisecond:
		parts = append(parts, fmt.Sprintf("its clock ran %v behind the capture's%s", (-ahead).Round(time.Millisecond), coarse))
	default:
		parts = append(parts, "its clock agreed with the capture's to the millisecond")
	}
	return strings.Join(parts, "; ")
}

// resolutionName names a time resolution: "second", "millisecond".
func resolutionName(d time.Duration) string {
	switch d {
	case time.Second:
		return "second"
	case time.Millisecond:
		return "millisecond"
	}
	return d.String()
}

// zoneOffset writes an offset from UTC as +08:00 or -05:30.
func zoneOffset(d time.Duration) string {
	sign := "+"
	if d < 0 {
		sign, d = "-", -d
	}
	return fmt.Sprintf("%s%02d:%02d", sign, int(d.Hours()), int(d.Minutes())%60)
}

// ClockKnown reports whether a joined source's times are on the capture's
// clock: its offset was given, or estimated from pairings with packets, or
// the record itself carried its zone (hasZone). A time of day with no zone
// and nothing to pair it with may be hours off. A source Join did not
// settle (records built by hand) is taken as it is.
func (j *Joined) ClockKnown(source string, hasZone bool) bool {
	if hasZone || j == nil {
		return true
	}
	c, ok := j.Clocks[source]
	return !ok || c.Given || c.Estimate != nil
}
