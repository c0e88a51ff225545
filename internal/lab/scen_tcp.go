package lab

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Addresses inside a scenario's 127.0.N.0/24, as in seed 000.
const (
	hostClient   = 5
	hostClient2  = 6
	hostServer   = 9
	hostNginx    = 10
	hostUpstream = 11
)

// loopbackMSS is the MSS receivers in the zero-window scenarios announce
// (TCP_MAXSEG before connect): Ethernet's, instead of loopback's 65483, so
// that a small receive buffer fills segment by segment as on a real network.
const loopbackMSS = 1460

func setMSS(fd int) error {
	return syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, loopbackMSS)
}

func both(fs ...func(fd int) error) func(fd int) error {
	return func(fd int) error {
		for _, f := range fs {
			if err := f(fd); err != nil {
				return err
			}
		}
		return nil
	}
}

// runTCPClean: two HTTP exchanges, one where the server closes first
// (Connection: close) and one where the client does.
func runTCPClean(e *Env) error {
	return e.cleanScenario(captureSpec{File: "capture.pcap"}, 2000)
}

// cleanScenario captures two clean exchanges with spec and records them.
func (e *Env) cleanScenario(spec captureSpec, size int) error {
	server := e.AddrPort(hostServer, 8080)
	ln, err := listen(server)
	if err != nil {
		return err
	}
	book := newCloseBook()
	cap, err := e.startCapture(spec)
	if err != nil {
		return err
	}
	var served atomic.Int32
	e.serve(ln, func(c *net.TCPConn) {
		// The first conversation is served Connection: close, the second
		// keep-alive; the lab dials the second only when the first is over.
		httpResponder(book, size, served.Add(1) == 1)(c)
	})
	for i, serverFirst := range []bool{true, false} {
		who := map[bool]string{true: "server", false: "client"}[serverFirst]
		conv, err := e.cleanGet(fmt.Sprintf("c%d", i+1), "HTTP GET, "+who+" closes first", e.IP(hostClient), server, book, size, serverFirst, nil)
		if err != nil {
			return err
		}
		conv.Files = []string{spec.File}
		e.AddConversation(conv)
	}
	return cap.stop()
}

// runSynRefused: SYNs to a port nothing listens on; the kernel answers RST.
func runSynRefused(e *Env) error {
	server := e.AddrPort(hostServer, 9)
	cap, err := e.startCapture(captureSpec{File: "capture.pcap"})
	if err != nil {
		return err
	}
	var ids []string
	for i := range 2 {
		d := dialFrom(e.ctx, e.IP(hostClient), server, 2*time.Second, nil)
		if d.Err == nil {
			d.Conn.Close()
			return fmt.Errorf("connect to %s succeeded: something listens there", server)
		}
		if !errors.Is(d.Err, syscall.ECONNREFUSED) {
			return fmt.Errorf("connect to %s: %w, want ECONNREFUSED", server, d.Err)
		}
		id := fmt.Sprintf("c%d", i+1)
		ids = append(ids, id)
		e.AddConversation(Conversation{
			ID: id, Role: "connect to a closed port", Client: d.Local.String(), Server: server.String(),
			Files: []string{"capture.pcap"}, Handshake: HandshakeRefused, ConnState: "REJ", Start: d.Start, End: time.Now().UTC(),
		})
		time.Sleep(200 * time.Millisecond)
	}
	e.Plant("syn-refused", "the lab connected twice to a port nothing listens on; the kernel answered each SYN with RST", nil, ids...)
	return cap.stop()
}

// Seed 002: a listener with backlog 1 that never accepts, and a burst of
// short-lived clients with a 300 ms connect timeout.
const (
	backlogPort     = 9869
	backlogClients  = 40
	backlogTimeout  = 300 * time.Millisecond
	backlogArgument = 1
)

type backlogArgs struct {
	Listen  string `json:"listen"`
	Backlog int    `json:"backlog"`
}

