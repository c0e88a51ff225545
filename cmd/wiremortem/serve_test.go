package main

import (
	"bufio"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServe runs the command as a person would, opens the printed
// address and stops it with SIGINT. On every address it makes a token,
// prints it as a ?token= link, and refuses requests without it.
func TestServe(t *testing.T) {
	for _, tt := range []struct {
		addr      string
		tokenLink bool
	}{
		{"127.0.0.1:0", false},
		{"0.0.0.0:0", true},
	} {
		t.Run(tt.addr, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "cases")
			out, stdout := io.Pipe()
			var stderr strings.Builder
			exit := make(chan int, 1)
			go func() {
				exit <- run([]string{"serve", "--addr", tt.addr, "--data", data, "-q"}, stdout, &stderr)
				stdout.Close()
			}()
			lines := bufio.NewScanner(out)
			var page string
			for lines.Scan() {
				if link, ok := strings.CutPrefix(lines.Text(), "open "); ok {
					page = link
					break
				}
			}
			go io.Copy(io.Discard, out)
			u, err := url.Parse(page)
			if err != nil || u.Port() == "" {
				t.Fatalf("printed %q (%v); stderr: %s", page, err, stderr.String())
			}
			if got := u.Query().Get("token"); (got != "") != tt.tokenLink || (tt.tokenLink && len(got) < 26) {
				t.Errorf("token in the link: %q", got)
			}
			// Whatever the address, talk to it on loopback only.
			local := "http://127.0.0.1:" + u.Port()
			client := &http.Client{Timeout: 10 * time.Second}
			resp, err := client.Get(local + "/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if want := map[bool]int{false: http.StatusOK, true: http.StatusUnauthorized}[tt.tokenLink]; resp.StatusCode != want {
				t.Errorf("GET / without the link: %d, want %d", resp.StatusCode, want)
			}
			if tt.tokenLink {
				// The link sets the cookie and redirects to the page.
				client.Jar, _ = cookiejar.New(nil)
				resp, err := client.Get(local + "/?" + u.RawQuery)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || resp.Request.URL.RawQuery != "" {
					t.Errorf("the link ended at %s with %d", resp.Request.URL, resp.StatusCode)
				}
			}
			if err := syscall.Kill(syscall.Getpid(), syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			select {
			case code := <-exit:
				if code != exitOK {
					t.Errorf("exit %d after SIGINT: %s", code, stderr.String())
				}
			case <-time.After(30 * time.Second):
				t.Fatal("still serving 30 s after SIGINT")
			}
		})
	}
}

func TestServeUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "extra-argument"},
		{"serve", "--max-upload-file", "12x"},
		{"serve", "--addr", "127.0.0.1:http-not-a-port"},
	} {
		var stderr strings.Builder
		if code := run(args, io.Discard, &stderr); code != exitUsage || !strings.Contains(stderr.String(), "wiremortem serve") {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr.String())
		}
	}
}
