package sockstat

import (
	"sort"
	"strings"
	"time"

	"wiremortem/evidence"
)

// Names of the counters the rules read, as nstat prints them (the section
// of /proc/net/snmp or /proc/net/netstat followed by the field).
const (
	// CounterListenOverflows counts connections that completed the
	// handshake while the listener's accept queue was full
	// (tcp_check_req / tcp_v4_syn_recv_sock; netstat: "times the listen
	// queue of a socket overflowed").
	CounterListenOverflows = "TcpExtListenOverflows"
	// CounterListenDrops counts SYNs and handshakes dropped at a listener,
	// overflows included (netstat: "SYNs to LISTEN sockets dropped", in old
	// versions "ignored").
	CounterListenDrops = "TcpExtListenDrops"
	// CounterSynRetrans counts SYN retransmissions (connects not answered).
	CounterSynRetrans = "TcpExtTCPSynRetrans"
	// CounterEstabResets counts resets received in ESTABLISHED or
	// CLOSE_WAIT ("connection resets received").
	CounterEstabResets = "TcpEstabResets"
	// CounterOutRsts counts resets sent ("resets sent").
	CounterOutRsts = "TcpOutRsts"
	// CounterRetransSegs counts segments retransmitted.
	CounterRetransSegs = "TcpRetransSegs"
	// CounterTimeouts counts retransmission timeouts ("other TCP timeouts").
	CounterTimeouts = "TcpExtTCPTimeouts"
	// CounterAbortOnTimeout counts connections killed after too many
	// retransmissions or probes ("connections aborted due to timeout").
	CounterAbortOnTimeout = "TcpExtTCPAbortOnTimeout"
	// CounterToZeroWindowAdv counts windows advertised as zero after being
	// open: this host's receiver stopped reading.
	CounterToZeroWindowAdv = "TcpExtTCPToZeroWindowAdv"
)

// netstatProse maps the prose of `netstat -s` (net-tools statistics.c),
// with its number written as N, to the counter's nstat name: the Ip, Tcp
// and TcpExt counters whose prose is unique (Udp and Udp6 share theirs).
// Other prose lines keep their text as name.
var netstatProse = map[string]string{
	"N total packets received":                                             "IpInReceives",
	"N forwarded":                                                          "IpForwDatagrams",
	"N incoming packets discarded":                                         "IpInDiscards",
	"N incoming packets delivered":                                         "IpInDelivers",
	"N requests sent out":                                                  "IpOutRequests",
	"N outgoing packets dropped":                                           "IpOutDiscards",
	"N dropped because of missing route":                                   "IpOutNoRoutes",
	"N active connection openings":                                         "TcpActiveOpens",
	"N active connections openings":                                        "TcpActiveOpens",
	"N passive connection openings":                                        "TcpPassiveOpens",
	"N passive connections openings":                                       "TcpPassiveOpens",
	"N failed connection attempts":                                         "TcpAttemptFails",
	"N connection resets received":                                         "TcpEstabResets",
	"N connections established":                                            "TcpCurrEstab",
	"N segments received":                                                  "TcpInSegs",
	"N segments sent out":                                                  "TcpOutSegs",
	"N segments send out":                                                  "TcpOutSegs",
	"N segments retransmitted":                                             "TcpRetransSegs",
	"N segments retransmited":                                              "TcpRetransSegs",
	"N bad segments received":                                              "TcpInErrs",
	"N bad segments received.":                                             "TcpInErrs",
	"N resets sent":                                                        "TcpOutRsts",
	"N times the listen queue of a socket overflowed":                      "TcpExtListenOverflows",
	"N SYNs to LISTEN sockets dropped":                                     "TcpExtListenDrops",
	"N SYNs to LISTEN sockets ignored":                                     "TcpExtListenDrops",
	"N SYN cookies sent":                                                   "TcpExtSyncookiesSent",
	"N SYN cookies received":                                               "TcpExtSyncookiesRecv",
	"N invalid SYN cookies received":                                       "TcpExtSyncookiesFailed",
	"N resets received for embryonic SYN_RECV sockets":                     "TcpExtEmbryonicRsts",
	"N TCP sockets finished time wait in fast timer":                       "TcpExtTW",
	"N TCP sockets finished time wait in slow timer":                       "TcpExtTWKilled",
	"N other TCP timeouts":                                                 "TcpExtTCPTimeouts",
	"N connections reset due to unexpected data":                           "TcpExtTCPAbortOnData",
	"N connections reset due to early user close":                          "TcpExtTCPAbortOnClose",
	"N connections aborted due to memory pressure":                         "TcpExtTCPAbortOnMemory",
	"N connections aborted due to timeout":                                 "TcpExtTCPAbortOnTimeout",
	"N connections aborted after user close in linger timeout":             "TcpExtTCPAbortOnLinger",
	"N fast retransmits":                                                   "TcpExtTCPFastRetrans",
	"N retransmits in slow start":                                          "TcpExtTCPSlowStartRetrans",
	"N retransmits lost":                                                   "TcpExtTCPLostRetransmit",
	"N packets pruned from receive queue because of socket buffer overrun": "TcpExtPruneCalled",
	"N packets pruned from receive queue":                                  "TcpExtRcvPruned",
	"N packets collapsed in receive queue due to low socket buffer":        "TcpExtTCPRcvCollapsed",
	"N delayed acks sent":                                                  "TcpExtDelayedACKs",
}