func init() {
	// backlog-listener: socket, bind, listen(fd, backlog), and never accept.
	roles["backlog-listener"] = func(raw []byte, r *reporter) error {
		var a backlogArgs
		if err := json.Unmarshal(raw, &a); err != nil {
			return err
		}
		ap, err := netip.ParseAddrPort(a.Listen)
		if err != nil {
			return err
		}
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
			return err
		}
		if err := syscall.Bind(fd, sockaddr(ap)); err != nil {
			return err
		}
		if err := syscall.Listen(fd, a.Backlog); err != nil {
			return err
		}
		r.emit(roleEvent{Event: "ready", PID: os.Getpid(), FD: fd, Local: ap.String(), Backlog: a.Backlog})
		select {} // never accept
	}
}

func runSynBacklog(e *Env) error {
	server := e.AddrPort(hostServer, backlogPort)
	before := kernelCounters()
	if err := e.snapshot("nstat-before.txt", KindNstat, "nstat", "-asz"); err != nil {
		return err
	}
	if err := e.snapshot("netstat-s-before.txt", KindNetstatS, "netstat", "-s"); err != nil {
		return err
	}
	cap, err := e.startCapture(captureSpec{File: "capture.pcap"})
	if err != nil {
		return err
	}
	p, err := e.startPeer("listener", "backlog-listener", backlogArgs{Listen: server.String(), Backlog: backlogArgument},
		&straceSpec{File: "listener.strace", Flags: straceFull()})
	if err != nil {
		return err
	}
	results := make([]dialed, backlogClients)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i] = dialFrom(e.ctx, e.IP(hostClient), server, backlogTimeout, nil)
		}()
	}
	close(start)
	wg.Wait()
	if err := e.snapshot("ss-listen.txt", KindListenState, "ss", "-ltn", fmt.Sprintf("src %s", server)); err != nil {
		return err
	}
	log, err := os.Create(e.Path("client.log"))
	if err != nil {
		return err
	}
	defer log.Close()
	var failed, succeeded []string
	for i, d := range results {
		id := fmt.Sprintf("c%02d", i+1)
		conv := Conversation{ID: id, Role: "short-lived client, 300 ms connect timeout", Client: d.Local.String(), Server: server.String(),
			Files: []string{"capture.pcap"}, Start: d.Start}
		ts := e.Local(d.Start).Format("2006/01/02 15:04:05.000000")
		switch {
		case d.Err == nil:
			conv.Handshake = HandshakeCompleted
			succeeded = append(succeeded, id)
			fmt.Fprintf(log, "%s connect %s -> %s ok\n", ts, d.Local, server)
		case isTimeout(d.Err):
			conv.Handshake = HandshakeUnanswered
			// One SYN, nothing back: the first retransmission would come
			// after 1 s, long after the client gave up and closed.
			conv.ConnState = "S0"
			conv.End = d.Start.Add(backlogTimeout)
			failed = append(failed, id)
			fmt.Fprintf(log, "%s connect %s -> %s failed: Connection timed out [110] after %s\n", ts, d.Local, server, backlogTimeout)
		default:
			return fmt.Errorf("client %s: %w", id, d.Err)
		}
		e.AddConversation(conv)
	}
	e.AddFile(File{Name: "client.log", Kind: KindClientLog})
	time.Sleep(500 * time.Millisecond)
	for _, d := range results {
		if d.Conn != nil {
			d.Conn.Close()
		}
	}
	if err := cap.stop(); err != nil {
		return err
	}
	if err := p.stop(); err != nil {
		return err
	}
	after := kernelCounters()
	if err := e.snapshot("nstat-after.txt", KindNstat, "nstat", "-asz"); err != nil {
		return err
	}
	if err := e.snapshot("netstat-s-after.txt", KindNetstatS, "netstat", "-s"); err != nil {
		return err
	}
	e.AddCounters(before, after, "TcpExtListenOverflows", "TcpExtListenDrops", "TcpExtTCPReqQFullDrop", "TcpExtTCPReqQFullDoCookies", "TcpExtSyncookiesSent")
	if len(failed) == 0 {
		return fmt.Errorf("no client timed out: the accept queue never overflowed")
	}
	e.Plant("syn-unanswered", fmt.Sprintf("%d clients connected at once to a listener with listen backlog %d that never accepts; %d got no SYN-ACK within their %s connect timeout",
		backlogClients, backlogArgument, len(failed), backlogTimeout), map[string]float64{
		"clients": backlogClients, "unanswered": float64(len(failed)), "connect_timeout_s": backlogTimeout.Seconds(), "backlog": backlogArgument,
	}, failed...)
	e.Note("clients whose connect succeeded (%d) were in the accept queue or completed the handshake on their side only (final ACK dropped by the full queue); the lab closed them before the capture stopped", len(succeeded))
	return nil
}

