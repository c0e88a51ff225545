package sockstat

import (
	"strings"
	"time"

	"wiremortem/decoders/logline"
)

// SniffSS scores how much a sample of lines (the first lines of a file,
// say) looks like ss output: the fraction of non-blank lines that are ss
// headers, socket lines or detail lines, or timestamps between them. A
// sample with timestamps only scores 0.
func SniffSS(sample [][]byte) float64 {
	return sniff(sample, func(line string) bool {
		if isSSContinuation(line) || isSSHeader(line) {
			return true
		}
		if _, ok, _ := parseNetstatLine(line); ok {
			return false
		}
		_, ok, problem := parseSSLine(line)
		return ok && problem == ""
	})
}

// SniffNetstat scores how much a sample looks like netstat -an output, as
// SniffSS does for ss.
func SniffNetstat(sample [][]byte) float64 {
	return sniff(sample, func(line string) bool {
		if isNetstatHeader(line) || isNetstatUnixLine(line) {
			return true
		}
		_, ok, problem := parseNetstatLine(line)
		return ok && problem == ""
	})
}

// SniffCounters scores how much a sample looks like netstat -s or nstat
// output, as SniffSS does for ss.
func SniffCounters(sample [][]byte) float64 {
	section := ""
	return sniff(sample, func(line string) bool {
		if line == "#kernel" {
			return true
		}
		if name, ok := netstatSection(line); ok {
			section = name
			return true
		}
		if line[0] == ' ' {
			if strings.HasSuffix(line, ":") {
				return true // a histogram title
			}
			_, ok := parseNetstatStatsLine(line, section)
			return ok
		}
		_, ok := parseNstatLine(line)
		return ok
	})
}

func sniff(sample [][]byte, match func(string) bool) float64 {
	var lines, hits, stamps int
	for _, b := range sample {
		if logline.IsBlank(b) {
			continue
		}
		lines++
		line := string(b)
		if _, _, ok := parseStampLine(line, time.UTC); ok {
			stamps++
			continue
		}
		if match(line) {
			hits++
		}
	}
	if hits == 0 {
		return 0
	}
	return float64(hits+stamps) / float64(lines)
}

// isSSContinuation reports whether line continues an ss socket line: ss
// starts its -i, -m and -e details on a line of their own with a tab, and
// writes each after a space ("\t ts sack cubic wscale:7,7 rto:204"), or
// leaves the line blank. A tab alone is no sign: config files and code
// indent with tabs too (a distribution's nginx.conf scored 0.8 as ss).
func isSSContinuation(line string) bool {
	return line[0] == '\t' && (strings.TrimSpace(line) == "" || line[1] == ' ')
}
