package lab

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/coder/websocket"
)

// runNginxProxy: two plain GETs and a WebSocket echo through nginx.
func runNginxProxy(e *Env) error {
	l, err := e.startNginxLab("", "", e.proxyTo("/", "", ""))
	if err != nil {
		return err
	}
	for i, id := range []string{"c1", "c3"} {
		conv, connHeader, err := l.get(id, "/index.html")
		if err != nil {
			return err
		}
		conv.ServerBytes = 1000
		if _, err := l.record(conv, connHeader, "/index.html", fmt.Sprintf("u%d", 2*i+1), true); err != nil {
			return err
		}
		if i == 0 {
			ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
			c, conv, _, connHeader, err := l.dialWS(ctx, "c2", "/ws", nil)
			if err != nil {
				cancel()
				return err
			}
			for _, m := range []string{"hello through nginx", "second message"} {
				if err := c.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
					cancel()
					return err
				}
				if _, _, err := c.Read(ctx); err != nil {
					cancel()
					return err
				}
				conv.WebSocket.Messages = append(conv.WebSocket.Messages,
					WSMessage{From: SideClient, Opcode: "text", Length: len(m), Fragments: 1},
					WSMessage{From: SideServer, Opcode: "text", Length: len(m), Fragments: 1})
			}
			err = c.Close(websocket.StatusNormalClosure, "")
			cancel()
			if err != nil {
				return err
			}
			conv.WebSocket.Close = &WSClose{By: SideClient, Code: 1000, Answered: true}
			conv.End = time.Now().UTC()
			if _, err := l.record(conv, connHeader, "/ws", "u2", true); err != nil {
				return err
			}
		}
	}
	return l.stop()
}

// runUpstreamRefused: nginx proxies to a port nothing listens on: 502 and
// "connect() failed (111: Connection refused) while connecting to upstream".
func runUpstreamRefused(e *Env) error {
	closed := e.AddrPort(hostUpstream, 9)
	l, err := e.startNginxLab("", "", e.proxyTo("/", closed.String(), ""))
	if err != nil {
		return err
	}
	conv, connHeader, err := l.get("c1", "/api/status")
	if err != nil {
		return err
	}
	if conv.HTTP[0].Status != http.StatusBadGateway {
		return fmt.Errorf("status %d, want 502", conv.HTTP[0].Status)
	}
	// nginx's kernel chose the source port of the refused connection and
	// no peer of the lab saw it: port 0.
	up := Conversation{ID: "u1", Role: "nginx's refused connect to the upstream for c1", Client: e.AddrPort(hostNginx, 0).String(),
		Server: closed.String(), Files: []string{"capture.pcap"}, Handshake: HandshakeRefused, ConnState: "REJ", Start: conv.Start}
	e.AddConversation(conv)
	e.AddConversation(up)
	l.join(&conv, connHeader, "GET /api/status HTTP/1.1", &up)
	e.Plant("upstream-connect-refused", "nginx proxies to an upstream port nothing listens on: its connect is refused (111) and the client gets 502", nil, "c1", "u1")
	e.Plant("syn-refused", "nginx's SYN to the closed upstream port is answered by RST (the flow's client port is nginx's, unknown to the lab: 0)", nil, "u1")
	return l.stop()
}

// runUpstreamTimeout: the upstream reads the request and never answers;
// after proxy_read_timeout 2s nginx answers 504 and logs "upstream timed
// out (110: Connection timed out) while reading response header from
// upstream".
func runUpstreamTimeout(e *Env) error {
	l, err := e.startNginxLab("", "", e.proxyTo("/", "", "            proxy_read_timeout 2s;\n"))
	if err != nil {
		return err
	}
	conv, connHeader, err := l.get("c1", "/slow")
	if err != nil {
		return err
	}
	if conv.HTTP[0].Status != http.StatusGatewayTimeout {
		return fmt.Errorf("status %d, want 504", conv.HTTP[0].Status)
	}
	if _, err := l.record(conv, connHeader, "/slow", "u1", true); err != nil {
		return err
	}
	e.Plant("upstream-timeout", "the upstream read the request and never answered; nginx's proxy_read_timeout of 2 s expired and it answered 504", map[string]float64{"proxy_read_timeout_s": 2}, "c1", "u1")
	return l.stop()
}

