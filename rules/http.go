package rules

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"wiremortem/decoders/http"
	"wiremortem/flows"
)

// What the HTTP and WebSocket rules share: the decoded upgrades of each
// conversation, and how requests, responses and frames read in evidence.

// upgrade is one WebSocket upgrade handshake and its conversation.
type upgrade struct {
	c *flows.Conversation
	u *http.UpgradeHandshake
}

// wsUpgrades returns every WebSocket upgrade handshake, in conversation
// order, grouped by server.
func wsUpgrades(in *Input) map[netip.AddrPort][]upgrade {
	out := map[netip.AddrPort][]upgrade{}
	for _, c := range in.Conversations {
		h := in.HTTP[c.ID]
		if h == nil {
			continue
		}
		for i := range h.Upgrades {
			if u := &h.Upgrades[i]; u.Protocol == "websocket" {
				out[c.Server] = append(out[c.Server], upgrade{c, u})
			}
		}
	}
	return out
}

// answeredUpgrades returns the upgrades that got a response, and the median time
// they waited for it.
func answeredUpgrades(ups []upgrade) (n int, medianWait time.Duration) {
	var waits []time.Duration
	for _, up := range ups {
		if up.u.Response != nil {
			waits = append(waits, up.u.Waited)
		}
	}
	sort.Slice(waits, func(i, j int) bool { return waits[i] < waits[j] })
	return len(waits), median(waits)
}

// requestText writes a request the way evidence quotes it: "GET
// /ws?try=2", capped, with its Host.
func requestText(m *http.Message) string {
	s := m.Method + " " + CapText(m.URI, 120)
	if host := m.Headers.Get("Host"); host != "" {
		s += " (Host " + CapText(host, 80) + ")"
	}
	return s
}

// statusText writes "400 Bad Request".
func statusText(m *http.Message) string {
	s := fmt.Sprint(m.Status)
	if m.Reason != "" {
		s += " " + CapText(m.Reason, 80)
	}
	return s
}

// CapText cuts a peer's text to n bytes for a sentence (an incident's, a
// timeline mark's). The report escapes it; this only keeps sentences
// short.
func CapText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// frameText describes a frame seen without an upgrade: "88 02 03 e8
// (close 1000, unmasked)".
func frameText(f http.FrameNote) string {
	what := f.Opcode
	if f.Opcode == "close" && f.CloseCode != 0 {
		what += fmt.Sprintf(" %d", f.CloseCode)
	}
	if !f.Masked {
		what += ", unmasked"
	}
	return f.Hex + " (" + what + ")"
}

// closeCodeNames are RFC 6455 section 7.4.1's status codes and the ones
// registered with IANA since.
var closeCodeNames = map[int]string{
	1000: "normal closure",
	1001: "going away",
	1002: "protocol error",
	1003: "unsupported data",
	1005: "no status",
	1006: "abnormal closure",
	1007: "invalid payload data",
	1008: "policy violation",
	1009: "message too big",
	1010: "mandatory extension",
	1011: "internal error",
	1012: "service restart",
	1013: "try again later",
	1014: "bad gateway",
	1015: "TLS handshake",
}

// closeCodeText writes "1011 (internal error)".
func closeCodeText(code int) string {
	if name := closeCodeNames[code]; name != "" {
		return fmt.Sprintf("%d (%s)", code, name)
	}
	switch {
	case code >= 3000 && code < 4000:
		return fmt.Sprintf("%d (registered by a library or framework)", code)
	case code >= 4000 && code < 5000:
		return fmt.Sprintf("%d (private to the application)", code)
	}
	return fmt.Sprint(code)
}

// shellQuote quotes text from a capture for a command line in Next: a
// URI is the peer's, and a pasted command must not run any of it.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