// Zero-window scenarios: a server sends, a client receiver with a small
// SO_RCVBUF stops or slows reading.
const (
	zwRcvBuf = 4096
	zwPort   = 8765
	zwChunk  = 16 * 1024
)

// zeroWindowPair connects a small-buffer client to a server that writes
// until told to stop, and returns both ends.
func (e *Env) zeroWindowPair() (client dialed, server *net.TCPConn, err error) {
	addr := e.AddrPort(hostServer, zwPort)
	ln, err := listen(addr)
	if err != nil {
		return client, nil, err
	}
	defer ln.Close()
	accepted := make(chan *net.TCPConn, 1)
	go func() {
		c, err := ln.AcceptTCP()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client = dialFrom(e.ctx, e.IP(hostClient), addr, 3*time.Second, both(setRcvBuf(zwRcvBuf), setMSS))
	if client.Err != nil {
		return client, nil, client.Err
	}
	server, ok := <-accepted
	if !ok {
		return client, nil, fmt.Errorf("accept failed")
	}
	e.Defer(func() { client.Conn.Close(); server.Close() })
	return client, server, nil
}

// sendUntil writes chunks to c until stop is closed, limit bytes are
// written (limit 0: no limit) or a write fails, and then sends the bytes
// written.
func sendUntil(c *net.TCPConn, stop <-chan struct{}, limit int64) <-chan int64 {
	out := make(chan int64, 1)
	go func() {
		var n int64
		chunk := body(zwChunk)
		for limit == 0 || n < limit {
			select {
			case <-stop:
				out <- n
				return
			default:
			}
			p := chunk
			if limit > 0 && limit-n < int64(len(p)) {
				p = p[:limit-n]
			}
			// A short deadline so that a blocked write notices stop.
			c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			w, err := c.Write(p)
			n += int64(w)
			if err != nil && !isTimeout(err) {
				break
			}
		}
		c.SetWriteDeadline(time.Time{})
		out <- n
	}()
	return out
}

const (
	zwHold      = 5 * time.Second // zero-window: how long the receiver sits on a full buffer before the sender resets
	zwStallHold = 4 * time.Second // zero-window-stall: how long the receiver stops reading before it resumes
	zwPrelude   = 64 * 1024       // bytes the receiver reads before it stops
)

func runZeroWindow(e *Env) error {
	cap, err := e.startCapture(captureSpec{File: "capture.pcap"})
	if err != nil {
		return err
	}
	client, server, err := e.zeroWindowPair()
	if err != nil {
		return err
	}
	stopSend := make(chan struct{})
	sent := sendUntil(server, stopSend, 0)
	if _, err := io.CopyN(io.Discard, client.Conn, zwPrelude); err != nil {
		return err
	}
	stopped := time.Now().UTC()
	time.Sleep(zwHold)
	close(stopSend)
	n := <-sent
	resetAt := time.Now().UTC()
	if err := resetClose(server); err != nil {
		return err
	}
	time.Sleep(200 * time.Millisecond)
	conv := Conversation{
		ID: "c1", Role: "receiver stops reading; sender resets after the window stayed shut", Client: client.Local.String(), Server: e.AddrPort(hostServer, zwPort).String(),
		Files: []string{"capture.pcap"}, Handshake: HandshakeCompleted, ConnState: "RSTR",
		Closes:      []Close{{By: SideServer, How: CloseRST, At: resetAt}},
		ServerBytes: n, Start: client.Start, End: resetAt,
		ZeroWindow: &ZeroWindow{Receiver: SideClient, RcvBuf: zwRcvBuf, StoppedReading: stopped},
	}
	e.AddConversation(conv)
	e.Plant("zero-window-rst", fmt.Sprintf("the client stopped reading after %d bytes with SO_RCVBUF %d; the server kept writing for %s, then closed with SO_LINGER 0 (RST)", zwPrelude, zwRcvBuf, zwHold),
		map[string]float64{"hold_s": zwHold.Seconds(), "rcvbuf": zwRcvBuf, "read_before_stop": zwPrelude}, "c1")
	return cap.stop()
}

func runZeroWindowStall(e *Env) error {
	const total = 256 * 1024
	cap, err := e.startCapture(captureSpec{File: "capture.pcap"})
	if err != nil {
		return err
	}
	client, server, err := e.zeroWindowPair()
	if err != nil {
		return err
	}
	sent := sendUntil(server, nil, total)
	if _, err := io.CopyN(io.Discard, client.Conn, zwPrelude); err != nil {
		return err
	}
	stopped := time.Now().UTC()
	time.Sleep(zwStallHold)
	resumed := time.Now().UTC()
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, client.Conn) // the rest, then the server's FIN
		done <- err
	}()
	n := <-sent
	serverClose := time.Now().UTC()
	server.Close()
	if err := <-done; err != nil {
		return err
	}
	clientClose := time.Now().UTC()
	client.Conn.Close()
	e.AddConversation(Conversation{
		ID: "c1", Role: "receiver stops reading, then resumes", Client: client.Local.String(), Server: e.AddrPort(hostServer, zwPort).String(),
		Files: []string{"capture.pcap"}, Handshake: HandshakeCompleted, ConnState: "SF",
		Closes:      []Close{{By: SideServer, How: CloseFIN, At: serverClose}, {By: SideClient, How: CloseFIN, At: clientClose}},
		ServerBytes: n, Start: client.Start, End: clientClose,
		ZeroWindow: &ZeroWindow{Receiver: SideClient, RcvBuf: zwRcvBuf, StoppedReading: stopped, ResumedReading: resumed},
	})
	e.Plant("zero-window-stall", fmt.Sprintf("the client stopped reading for %s with SO_RCVBUF %d while the server had data to send, then resumed; no reset", zwStallHold, zwRcvBuf),
		map[string]float64{"hold_s": zwStallHold.Seconds(), "rcvbuf": zwRcvBuf}, "c1")
	return cap.stop()
}