// Seed 001: a slow WebSocket consumer behind nginx.
const (
	seed001SendTimeout = 3 * time.Second
	seed001Read        = 2 // messages the consumer reads before it stops
)

func seed001Server() string {
	return fmt.Sprintf("        send_timeout %ds;\n        reset_timedout_connection on;\n", int(seed001SendTimeout.Seconds()))
}

// runZeroWindowNginx: the upstream floods a WebSocket through nginx; the
// client (SO_RCVBUF 4096) reads two messages and stops calling recv: its
// window closes, nginx's Send-Q grows, nginx probes, and after
// send_timeout 3s "client timed out (110: Connection timed out) while
// proxying upgraded connection"; reset_timedout_connection sends RST.
func runZeroWindowNginx(e *Env) error {
	l, err := e.startNginxLab(" sndbuf=16k", seed001Server(),
		e.proxyTo("/agent", "", "            proxy_read_timeout 3600s;\n            rewrite ^ /flood break;\n"))
	if err != nil {
		return err
	}
	stopSS := e.watchSS("ss.txt", 500*time.Millisecond)
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	c, conv, d, connHeader, err := l.dialWS(ctx, "c1", "/agent", both(setRcvBuf(zwRcvBuf), setMSS))
	if err != nil {
		return err
	}
	defer c.CloseNow()
	for range seed001Read {
		if _, _, err := c.Read(ctx); err != nil {
			return err
		}
	}
	stopped := time.Now().UTC()
	// The consumer is stuck: no recv while nginx's send_timeout runs out,
	// plus time for the reset to arrive.
	time.Sleep(seed001SendTimeout + 2*time.Second)
	state, err := tcpState(d.Conn)
	if err != nil {
		return err
	}
	if state != tcpClose {
		return fmt.Errorf("client socket in TCP state %d after nginx's send_timeout, want %d (reset)", state, tcpClose)
	}
	conv.ZeroWindow = &ZeroWindow{Receiver: SideClient, RcvBuf: zwRcvBuf, StoppedReading: stopped}
	conv.Closes = []Close{{By: SideServer, How: CloseRST}}
	conv.End = time.Now().UTC()
	conv.ConnState = "RSTR"
	up, err := l.record(conv, connHeader, "/agent", "u1", true)
	if err != nil {
		return err
	}
	if err := l.stop(); err != nil {
		return err
	}
	if err := stopSS(); err != nil {
		return err
	}
	e.Plant("zero-window-rst", fmt.Sprintf("the WebSocket client behind nginx (SO_RCVBUF %d) read %d messages and stopped calling recv while the upstream sent %d KiB; nginx (send_timeout %s, reset_timedout_connection on) reset it",
		zwRcvBuf, seed001Read, l.up.floodTotal/1024, seed001SendTimeout), map[string]float64{"send_timeout_s": seed001SendTimeout.Seconds(), "rcvbuf": zwRcvBuf}, "c1")
	if up.Closes[0].How == CloseRST {
		e.PlantOptional("rst-mid-stream", "nginx closed its upstream connection with upstream data still unread, so its kernel sent RST", up.ID)
	}
	return nil
}

// runZeroWindowNginxTwin: the same flood through nginx, read by a slow but
// steady consumer (one message every 20 ms); the upstream closes with 1000
// when done.
func runZeroWindowNginxTwin(e *Env) error {
	l, err := e.startNginxLab(" sndbuf=16k", seed001Server(),
		e.proxyTo("/agent", "", "            proxy_read_timeout 3600s;\n            rewrite ^ /flood break;\n"))
	if err != nil {
		return err
	}
	stopSS := e.watchSS("ss.txt", 500*time.Millisecond)
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	c, conv, _, connHeader, err := l.dialWS(ctx, "c1", "/agent", both(setRcvBuf(zwRcvBuf), setMSS))
	if err != nil {
		return err
	}
	defer c.CloseNow()
	c.SetReadLimit(-1)
	var got int64
	for got < int64(l.up.floodTotal) {
		_, data, err := c.Read(ctx)
		if err != nil {
			return err
		}
		got += int64(len(data))
		time.Sleep(zwSlowPause)
	}
	conv.ServerBytes = got
	conv.ZeroWindow = &ZeroWindow{Receiver: SideClient, RcvBuf: zwRcvBuf, MaxReadPause: zwSlowPause.Seconds()}
	if err := c.Close(websocket.StatusNormalClosure, "done"); err != nil {
		return err
	}
	conv.WebSocket.Close = &WSClose{By: SideClient, Code: 1000, Reason: "done", Answered: true}
	conv.End = time.Now().UTC()
	if _, err := l.record(conv, connHeader, "/agent", "u1", true); err != nil {
		return err
	}
	if err := l.stop(); err != nil {
		return err
	}
	return stopSS()
}