// Counter is one kernel counter of netstat -s or nstat.
type Counter struct {
	// Ref is the file and line.
	Ref evidence.Ref `json:"ref"`
	// Time is the snapshot's time (zero when the file has no timestamps).
	Time time.Time `json:"time,omitzero"`
	// TimeHasZone is true when Time came with its zone or offset.
	TimeHasZone bool `json:"time_has_zone"`
	// Tool is the program that printed it.
	Tool Tool `json:"tool"`
	// Name is the counter's nstat name ("TcpExtListenOverflows") when
	// known; otherwise netstat's prose with the number written as N,
	// prefixed by its section ("Ip: N total packets received").
	Name string `json:"name"`
	// Value is the count. nstat without -a prints the change since its
	// last run, not the total: run it as nstat -az.
	Value int64 `json:"value"`
}

// parseNetstatStatsLine parses one line of netstat -s in section: prose
// with a number ("    20 times the listen queue of a socket overflowed")
// or "Name: value" for the counters netstat has no prose for. netstat
// indents them; an unindented line (pasted, reflowed) is taken only when
// its prose is one netstatProse knows.
func parseNetstatStatsLine(line, section string) (Counter, bool) {
	text := strings.TrimSpace(line)
	indented := len(line) > 0 && (line[0] == ' ' || line[0] == '\t')
	if name, value, found := strings.Cut(text, ": "); found && indented && !strings.ContainsRune(name, ' ') {
		n, ok := parseInt64(value)
		if !ok {
			return Counter{}, false
		}
		return Counter{Tool: ToolNetstatStats, Name: section + name, Value: n}, true
	}
	words := strings.Fields(text)
	for i, w := range words {
		n, ok := parseInt64(w)
		if !ok {
			continue
		}
		words[i] = "N"
		prose := strings.Join(words, " ")
		if name, known := netstatProse[prose]; known && (section == "" || strings.HasPrefix(name, section)) {
			return Counter{Tool: ToolNetstatStats, Name: name, Value: n}, true
		}
		if !indented {
			return Counter{}, false
		}
		if section != "" {
			prose = section + ": " + prose
		}
		return Counter{Tool: ToolNetstatStats, Name: prose, Value: n}, true
	}
	return Counter{}, false
}

// netstatSection returns the section a netstat -s header line opens
// ("TcpExt:" gives "TcpExt").
func netstatSection(line string) (string, bool) {
	name, ok := strings.CutSuffix(line, ":")
	if !ok || name == "" {
		return "", false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return "", false
		}
	}
	return name, true
}

// parseNstatLine parses "TcpExtListenOverflows   28   0.0": name, value,
// and the rate nstat computes (ignored).
func parseNstatLine(line string) (Counter, bool) {
	f := strings.Fields(line)
	if len(f) < 2 || len(f) > 3 {
		return Counter{}, false
	}
	if c := f[0][0]; !(c >= 'A' && c <= 'Z') {
		return Counter{}, false
	}
	for i := 0; i < len(f[0]); i++ {
		c := f[0][i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return Counter{}, false
		}
	}
	n, ok := parseInt64(f[1])
	if !ok {
		return Counter{}, false
	}
	return Counter{Tool: ToolNstat, Name: f[0], Value: n}, true
}

// CounterDelta is how one counter moved between two snapshots.
type CounterDelta struct {
	// Name is the counter's name.
	Name string `json:"name"`
	// Before and After are its values in the two snapshots.
	Before int64 `json:"before"`
	After  int64 `json:"after"`
	// Delta is After - Before; negative when the counters were reset
	// between the snapshots (a reboot, another network namespace).
	Delta int64 `json:"delta"`
	// Interval is the time between the snapshots; 0 when either has none.
	Interval time.Duration `json:"interval_ns,omitempty"`
	// Ref is the counter's line in the later snapshot.
	Ref evidence.Ref `json:"ref"`
	// Time is the later snapshot's time.
	Time time.Time `json:"time,omitzero"`
	// TimeHasZone is true when Time came with its zone or offset.
	TimeHasZone bool `json:"time_has_zone"`
}

// CounterDeltas compares the counters two snapshots share, sorted by name.
func CounterDeltas(before, after *Snapshot) []CounterDelta {
	old := make(map[string]int64, len(before.Counters))
	for _, c := range before.Counters {
		old[c.Name] = c.Value
	}
	var interval time.Duration
	if !before.Time.IsZero() && !after.Time.IsZero() {
		interval = after.Time.Sub(before.Time)
	}
	var out []CounterDelta
	for _, c := range after.Counters {
		if v, ok := old[c.Name]; ok {
			out = append(out, CounterDelta{Name: c.Name, Before: v, After: c.Value, Delta: c.Value - v, Interval: interval,
				Ref: c.Ref, Time: c.Time, TimeHasZone: c.TimeHasZone})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
