package lab

// registry lists every scenario. Net numbers are fixed so that a scenario's
// addresses stay the same from one regeneration to the next; they never
// repeat.
var registry = []Scenario{
	{Name: "tcp-clean", Net: 1, run: runTCPClean,
		Description: "Two HTTP GETs over IPv4 with clean FIN teardowns: the server closes first in c1, the client in c2."},
	{Name: "syn-refused", Net: 2, run: runSynRefused,
		Description: "SYNs to a port nothing listens on, answered by RST."},
	{Name: "syn-backlog", Net: 3, Seed: "002", TimeZone: "Asia/Shanghai", run: runSynBacklog,
		Tools:       []string{"strace", "ss", "nstat", "netstat"},
		Description: "A listener with listen backlog 1 that never accepts (run under strace), and 40 clients connecting at once with a 300 ms connect timeout: the accept queue overflows and the kernel drops SYNs. nstat and netstat -s before and after."},
	{Name: "zero-window", Net: 4, run: runZeroWindow,
		Description: "A client with a 4 KiB SO_RCVBUF stops reading; the server keeps writing against a zero window (persist probes) for 5 s, then closes with SO_LINGER 0 (RST)."},
	{Name: "zero-window-slow-reader", Net: 5, TwinOf: "zero-window", run: runZeroWindowSlowReader,
		Description: "Healthy twin of zero-window: the small-buffer client reads 2 KiB every 20 ms until the server's FIN; any zero window is brief."},
	{Name: "zero-window-stall", Net: 6, run: runZeroWindowStall,
		Description: "A client with a 4 KiB SO_RCVBUF stops reading for 4 s while the server has data to send, then reads everything; clean FIN teardown, no reset."},
	{Name: "close-wait", Net: 7, Seed: "003", TimeZone: "Asia/Shanghai", run: runCloseWait,
		Tools:       []string{"strace", "ss", "netstat"},
		Description: "Five RPC clients send PING, idle 1 s and close; the server (under strace) reads each FIN and never calls close(): five CLOSE-WAIT sockets in the ss watch loop."},
	{Name: "close-wait-twin", Net: 8, TwinOf: "close-wait", TimeZone: "Asia/Shanghai", run: runCloseWaitTwin,
		Tools:       []string{"strace", "ss", "netstat"},
		Description: "Healthy twin of close-wait: the server closes each connection 200 ms after its peer's FIN."},
	{Name: "ipv6", Net: 9, run: runIPv6,
		Description: "One HTTP GET over [::1] with a clean teardown."},
	{Name: "any-sll2", Net: 10, run: runAnySLL2,
		Description: "Two clean HTTP GETs captured with tcpdump -i any -y LINUX_SLL2."},
	{Name: "pcapng-mixed", Net: 11, Tools: []string{"mergecap"}, run: runPcapngMixed,
		Description: "One pcapng with two interfaces of different link types (lo: EN10MB, any: LINUX_SLL2), one clean conversation on each, merged by mergecap."},
	{Name: "gzip", Net: 12, Tools: []string{"gzip"}, run: runGzip,
		Description: "Two clean HTTP GETs, the pcap compressed with gzip."},
	{Name: "zstd", Net: 13, Tools: []string{"editcap", "zstd"}, run: runZstd,
		Description: "Two clean HTTP GETs, converted to pcapng and compressed with zstd."},
	{Name: "rotated", Net: 14, run: runRotated,
		Description: "One HTTP response trickled in 2 KB chunks over 4 s, captured with tcpdump -G 1: the conversation spans several rotated parts."},
}
