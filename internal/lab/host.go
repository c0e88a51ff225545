package lab

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// sysctlsRead are the kernel settings that shape what the scenarios show:
// the accept queue (somaxconn caps listen's backlog; tcp_abort_on_overflow
// turns dropped final ACKs into RSTs), SYN handling, and the timers behind
// probes and teardown.
var sysctlsRead = []string{
	"net.core.somaxconn",
	"net.ipv4.tcp_abort_on_overflow",
	"net.ipv4.tcp_syncookies",
	"net.ipv4.tcp_max_syn_backlog",
	"net.ipv4.tcp_syn_retries",
	"net.ipv4.tcp_synack_retries",
	"net.ipv4.tcp_fin_timeout",
	"net.ipv4.tcp_retries2",
	"net.ipv4.tcp_rmem",
	"net.ipv4.tcp_wmem",
	"net.ipv4.tcp_window_scaling",
	"net.ipv4.tcp_timestamps",
}

func readHost() Host {
	h := Host{Sysctls: map[string]string{}}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	for _, name := range sysctlsRead {
		b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(name, ".", "/"))
		if err == nil {
			h.Sysctls[name] = strings.Join(strings.Fields(string(b)), " ")
		}
	}
	return h
}

// kernelCounters reads /proc/net/netstat and /proc/net/snmp into nstat's
// names ("TcpExtListenOverflows", "TcpActiveOpens"): each file holds pairs
// of lines, a header of field names and a line of values, both prefixed
// with the group ("TcpExt:").
func kernelCounters() map[string]int64 {
	out := map[string]int64{}
	for _, path := range []string{"/proc/net/netstat", "/proc/net/snmp"} {
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		var header []string
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) == 0 {
				continue
			}
			if header == nil || header[0] != fields[0] {
				header = fields
				continue
			}
			group := strings.TrimSuffix(fields[0], ":")
			for i := 1; i < len(fields) && i < len(header); i++ {
				if v, err := strconv.ParseInt(fields[i], 10, 64); err == nil {
					out[group+header[i]] = v
				}
			}
			header = nil
		}
		f.Close()
	}
	return out
}
