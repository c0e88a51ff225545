package nginx

import (
	"encoding/json"
	"strings"
	"time"

	"wiremortem/decoders/logline"
)

// SniffAccess scores how much a sample of lines (the first lines of a
// file, say) looks like an nginx access log: the fraction of non-blank lines
// that have an access-log time ($time_local in brackets or $time_iso8601)
// and a status code right after a quoted field, or are JSON objects with
// access-log keys (escape=json formats). It needs no log_format, so it also
// scores custom formats; 0 means none, 1 means every line.
func SniffAccess(sample [][]byte) float64 {
	return score(sample, func(line string) bool {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "{") {
			return json.Valid([]byte(t)) && containsAny(t, `"status"`, `"request"`, `"remote_addr"`, `"time_local"`, `"time_iso8601"`, `"msec"`)
		}
		return hasAccessTime(line) && hasStatusAfterQuote(line)
	})
}

// SniffError scores how much a sample looks like an nginx error log: the
// fraction of non-blank lines that start "2006/01/02 15:04:05 [level] pid#tid: ".
func SniffError(sample [][]byte) float64 {
	return score(sample, func(line string) bool {
		rec, _, _ := parseErrorPrefix(line, time.UTC)
		return rec != nil
	})
}

func score(sample [][]byte, match func(string) bool) float64 {
	var lines, hits int
	for _, b := range sample {
		if logline.IsBlank(b) {
			continue
		}
		lines++
		if match(string(b)) {
			hits++
		}
	}
	if lines == 0 {
		return 0
	}
	return float64(hits) / float64(lines)
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func hasAccessTime(line string) bool {
	var zones zoneCache
	for i := 0; i < len(line); i++ {
		switch {
		case line[i] == '[' && i+28 <= len(line) && line[i+27] == ']':
			if _, ok := parseTimeLocal(line[i+1:i+27], &zones); ok {
				return true
			}
		case line[i] == 'T' && i >= 10 && i+15 <= len(line):
			if _, ok := parseTimeISO8601(line[i-10:i+15], &zones); ok {
				return true
			}
		}
	}
	return false
}

// hasStatusAfterQuote finds `" NNN ` (or `" NNN` at the end): the status
// after the quoted request line, as in combined and most custom formats.
func hasStatusAfterQuote(line string) bool {
	for i := 0; ; {
		j := strings.Index(line[i:], `" `)
		if j < 0 {
			return false
		}
		k := i + j + 2
		if _, ok := digits(line, k, 3); ok && (k+3 == len(line) || line[k+3] == ' ') {
			return true
		}
		i = k
	}
}

// configDirectives are statements that open an nginx configuration file
// or sit in its http block; a file whose statements include two of them
// (or a log_format) is taken for one.
var configDirectives = map[string]bool{
	"daemon": true, "events": true, "http": true, "server": true, "upstream": true, "location": true,
	"worker_processes": true, "worker_connections": true, "pid": true, "error_log": true, "access_log": true,
	"include": true, "user": true, "listen": true, "proxy_pass": true, "server_name": true,
}

// SniffConfig reports whether text (a file's first bytes) is an nginx
// configuration: it splits into statements the way nginx reads them, and
// they include a log_format or two well-known directives. Its log_format
// directives (ParseConfigFormats) tell how an access log beside it reads.
func SniffConfig(text string) bool {
	toks, err := configTokens(text, 0)
	if err != nil {
		return false
	}
	known := 0
	atStatementStart := true
	for _, t := range toks {
		if t.punct {
			atStatementStart = true
			continue
		}
		if atStatementStart && !t.quoted {
			if t.text == "log_format" {
				return true
			}
			if configDirectives[t.text] {
				known++
			}
		}
		atStatementStart = false
	}
	return known >= 2
}