// zwSlowPause is the slow reader's pause between reads: any zero window it
// causes is reopened by the next read (or the sender's next probe).
const (
	zwSlowPause = 20 * time.Millisecond
	zwSlowRead  = 2048
)

func runZeroWindowSlowReader(e *Env) error {
	const total = 160 * 1024
	cap, err := e.startCapture(captureSpec{File: "capture.pcap"})
	if err != nil {
		return err
	}
	client, server, err := e.zeroWindowPair()
	if err != nil {
		return err
	}
	sent := sendUntil(server, nil, total)
	buf := make([]byte, zwSlowRead)
	// The server closes (FIN) once everything is written.
	serverClosed := make(chan time.Time, 1)
	go func() {
		<-sent
		at := time.Now().UTC()
		server.Close()
		serverClosed <- at
	}()
	var got int64
	for {
		n, err := client.Conn.Read(buf)
		got += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		time.Sleep(zwSlowPause)
	}
	serverAt := <-serverClosed
	end := time.Now().UTC()
	client.Conn.Close()
	e.AddConversation(Conversation{
		ID: "c1", Role: "slow but steady reader", Client: client.Local.String(), Server: e.AddrPort(hostServer, zwPort).String(),
		Files: []string{"capture.pcap"}, Handshake: HandshakeCompleted, ConnState: "SF",
		Closes:      []Close{{By: SideServer, How: CloseFIN, At: serverAt}, {By: SideClient, How: CloseFIN, At: end}},
		ServerBytes: got, Start: client.Start, End: end,
		ZeroWindow: &ZeroWindow{Receiver: SideClient, RcvBuf: zwRcvBuf, MaxReadPause: zwSlowPause.Seconds()},
	})
	return cap.stop()
}

