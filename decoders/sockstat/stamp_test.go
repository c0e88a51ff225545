package sockstat

import (
	"testing"
	"time"
	_ "time/tzdata" // the zones these tests name, whatever the machine has
)

func TestParseStampLine(t *testing.T) {
	chicago, err1 := time.LoadLocation("America/Chicago")
	shanghai, err2 := time.LoadLocation("Asia/Shanghai")
	if err1 != nil || err2 != nil {
		t.Fatalf("no zone database: %v %v", err1, err2)
	}
	utc := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			panic(err)
		}
		return tm
	}
	tests := []struct {
		line     string
		clock    *time.Location
		want     time.Time
		wantZone bool
	}{
		{"Sun Nov 22 10:00:00 UTC 2026", time.UTC, utc("2026-11-22T10:00:00Z"), true},                          // date, C locale
		{"Sun Nov  2 10:00:00 UTC 2026", time.UTC, utc("2026-11-02T10:00:00Z"), true},                          // space-padded day
		{"Sun Nov 22 10:00:00 AM UTC 2026", time.UTC, utc("2026-11-22T10:00:00Z"), true},                       // en_US
		{"Sun 22 Nov 10:00:00 UTC 2026", time.UTC, utc("2026-11-22T10:00:00Z"), true},                          // en_GB
		{"Sun 22 Nov 2026 10:00:00 PM UTC", time.UTC, utc("2026-11-22T22:00:00Z"), true},                       // newer coreutils
		{"Sun, 22 Nov 2026 11:25:09 +0000", time.UTC, utc("2026-11-22T11:25:09Z"), true},                       // date -R
		{"Sun, 22 Nov 2026 11:25:09 GMT", chicago, utc("2026-11-22T11:25:09Z"), true},                          // RFC 1123
		{"2026-11-22T11:25:08+00:00", time.UTC, utc("2026-11-22T11:25:08Z"), true},                             // date -Iseconds
		{"2026-11-22T19:25:15,800770253+08:00", time.UTC, utc("2026-11-22T11:25:15.800770253Z"), true},         // date -Ins
		{"2026-11-22 11:25:10.710627414+00:00", time.UTC, utc("2026-11-22T11:25:10.710627414Z"), true},         // date --rfc-3339=ns
		{"1795343109", chicago, utc("2026-11-22T10:25:09Z"), true},                                             // date +%s
		{"1795343109.25", time.UTC, utc("2026-11-22T10:25:09.25Z"), true},                                      // date +%s.%N
		{"2026-11-22 10:00:00", chicago, utc("2026-11-22T16:00:00Z"), false},                                   // date '+%F %T'
		{"Sun Nov 22 10:00:00 CST 2026", chicago, utc("2026-11-22T16:00:00Z"), true},                           // an abbreviation the clock knows
		{"Sun Nov 22 10:00:00 XYZ 2026", chicago, utc("2026-11-22T16:00:00Z"), false},                          // one it does not
		{"=== 2026-11-22T10:00:00Z ===", time.UTC, utc("2026-11-22T10:00:00Z"), true},                          // decorated
		{"2026年 11月 22日 星期日 10:00:00 CST", shanghai, utc("2026-11-22T02:00:00Z"), true},                        // zh_CN
		{"2026年11月22日 星期日 10时00分00秒 XYZ", shanghai, utc("2026-11-22T02:00:00Z"), false},                        // older glibc, unknown zone
		{"2026年 11月 22日 日曜日 10:00:00 UTC", chicago, utc("2026-11-22T10:00:00Z"), true},                         // ja_JP
		{"Every 1.0s: ss -tan     lab: Sun Nov 22 10:00:00 2026", chicago, utc("2026-11-22T16:00:00Z"), false}, // watch
		{"Every 2.0s: netstat -s | grep -i listen            Sun Nov 22 10:00:00 2026", time.UTC, utc("2026-11-22T10:00:00Z"), false},
	}
	for _, tt := range tests {
		got, zoned, ok := parseStampLine(tt.line, tt.clock)
		if !ok || !got.Equal(tt.want) || zoned != tt.wantZone {
			t.Errorf("parseStampLine(%q) = %v, zone %v, ok %v; want %v, zone %v", tt.line, got, zoned, ok, tt.want, tt.wantZone)
		}
	}
	for _, line := range []string{"12345", "hello", "tcp 0 0 1.2.3.4:1 5.6.7.8:2 ESTABLISHED", "    20 times the listen queue of a socket overflowed", "Every", "#kernel", "2026-13-40 99:99:99", "2026年 13月 22日 10:00:00", "1年2月3日"} {
		if _, _, ok := parseStampLine(line, time.UTC); ok {
			t.Errorf("parseStampLine(%q) took it for a timestamp", line)
		}
	}
}