// runNginxResetByPeer: the upstream ticks a message every 50 ms through
// nginx; the client reads five and closes with SO_LINGER 0 (RST): nginx
// logs "(104: Connection reset by peer) while proxying upgraded
// connection" and closes the upstream connection.
func runNginxResetByPeer(e *Env) error {
	l, err := e.startNginxLab("", "", e.proxyTo("/", "", ""))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	c, conv, d, connHeader, err := l.dialWS(ctx, "c1", "/ticker", nil)
	if err != nil {
		return err
	}
	defer c.CloseNow()
	for range 5 {
		if _, _, err := c.Read(ctx); err != nil {
			return err
		}
	}
	at := time.Now().UTC()
	if err := resetClose(d.Conn); err != nil {
		return err
	}
	conv.Closes = []Close{{By: SideClient, How: CloseRST, At: at}}
	conv.ConnState = "RSTO"
	conv.End = at
	up, err := l.record(conv, connHeader, "/ticker", "u1", true)
	if err != nil {
		return err
	}
	time.Sleep(200 * time.Millisecond)
	if err := l.stop(); err != nil {
		return err
	}
	e.Plant("rst-mid-stream", "the WebSocket client reset its connection (SO_LINGER 0) while nginx relayed the upstream's messages every 50 ms", nil, "c1")
	if up.Closes[0].How == CloseRST {
		e.PlantOptional("rst-mid-stream", "nginx closed its upstream connection with upstream data still unread, so its kernel sent RST", up.ID)
	}
	return nil
}

// Idle teardown by nginx's proxy_read_timeout on an upgraded connection.
const idleTimeout = 3 * time.Second

// idleWS opens a WebSocket through nginx to /idle, exchanges one message,
// and keeps a read pending; the returned channel yields the read's end.
func (l *nginxLab) idleWS(ctx context.Context, path string) (*websocket.Conn, Conversation, string, <-chan error, error) {
	c, conv, _, connHeader, err := l.dialWS(ctx, "c1", path, nil)
	if err != nil {
		return nil, conv, "", nil, err
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		return nil, conv, "", nil, err
	}
	if _, _, err := c.Read(ctx); err != nil {
		return nil, conv, "", nil, err
	}
	conv.WebSocket.Messages = []WSMessage{{From: SideClient, Opcode: "text", Length: 5, Fragments: 1}, {From: SideServer, Opcode: "text", Length: 5, Fragments: 1}}
	ended := make(chan error, 1)
	go func() {
		_, _, err := c.Read(ctx)
		ended <- err
	}()
	return c, conv, connHeader, ended, nil
}

func runIdleTimeout(e *Env) error {
	l, err := e.startNginxLab("", "", e.proxyTo("/", "", fmt.Sprintf("            proxy_read_timeout %ds;\n", int(idleTimeout.Seconds()))))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(e.ctx, 20*time.Second)
	defer cancel()
	c, conv, connHeader, ended, err := l.idleWS(ctx, "/idle")
	if err != nil {
		return err
	}
	defer c.CloseNow()
	select {
	case <-ended: // nginx closed the connection (FIN, no close frame)
	case <-time.After(idleTimeout + 3*time.Second):
		return fmt.Errorf("nginx did not close the idle connection")
	}
	at := time.Now().UTC()
	c.CloseNow()
	conv.Closes = []Close{{By: SideServer, How: CloseFIN}, {By: SideClient, How: CloseFIN, At: at}}
	conv.ConnState = "SF"
	conv.End = at
	if _, err := l.record(conv, connHeader, "/idle", "u1", true); err != nil {
		return err
	}
	if err := l.stop(); err != nil {
		return err
	}
	params := map[string]float64{"idle_timeout_s": idleTimeout.Seconds()}
	e.Plant("idle-timeout-teardown", fmt.Sprintf("after one message each way the WebSocket through nginx stayed idle; nginx's proxy_read_timeout %s closed the client and upstream connections", idleTimeout), params, "c1", "u1")
	e.PlantOptional("upstream-timeout", "nginx logs the idle teardown as \"upstream timed out (110: Connection timed out) while proxying upgraded connection\"", "c1", "u1")
	return nil
}

