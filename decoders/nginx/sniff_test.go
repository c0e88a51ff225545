package nginx

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
	return lines[:min(len(lines), 50)]
}

func TestSniff(t *testing.T) {
	lab := func(name string) string { return filepath.Join("testdata", name) }
	tests := []struct {
		path             string
		access, errorLog float64
		accessAtLeast    bool
		errorLogAtLeast  bool
	}{
		{path: lab("lab_access_combined.log"), access: 1, errorLog: 0},
		{path: lab("lab_access_text.log"), access: 1, errorLog: 0},
		{path: lab("lab_access_json.log"), access: 1, errorLog: 0},
		{path: lab("lab_error.log"), access: 0, errorLog: 1},
		{path: testenv.Corpus(t, "elastic-beats/filebeat/module/nginx/error/test/error.log"), access: 0, errorLog: 4.0 / 6},
		{path: testenv.Corpus(t, "lnav/test/logfile_access_log.0"), access: 1, errorLog: 0},
		{path: testenv.Corpus(t, "lnav/test/logfile_regexp_access_log.0"), access: 1, errorLog: 0},
		{path: testenv.Corpus(t, "crowdsec-hub/.tests/nginx-http-generic-bf/nginx-http-generic-bf.log"), access: 6.0 / 22, errorLog: 16.0 / 22},
		{path: testenv.Corpus(t, "lnav/test/logfile_strace_log.1"), access: 0, errorLog: 0},
		{path: testenv.Corpus(t, "lnav/test/logfile_syslog_with_access_log.0"), access: 0, errorLog: 0},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.path), func(t *testing.T) {
			sample := sampleOf(t, tt.path)
			if got := SniffAccess(sample); got != tt.access {
				t.Errorf("SniffAccess = %.3f, want %.3f", got, tt.access)
			}
			if got := SniffError(sample); got != tt.errorLog {
				t.Errorf("SniffError = %.3f, want %.3f", got, tt.errorLog)
			}
		})
	}
	if SniffAccess(nil) != 0 || SniffError([][]byte{{}, []byte("  ")}) != 0 {
		t.Error("an empty sample must score 0")
	}
}

// distributionConf is shaped as Linux distributions ship nginx.conf: no
// log_format, short "name value;" statements, includes.
const distributionConf = `user www-data;
worker_processes auto;
pid /run/nginx.pid;
include /etc/nginx/modules-enabled/*.conf;

events {
	worker_connections 768;
	# multi_accept on;
}

http {
	sendfile on;
	tcp_nopush on;
	types_hash_max_size 2048;
	include /etc/nginx/mime.types;
	default_type application/octet-stream;
	ssl_prefer_server_ciphers on;
	access_log /var/log/nginx/access.log;
	gzip on;
	include /etc/nginx/conf.d/*.conf;
	include /etc/nginx/sites-enabled/*;
}
`

// TestSniffConfig: the lab's nginx.conf files (written for a real nginx,
// which ran with them) are configurations; logs, strace output and prose
// are not.
func TestSniffConfig(t *testing.T) {
	confs, _ := filepath.Glob(filepath.Join(testenv.RepoRoot(), "testdata", "captures", "*", "nginx.conf"))
	if len(confs) < 5 {
		t.Fatalf("only %d lab nginx.conf files", len(confs))
	}
	for _, p := range confs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !SniffConfig(string(b)) {
			t.Errorf("%s: not taken for an nginx configuration", p)
		}
	}
	for name, text := range map[string]string{
		"a bare log_format":                       "log_format main '$remote_addr [$time_local] \"$request\" $status';",
		"a minimal server":                        "events {}\nhttp { server { listen 80; } }\n",
		"a distribution's default, no log_format": distributionConf,
	} {
		if !SniffConfig(text) {
			t.Errorf("%s: not taken for an nginx configuration", name)
		}
	}
	for _, p := range []string{filepath.Join("testdata", "lab_access_combined.log"), filepath.Join("testdata", "lab_error.log"), testenv.Corpus(t, "lnav/test/logfile_strace_log.1"), testenv.Corpus(t, "lnav/test/logfile_syslog_with_access_log.0")} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if SniffConfig(string(b)) {
			t.Errorf("%s: taken for an nginx configuration", p)
		}
	}
	for _, text := range []string{"", "hello world", "server {", "user root; # one known directive is not enough"} {
		if SniffConfig(text) {
			t.Errorf("%q: taken for an nginx configuration", text)
		}
	}
}
