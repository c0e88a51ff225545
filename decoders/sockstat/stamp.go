package sockstat

import (
	"strings"
	"time"

	"wiremortem/decoders/logline"
)

// Layouts of the timestamp lines watch loops write between snapshots.
var (
	// zonedLayouts carry a numeric offset or "Z": date -R, -I, -Ins (its
	// comma is made a dot first), --rfc-3339. Parse accepts a fraction
	// after the seconds without the layout saying so.
	zonedLayouts = []string{
		time.RFC3339,
		"2006-01-02 15:04:05Z07:00",
		"2006-01-02T15:04:05Z0700",
		time.RFC1123Z,
		"Mon Jan _2 15:04:05 -0700 2006",
	}
	// abbreviatedLayouts carry a zone abbreviation: date in the C and
	// common English locales, with and without AM/PM.
	abbreviatedLayouts = []string{
		time.UnixDate, // date in the C locale: "Sun Nov 22 10:00:00 UTC 2026"
		"Mon Jan _2 03:04:05 PM MST 2006",
		"Mon _2 Jan 15:04:05 MST 2006",
		"Mon _2 Jan 2006 15:04:05 MST",
		"Mon _2 Jan 2006 03:04:05 PM MST",
		time.RFC1123,
	}
	// wallLayouts carry no zone: ctime (watch's header), date +'%F %T'.
	wallLayouts = []string{
		time.ANSIC,
		"2006-01-02 15:04:05",
		"2006-01-02T15:04:05",
	}
)

// parseStampLine reads a line that is only a timestamp, in one of the forms
// `date` (and watch) write, and says whether it carried its zone. Times
// without a zone are read in clock, as are zone abbreviations clock does
// not know (CST means different zones in different places).
func parseStampLine(line string, clock *time.Location) (time.Time, bool, bool) {
	s := strings.TrimSpace(line)
	if rest, ok := strings.CutPrefix(s, "Every "); ok {
		// watch: "Every 1.0s: ss -tan      host: Sun Nov 22 10:00:00 2026".
		if len(rest) < len(time.ANSIC) {
			return time.Time{}, false, false
		}
		t, err := time.ParseInLocation(time.ANSIC, rest[len(rest)-len(time.ANSIC):], clock)
		return t, false, err == nil
	}
	s = strings.Trim(s, "=-#*[] ")
	if len(s) < 9 || len(s) > 64 {
		return time.Time{}, false, false
	}
	if t, ok := parseEpoch(s); ok {
		return t, true, true
	}
	for _, layout := range zonedLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true, true
		}
		// date -Ins writes a comma before the nanoseconds.
		if dotted := strings.Replace(s, ",", ".", 1); dotted != s && s[0] >= '0' && s[0] <= '9' {
			if t, err := time.Parse(layout, dotted); err == nil {
				return t, true, true
			}
		}
	}
	for _, layout := range abbreviatedLayouts {
		t, err := time.ParseInLocation(layout, s, clock)
		if err != nil {
			continue
		}
		if name, _ := t.Zone(); t.Location() == clock || name == "UTC" || name == "GMT" {
			return t, true, true
		}
		// An abbreviation clock does not know: time.Parse made up a zone
		// at offset 0. Read the wall time in clock instead.
		return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), clock), false, true
	}
	for _, layout := range wallLayouts {
		if t, err := time.ParseInLocation(layout, s, clock); err == nil {
			return t, false, true
		}
	}
	return parseCJKDate(s, clock)
}

// parseCJKDate reads date in a Chinese or Japanese locale:
// "2026年 11月 22日 星期日 10:00:00 CST" (older glibc: "10时00分00秒").
// The zone is trusted only as UTC or GMT or when clock knows it.
func parseCJKDate(s string, clock *time.Location) (time.Time, bool, bool) {
	var nums []int
	n, inNumber := 0, false
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			n, inNumber = n*10+int(r-'0'), true
			if n > 9999 {
				return time.Time{}, false, false
			}
			continue
		case inNumber && strings.ContainsRune("年月日时時分秒: ", r):
			nums = append(nums, n)
		case inNumber:
			return time.Time{}, false, false
		}
		n, inNumber = 0, false
	}
	if inNumber {
		nums = append(nums, n)
	}
	if len(nums) != 6 || !strings.Contains(s, "年") || !strings.Contains(s, "日") {
		return time.Time{}, false, false
	}
	year, month, day, hour, minute, sec := nums[0], nums[1], nums[2], nums[3], nums[4], nums[5]
	if month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 60 {
		return time.Time{}, false, false
	}
	loc, zoned := clock, false
	if f := strings.Fields(s); len(f) > 0 {
		switch abbr := f[len(f)-1]; {
		case abbr == "UTC" || abbr == "GMT":
			loc, zoned = time.UTC, true
		case clockKnows(clock, abbr, year, month, day):
			zoned = true
		}
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, 0, loc), zoned, true
}

// clockKnows reports whether clock uses the zone abbreviation on that day.
func clockKnows(clock *time.Location, abbr string, year, month, day int) bool {
	name, _ := time.Date(year, time.Month(month), day, 12, 0, 0, 0, clock).Zone()
	return name == abbr
}

// parseEpoch reads `date +%s` (and +%s.%N) for times from 2001 to 2286.
func parseEpoch(s string) (time.Time, bool) {
	whole, frac, _ := strings.Cut(s, ".")
	if len(whole) != 10 || len(frac) > 9 {
		return time.Time{}, false
	}
	secs, ok := logline.ParseUint(whole, 1<<34)
	if !ok {
		return time.Time{}, false
	}
	var ns int64
	for i := 0; i < 9; i++ {
		ns *= 10
		if i < len(frac) {
			if frac[i] < '0' || frac[i] > '9' {
				return time.Time{}, false
			}
			ns += int64(frac[i] - '0')
		}
	}
	return time.Unix(int64(secs), ns).UTC(), true
}
