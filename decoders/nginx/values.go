package nginx

import (
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"wiremortem/decoders/logline"
)

// The value parsers below run once per field per line, so they scan bytes
// by hand instead of going through time.Parse or fmt.

func parseAddr(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	return a, err == nil
}

func parsePort(s string) (uint16, bool) {
	n, ok := logline.ParseUint(s, 65535)
	return uint16(n), ok
}

func parseCount(s string) (int64, bool) {
	n, ok := logline.ParseUint(s, 1<<63-1)
	return int64(n), ok
}

// parseDecimalNanos parses seconds written as "12", "0.123" or
// "1700000000.123" (nginx's %T.%03M) into nanoseconds, exactly.
func parseDecimalNanos(s string) (int64, bool) {
	whole, frac, _ := strings.Cut(s, ".")
	secs, ok := logline.ParseUint(whole, 1<<33)
	if !ok || len(frac) > 9 {
		return 0, false
	}
	var ns uint64
	for i := 0; i < 9; i++ {
		ns *= 10
		if i < len(frac) {
			c := frac[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			ns += uint64(c - '0')
		}
	}
	return int64(secs)*1e9 + int64(ns), true
}

// zoneCache keeps the fixed zones of the offsets seen, so a log with one
// offset costs one time.FixedZone, not one per line.
type zoneCache struct {
	zones map[int]*time.Location
}

// maxCachedZones bounds the cache against a file of distinct offsets.
const maxCachedZones = 64

func (z *zoneCache) fixed(offsetSecs int) *time.Location {
	if offsetSecs == 0 {
		return time.UTC
	}
	if loc, ok := z.zones[offsetSecs]; ok {
		return loc
	}
	loc := time.FixedZone("", offsetSecs)
	if z.zones == nil {
		z.zones = make(map[int]*time.Location)
	}
	if len(z.zones) < maxCachedZones {
		z.zones[offsetSecs] = loc
	}
	return loc
}

var monthAbbrevs = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

func monthNumber(abbr string) (time.Month, bool) {
	for i, m := range monthAbbrevs {
		if abbr == m {
			return time.Month(i + 1), true
		}
	}
	return 0, false
}

// digits parses s[i:i+n] as a decimal number.
func digits(s string, i, n int) (int, bool) {
	if i+n > len(s) {
		return 0, false
	}
	v := 0
	for _, c := range []byte(s[i : i+n]) {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

// parseTimeLocal parses $time_local: "25/Oct/2016:14:49:34 +0200".
func parseTimeLocal(s string, zones *zoneCache) (time.Time, bool) {
	if len(s) != 26 || s[2] != '/' || s[6] != '/' || s[11] != ':' || s[14] != ':' || s[17] != ':' || s[20] != ' ' {
		return time.Time{}, false
	}
	day, ok1 := digits(s, 0, 2)
	month, ok2 := monthNumber(s[3:6])
	year, ok3 := digits(s, 7, 4)
	hour, ok4 := digits(s, 12, 2)
	minute, ok5 := digits(s, 15, 2)
	sec, ok6 := digits(s, 18, 2)
	offset, ok7 := parseOffset(s[21:], false)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7) || !validClock(month, day, hour, minute, sec) {
		return time.Time{}, false
	}
	return time.Date(year, month, day, hour, minute, sec, 0, zones.fixed(offset)), true
}

// parseTimeISO8601 parses $time_iso8601: "2016-10-25T14:49:34+02:00"
// (a "Z" for UTC is accepted too).
func parseTimeISO8601(s string, zones *zoneCache) (time.Time, bool) {
	if len(s) < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	year, ok1 := digits(s, 0, 4)
	month, ok2 := digits(s, 5, 2)
	day, ok3 := digits(s, 8, 2)
	hour, ok4 := digits(s, 11, 2)
	minute, ok5 := digits(s, 14, 2)
	sec, ok6 := digits(s, 17, 2)
	offset, ok7 := 0, true
	if s[19:] != "Z" {
		offset, ok7 = parseOffset(s[19:], true)
	}
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7) || !validClock(time.Month(month), day, hour, minute, sec) {
		return time.Time{}, false
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, 0, zones.fixed(offset)), true
}

// parseOffset parses "+0200" or, with colon, "+02:00" into seconds east.
func parseOffset(s string, colon bool) (int, bool) {
	want := 5
	if colon {
		want = 6
	}
	if len(s) != want || (s[0] != '+' && s[0] != '-') || (colon && s[3] != ':') {
		return 0, false
	}
	h, ok1 := digits(s, 1, 2)
	m, ok2 := digits(s, len(s)-2, 2)
	if !ok1 || !ok2 || m > 59 {
		return 0, false
	}
	secs := (h*60 + m) * 60
	if s[0] == '-' {
		secs = -secs
	}
	return secs, true
}

func validClock(month time.Month, day, hour, minute, sec int) bool {
	return month >= 1 && month <= 12 && day >= 1 && day <= 31 && hour <= 23 && minute <= 59 && sec <= 60
}

func hexValue(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// unescapeHex undoes nginx's default access-log escaping (\xHH, see
// ngx_http_log_escape). A backslash not followed by xHH stays as written.
func unescapeHex(s string) string {
	i := strings.IndexByte(s, '\\')
	if i < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	b = append(b, s[:i]...)
	for ; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			hi, ok1 := hexValue(s[i+2])
			lo, ok2 := hexValue(s[i+3])
			if ok1 && ok2 {
				b = append(b, hi<<4|lo)
				i += 3
				continue
			}
		}
		b = append(b, s[i])
	}
	return string(b)
}

// unescapeJSON undoes escape=json (ngx_escape_json): \" \\ \/ \b \f \n \r
// \t and \uXXXX. It returns false on a malformed escape.
func unescapeJSON(s string) (string, bool) {
	i := strings.IndexByte(s, '\\')
	if i < 0 {
		return s, true
	}
	b := make([]byte, 0, len(s))
	b = append(b, s[:i]...)
	for ; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			b = append(b, c)
			continue
		}
		if i+1 >= len(s) {
			return "", false
		}
		i++
		switch s[i] {
		case '"', '\\', '/':
			b = append(b, s[i])
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			if i+4 >= len(s) {
				return "", false
			}
			r, err := strconv.ParseUint(s[i+1:i+5], 16, 16)
			if err != nil {
				return "", false
			}
			b = utf8.AppendRune(b, rune(r))
			i += 4
		default:
			return "", false
		}
	}
	return string(b), true
}
