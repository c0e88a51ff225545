package sockstat

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"wiremortem/internal/testenv"
)

func sampleOf(t *testing.T, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(data, []byte("\n"))
	return lines[:min(len(lines), 40)]
}

func TestSniff(t *testing.T) {
	lab := func(name string) string { return filepath.Join("testdata", name) }
	tests := []struct {
		path                  string
		ss, netstat, counters float64
	}{
		{lab("ss_tanoi_watch.txt"), 1, 0, 0},
		{lab("ss_tanoiepm.txt"), 1, 0, 0},
		{lab("ss_state_established.txt"), 1, 0, 0},
		{lab("netstat_antp_watch.txt"), 0, 1, 0},
		{lab("netstat_anto.txt"), 0, 1, 0},
		{lab("netstat_s_watch.txt"), 0, 0, 1},
		{lab("netstat_s_grep_listen.txt"), 0, 0, 1},
		{lab("nstat_az_watch.txt"), 0, 0, 1},
		{testenv.Corpus(t, "lnav/test/logfile_strace_log.1"), 0, 0, 0},
		{testenv.Corpus(t, "lnav/test/logfile_access_log.0"), 0, 0, 0},
		{testenv.Corpus(t, "elastic-beats/filebeat/module/nginx/error/test/error.log"), 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.path), func(t *testing.T) {
			sample := sampleOf(t, tt.path)
			if got := SniffSS(sample); got != tt.ss {
				t.Errorf("SniffSS = %.3f, want %.3f", got, tt.ss)
			}
			if got := SniffNetstat(sample); got != tt.netstat {
				t.Errorf("SniffNetstat = %.3f, want %.3f", got, tt.netstat)
			}
			if got := SniffCounters(sample); got != tt.counters {
				t.Errorf("SniffCounters = %.3f, want %.3f", got, tt.counters)
			}
		})
	}
	if SniffSS([][]byte{[]byte("Sun Nov 22 10:00:00 UTC 2026")}) != 0 {
		t.Error("a timestamp alone must score 0")
	}
	// Text indented with tabs is not ss's detail lines: a distribution's
	// nginx.conf scored 0.8 when any tab counted.
	conf := bytes.Split([]byte("user www-data;\nevents {\n\tworker_connections 768;\n}\nhttp {\n\tsendfile on;\n\ttcp_nopush on;\n\t# server_tokens off;\n\tgzip on;\n}"), []byte("\n"))
	if got := SniffSS(conf); got != 0 {
		t.Errorf("SniffSS of a tab-indented nginx.conf = %.3f, want 0", got)
	}
}
