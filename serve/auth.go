package serve

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// tokenCookie carries the token once a ?token= link was opened.
const tokenCookie = "wiremortem_token"

// NewToken returns a random token of 128 bits for --token.
func NewToken() string { return rand.Text() }

// IsLoopback reports whether a listener's address is a loopback one.
func IsLoopback(addr net.Addr) bool {
	if tcp, ok := addr.(*net.TCPAddr); ok {
		return tcp.IP.IsLoopback()
	}
	return false
}

// loopbackHost reports whether a request's Host names this machine's
// loopback: localhost or a loopback address, any port.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// appPolicy is the Content-Security-Policy of serve's own pages: their
// script and style come from the server, nothing else loads, forms post
// only here, and no other site may frame them.
const appPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// guard wraps every handler: security headers, then the Host check (a
// server without a token answers only to loopback names, which defeats
// DNS rebinding: a hostile site that points its name at 127.0.0.1 sends
// its own name as Host), then the token, then the cross-origin check on
// every state-changing request (net/http's CrossOriginProtection: the
// browser's Sec-Fetch-Site, or Origin against Host).
func (s *Server) guard(next http.Handler) http.Handler {
	csrf := http.NewCrossOriginProtection()
	csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.problem(w, r, &requestError{http.StatusForbidden, "cross-origin request refused: a page of another site tried to change a case"})
	}))
	next = csrf.Handler(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", appPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		// Cases hold captures of somebody's traffic: nothing is cached.
		h.Set("Cache-Control", "no-store")
		if s.cfg.Token == "" && !loopbackHost(r.Host) {
			s.problem(w, r, &requestError{http.StatusForbidden, "this server answers only to localhost and loopback addresses; start it with --token to serve other names"})
			return
		}
		if s.cfg.Token != "" && !s.authorised(w, r) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authorised checks the token: an Authorization: Bearer header, the
// cookie, or a ?token= link, which sets the cookie and redirects to the
// same address without the token, so it stays out of the history and of
// any Referer.
func (s *Server) authorised(w http.ResponseWriter, r *http.Request) bool {
	if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && s.tokenMatches(bearer) {
		return true
	}
	if c, err := r.Cookie(tokenCookie); err == nil && s.tokenMatches(c.Value) {
		return true
	}
	q := r.URL.Query()
	if q.Has("token") && (r.Method == http.MethodGet || r.Method == http.MethodHead) && s.tokenMatches(q.Get("token")) {
		http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: s.cfg.Token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		q.Del("token")
		u := *r.URL
		u.RawQuery = q.Encode()
		http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
		return false
	}
	s.problem(w, r, &requestError{http.StatusUnauthorized, "this server needs its token: open the link wiremortem serve printed when it started, or send Authorization: Bearer TOKEN"})
	return false
}

// tokenMatches compares in constant time; hashing both sides first
// keeps even the token's length out of the timing.
func (s *Server) tokenMatches(given string) bool {
	a, b := sha256.Sum256([]byte(given)), sha256.Sum256([]byte(s.cfg.Token))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}
