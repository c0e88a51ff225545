package serve

import (
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
)

// TestToken checks that with a token every endpoint, static files
// included, refuses a request without it, and takes it from a Bearer
// header, the cookie, or a ?token= link that sets the cookie and sends
// the browser to the same address without the token.
func TestToken(t *testing.T) {
	const token = "s3cret-token"
	_, ts := start(t, Config{Token: token})
	cookie := tokenCookie + "=" + token
	tests := []struct {
		name, method, path string
		header             []string
		status             int
		location           string
		setsCookie         bool
	}{
		{name: "no token", method: "GET", path: "/", status: http.StatusUnauthorized},
		{name: "no token, static file", method: "GET", path: "/static/serve.js", status: http.StatusUnauthorized},
		{name: "no token, upload", method: "POST", path: "/cases", status: http.StatusUnauthorized},
		{name: "no token, delete", method: "DELETE", path: "/cases/x", status: http.StatusUnauthorized},
		{name: "wrong bearer", method: "GET", path: "/", header: []string{"Authorization", "Bearer s3cret-tokeN"}, status: http.StatusUnauthorized},
		{name: "prefix of the token", method: "GET", path: "/", header: []string{"Authorization", "Bearer s3cret"}, status: http.StatusUnauthorized},
		{name: "wrong cookie", method: "GET", path: "/", header: []string{"Cookie", tokenCookie + "=nope"}, status: http.StatusUnauthorized},
		{name: "wrong link", method: "GET", path: "/?token=nope", status: http.StatusUnauthorized},
		{name: "bearer", method: "GET", path: "/", header: []string{"Authorization", "Bearer " + token}, status: http.StatusOK},
		{name: "cookie", method: "GET", path: "/static/serve.css", header: []string{"Cookie", cookie}, status: http.StatusOK},
		{name: "link", method: "GET", path: "/?token=" + token, status: http.StatusSeeOther, location: "/", setsCookie: true},
		{name: "link keeps the rest of the query", method: "GET", path: "/cases/x?a=1&token=" + url.QueryEscape(token), status: http.StatusSeeOther, location: "/cases/x?a=1", setsCookie: true},
		{name: "link does not authorise a post", method: "POST", path: "/cases?token=" + token, status: http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, ts, tt.method, tt.path, nil, tt.header...)
			if resp.StatusCode != tt.status {
				t.Errorf("%d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if got := resp.Header.Get("Location"); got != tt.location {
				t.Errorf("Location %q, want %q", got, tt.location)
			}
			var set *http.Cookie
			for _, c := range resp.Cookies() {
				if c.Name == tokenCookie {
					set = c
				}
			}
			if tt.setsCookie != (set != nil) {
				t.Fatalf("cookie set: %v", set)
			}
			if set != nil && (set.Value != token || !set.HttpOnly || set.SameSite != http.SameSiteStrictMode || set.Path != "/") {
				t.Errorf("cookie %+v", set)
			}
			if resp.StatusCode == http.StatusUnauthorized && strings.Contains(body, token) {
				t.Errorf("the refusal shows the token")
			}
		})
	}
}

// TestLoopbackOnly checks that a server without a token answers only to
// loopback names: a DNS-rebinding page sends its own name as Host.
func TestLoopbackOnly(t *testing.T) {
	_, ts := start(t, Config{})
	for _, tt := range []struct {
		host   string
		status int
	}{
		{"127.0.0.1:8080", http.StatusOK},
		{"localhost:8080", http.StatusOK},
		{"LOCALHOST", http.StatusOK},
		{"[::1]:8080", http.StatusOK},
		{"127.1.2.3", http.StatusOK},
		{"rebind.attacker.example:8080", http.StatusForbidden},
		{"10.0.0.5:8080", http.StatusForbidden},
		{"localhost.attacker.example", http.StatusForbidden},
		{"127.0.0.1.nip.io:8080", http.StatusForbidden},
	} {
		resp, _ := get(t, ts, "/", "Host", tt.host)
		if resp.StatusCode != tt.status {
			t.Errorf("Host %s: %d, want %d", tt.host, resp.StatusCode, tt.status)
		}
	}
}

