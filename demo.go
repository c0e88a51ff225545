// Package wiremortem is the module's root. It holds one thing: the demo's
// inputs, embedded from the lab's captures of the four seed incidents
// (testdata/captures, made by the lab in internal/lab on a real kernel
// with real strace and nginx), so `wiremortem demo` runs anywhere with no
// file at hand. The files are embedded where they are, not copied.
package wiremortem

import (
	"embed"
	"io/fs"
)

// The seed scenarios: 000 a WebSocket upgrade never answered (with the
// server's strace), 001 a zero window then RST behind nginx (access and
// error logs, ss), 002 SYNs dropped by a full accept queue (strace of the
// listener, nstat and netstat -s before and after, ss -lnt), 003 CLOSE_WAIT
// left by a server that never closes (strace, ss, netstat -ant). Each
// scenario's facts.json is its ground truth.
//
//go:embed testdata/captures/ws-no-101/capture.pcap testdata/captures/ws-no-101/server.strace testdata/captures/ws-no-101/facts.json
//go:embed testdata/captures/zero-window-nginx/capture.pcap testdata/captures/zero-window-nginx/access.log testdata/captures/zero-window-nginx/error.log testdata/captures/zero-window-nginx/ss.txt testdata/captures/zero-window-nginx/facts.json
//go:embed testdata/captures/syn-backlog/capture.pcap testdata/captures/syn-backlog/listener.strace testdata/captures/syn-backlog/nstat-before.txt testdata/captures/syn-backlog/nstat-after.txt testdata/captures/syn-backlog/netstat-s-before.txt testdata/captures/syn-backlog/netstat-s-after.txt testdata/captures/syn-backlog/ss-listen.txt testdata/captures/syn-backlog/facts.json
//go:embed testdata/captures/close-wait/capture.pcap testdata/captures/close-wait/server.strace testdata/captures/close-wait/ss.txt testdata/captures/close-wait/netstat-ant.txt testdata/captures/close-wait/facts.json
var demo embed.FS

// DemoScenarios names the embedded scenarios, in seed order.
var DemoScenarios = []string{"ws-no-101", "zero-window-nginx", "syn-backlog", "close-wait"}

// Demo returns the embedded scenarios: one directory per scenario, each
// with its captures, logs and facts.json.
func Demo() fs.FS {
	sub, err := fs.Sub(demo, "testdata/captures")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}