// runIdleTimeoutTwin: the same idle WebSocket with proxy_read_timeout 60s
// stays open through the capture.
func runIdleTimeoutTwin(e *Env) error {
	const idle = 6 * time.Second
	l, err := e.startNginxLab("", "", e.proxyTo("/", "", "            proxy_read_timeout 60s;\n"))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(e.ctx, 20*time.Second)
	defer cancel()
	c, conv, connHeader, ended, err := l.idleWS(ctx, "/idle")
	if err != nil {
		return err
	}
	defer c.CloseNow()
	select {
	case err := <-ended:
		return fmt.Errorf("the idle connection ended: %v", err)
	case <-time.After(idle):
	}
	conv.OpenAtEnd = true
	v, err := l.up.wait(conv.Client, false, time.Second)
	if err != nil {
		return err
	}
	upConv := l.upstreamConversation("u1", &conv, v)
	upConv.OpenAtEnd = true
	e.AddConversation(conv)
	e.AddConversation(upConv)
	l.join(&conv, connHeader, "GET /idle HTTP/1.1", &upConv)
	if err := l.cap.stop(); err != nil {
		return err
	}
	e.Note("the conversations were still open, idle for %s, when the capture stopped; the lab closed them afterwards", idle)
	c.CloseNow()
	return l.ng.stop()
}

// runStracePlain: the PING server under plain strace -f -tt (no -yy):
// joins go through accept's peer address.
func runStracePlain(e *Env) error {
	server := e.AddrPort(hostServer, closeWaitPort)
	cap, err := e.startCapture(captureSpec{File: "capture.pcap"})
	if err != nil {
		return err
	}
	p, err := e.startPeer("server", "close-wait-server", closeWaitArgs{Listen: server.String(), CloseAfter: 0},
		&straceSpec{File: "server.strace", Flags: stracePlain()})
	if err != nil {
		return err
	}
	for i := range 3 {
		id := fmt.Sprintf("c%d", i+1)
		d := dialFrom(e.ctx, e.IP(hostClient), server, 3*time.Second, nil)
		if d.Err != nil {
			return d.Err
		}
		conv := Conversation{ID: id, Role: "PING, then close", Client: d.Local.String(), Server: server.String(),
			Files: []string{"capture.pcap"}, Handshake: HandshakeCompleted, Start: d.Start, ClientBytes: 6, ServerBytes: 7}
		d.Conn.Write([]byte("PING\r\n"))
		buf := make([]byte, 7)
		if _, err := d.Conn.Read(buf); err != nil {
			return err
		}
		at := time.Now().UTC()
		d.Conn.Close()
		closed, err := p.wait("closed", 3*time.Second)
		if err != nil {
			return err
		}
		ev, err := p.acceptedBy(conv.Client, time.Second)
		if err != nil {
			return err
		}
		conv.Closes = []Close{{By: SideClient, How: CloseFIN, At: at}, {By: SideServer, How: CloseFIN, At: closed.At}}
		conv.ConnState = "SF"
		conv.End = closed.At
		e.AddConversation(conv)
		e.AddStraceJoin(StraceJoin{File: "server.strace", FD: ev.FD, Local: ev.Local, Peer: ev.Peer, Conversation: id})
	}
	if err := cap.stop(); err != nil {
		return err
	}
	if err := p.stop(); err != nil {
		return err
	}
	e.setStracePID("server.strace", p.pid)
	return nil
}