func TestServeRefusesOpenAddressWithoutToken(t *testing.T) {
	s, err := New(Config{Data: filepath.Join(t.TempDir(), "cases")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = s.Serve(t.Context(), notLoopback{ln})
	if err == nil || !strings.Contains(err.Error(), "needs a token") {
		t.Errorf("Serve on 0.0.0.0 without a token: %v", err)
	}
}

// notLoopback is a listener that says it listens on every address.
type notLoopback struct{ net.Listener }

func (notLoopback) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4zero, Port: 8080} }

// TestCrossOrigin checks that a page of another site cannot upload,
// delete or analyse again, while the page's own requests (same origin, or
// no browser headers at all) go through.
func TestCrossOrigin(t *testing.T) {
	s, ts := start(t, Config{})
	id := mustUpload(t, ts, fileFrom(t, filepath.Join(seedDir("ws-no-101"), "capture.pcap")))
	settle(t, s, id)
	for _, tt := range []struct {
		name, method, path string
		header             []string
		status             int
	}{
		{"upload from another site", "POST", "/cases", []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"delete from another site", "POST", "/cases/" + id + "/delete", []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"delete from a sibling site", "POST", "/cases/" + id + "/delete", []string{"Sec-Fetch-Site", "same-site"}, http.StatusForbidden},
		{"analyse from an old browser on another site", "POST", "/cases/" + id + "/analyse", []string{"Origin", "http://attacker.example"}, http.StatusForbidden},
		{"API delete from another site", "DELETE", "/cases/" + id, []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"reading is allowed", "GET", "/cases/" + id, []string{"Sec-Fetch-Site", "cross-site"}, http.StatusOK},
		{"the page's own analyse", "POST", "/cases/" + id + "/analyse", []string{"Sec-Fetch-Site", "same-origin", "Content-Type", "application/x-www-form-urlencoded"}, http.StatusSeeOther},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, ts, tt.method, tt.path, nil, tt.header...)
			if resp.StatusCode != tt.status {
				t.Errorf("%d, want %d: %s", resp.StatusCode, tt.status, body)
			}
		})
	}
	if _, ok := s.readCase(id); !ok {
		t.Errorf("the case was deleted")
	}
}

// TestSecurityHeaders checks the policy of every kind of response: serve's
// pages load only their own script and style; reports and downloads open
// sandboxed; nothing is cached or sniffed.
func TestSecurityHeaders(t *testing.T) {
	s, ts := start(t, Config{})
	id := mustUpload(t, ts, fileFrom(t, filepath.Join(seedDir("ws-no-101"), "capture.pcap")))
	settle(t, s, id)
	for _, tt := range []struct {
		path, policy string
		status       int
	}{
		{"/", appPolicy, http.StatusOK},
		{"/cases/" + id, appPolicy, http.StatusOK},
		{"/cases/" + id + "/progress", appPolicy, http.StatusOK},
		{"/static/serve.js", appPolicy, http.StatusOK},
		{"/cases/nope", appPolicy, http.StatusNotFound},
		{"/cases/" + id + "/report", reportPolicy, http.StatusOK},
		{"/cases/" + id + "/report.html", reportPolicy, http.StatusOK},
		{"/cases/" + id + "/report.json", reportPolicy, http.StatusOK},
	} {
		resp, _ := get(t, ts, tt.path)
		h := resp.Header
		if resp.StatusCode != tt.status || h.Get("Content-Security-Policy") != tt.policy || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Cache-Control") != "no-store" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s: %d, headers %v", tt.path, resp.StatusCode, h)
		}
	}
	if !strings.HasPrefix(reportPolicy, "sandbox allow-scripts;") || strings.Contains(reportPolicy, "allow-same-origin") {
		t.Errorf("reports must open in a sandbox without serve's origin: %s", reportPolicy)
	}
}