// Seed 003: a server that reads its peer's FIN and never closes.
const closeWaitPort = 6379

type closeWaitArgs struct {
	Listen     string  `json:"listen"`
	CloseAfter float64 `json:"close_after_s"` // < 0: never close
}

func init() {
	// close-wait-server: answers PING with +PONG; on EOF closes the fd
	// after CloseAfter seconds, or never.
	roles["close-wait-server"] = func(raw []byte, r *reporter) error {
		var a closeWaitArgs
		if err := json.Unmarshal(raw, &a); err != nil {
			return err
		}
		ap, err := netip.ParseAddrPort(a.Listen)
		if err != nil {
			return err
		}
		ln, err := listen(ap)
		if err != nil {
			return err
		}
		r.emit(roleEvent{Event: "ready", PID: os.Getpid(), Local: ap.String()})
		var leaked []*net.TCPConn
		var mu sync.Mutex
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return err
			}
			r.accepted(c)
			go func() {
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						break
					}
					if strings.TrimSpace(line) == "PING" {
						c.Write([]byte("+PONG\r\n"))
					}
				}
				if a.CloseAfter < 0 {
					mu.Lock()
					leaked = append(leaked, c) // the onClose handler that never runs
					mu.Unlock()
					return
				}
				time.Sleep(time.Duration(a.CloseAfter * float64(time.Second)))
				r.emit(roleEvent{Event: "closed", FD: connFD(c), Peer: c.RemoteAddr().String()})
				c.Close()
			}()
		}
	}
}

const (
	closeWaitClients = 5
	closeWaitIdle    = time.Second
	closeWaitTwinLag = 200 * time.Millisecond
)

func runCloseWait(e *Env) error     { return e.closeWait(-1) }
func runCloseWaitTwin(e *Env) error { return e.closeWait(closeWaitTwinLag.Seconds()) }
func (e *Env) closeWait(closeAfter float64) error {
	server := e.AddrPort(hostServer, closeWaitPort)
	cap, err := e.startCapture(captureSpec{File: "capture.pcap"})
	if err != nil {
		return err
	}
	stopSS := e.watchSS("ss.txt", 500*time.Millisecond)
	p, err := e.startPeer("server", "close-wait-server", closeWaitArgs{Listen: server.String(), CloseAfter: closeAfter},
		&straceSpec{File: "server.strace", Flags: straceFull()})
	if err != nil {
		return err
	}
	var ids []string
	var wg sync.WaitGroup
	errs := make(chan error, closeWaitClients)
	for i := range closeWaitClients {
		id := fmt.Sprintf("c%d", i+1)
		ids = append(ids, id)
		d := dialFrom(e.ctx, e.IP(hostClient), server, 3*time.Second, nil)
		if d.Err != nil {
			return d.Err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			conv := Conversation{ID: id, Role: "RPC client: PING, idle, then close", Client: d.Local.String(), Server: server.String(),
				Files: []string{"capture.pcap"}, Handshake: HandshakeCompleted, Start: d.Start, ClientBytes: 6, ServerBytes: 7}
			d.Conn.Write([]byte("PING\r\n"))
			if _, err := bufio.NewReader(d.Conn).ReadString('\n'); err != nil {
				errs <- err
				return
			}
			time.Sleep(closeWaitIdle)
			at := time.Now().UTC()
			d.Conn.Close()
			conv.Closes = []Close{{By: SideClient, How: CloseFIN, At: at}}
			if closeAfter < 0 {
				conv.ConnState = "S2"
			} else {
				conv.ConnState = "SF"
			}
			conv.End = at
			ev, err := p.acceptedBy(conv.Client, 3*time.Second)
			if err != nil {
				errs <- err
				return
			}
			if closeAfter >= 0 {
				closed, err := p.wait("closed", 3*time.Second)
				if err != nil {
					errs <- err
					return
				}
				conv.Closes = append(conv.Closes, Close{By: SideServer, How: CloseFIN, At: closed.At})
				conv.End = closed.At
			}
			e.AddConversation(conv)
			e.AddStraceJoin(StraceJoin{File: "server.strace", FD: ev.FD, Local: ev.Local, Peer: ev.Peer, Conversation: id})
		}()
		time.Sleep(300 * time.Millisecond)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	time.Sleep(2 * time.Second) // CLOSE-WAIT (or nothing) in a few more ss snapshots
	if err := e.snapshotFiltered("netstat-ant.txt", KindNetstatAnt, "netstat", "-anot"); err != nil {
		return err
	}
	if err := cap.stop(); err != nil {
		return err
	}
	if err := stopSS(); err != nil {
		return err
	}
	if err := p.stop(); err != nil {
		return err
	}
	e.setStracePID("server.strace", p.pid)
	if closeAfter < 0 {
		e.Plant("close-wait", fmt.Sprintf("%d clients sent FIN after %s idle; the server read EOF and never called close()", closeWaitClients, closeWaitIdle),
			map[string]float64{"clients": closeWaitClients, "idle_s": closeWaitIdle.Seconds()}, ids...)
	}
	return nil
}

// setStracePID fills the pid of the strace joins of file.
func (e *Env) setStracePID(file string, pid int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range e.facts.Joins.Strace {
		if e.facts.Joins.Strace[i].File == file {
			e.facts.Joins.Strace[i].PID = pid
		}
	}
}

// snapshotFiltered is snapshot keeping only the header lines and the lines
// that mention the scenario's net (netstat has no address filter).
func (e *Env) snapshotFiltered(name, kind string, args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).Output()
	if err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	prefix := fmt.Sprintf("127.0.%d.", e.sc.Net)
	var keep []string
	for i, line := range strings.SplitAfter(string(out), "\n") {
		if i < 2 || strings.Contains(line, prefix) {
			keep = append(keep, line)
		}
	}
	if err := os.WriteFile(e.Path(name), []byte(strings.Join(keep, "")), 0o644); err != nil {
		return err
	}
	e.AddFile(File{Name: name, Kind: kind, Command: append(args, "| keep lines with "+prefix)})
	return nil
}

// runIPv6: one clean exchange over ::1.
func runIPv6(e *Env) error {
	ln, err := listen(netip.AddrPortFrom(netip.IPv6Loopback(), 0))
	if err != nil {
		return err
	}
	server := ln.Addr().(*net.TCPAddr).AddrPort()
	book := newCloseBook()
	spec := captureSpec{File: "capture.pcap", Filter: fmt.Sprintf("ip6 and tcp port %d", server.Port())}
	cap, err := e.startCapture(spec)
	if err != nil {
		return err
	}
	e.serve(ln, httpResponder(book, 1500, true))
	conv, err := e.cleanGet("c1", "HTTP GET over IPv6", netip.IPv6Loopback(), server, book, 1500, true, nil)
	if err != nil {
		return err
	}
	conv.Files = []string{spec.File}
	e.AddConversation(conv)
	return cap.stop()
}
