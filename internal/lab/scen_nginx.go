package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/coder/websocket"
)

// Ports of the nginx scenarios: nginx listens on 127.0.N.10:8080 and
// proxies to the lab's upstream on 127.0.N.11:9000.
const (
	nginxPort    = 8080
	upstreamPort = 9000
)

// upstreamVisit is what the lab's upstream saw of one proxied request:
// nginx's connection serial and client (from the X-Lab-* headers nginx
// set), the upstream connection's 4-tuple, and how it ended.
type upstreamVisit struct {
	Connection int64
	Nginx      string // nginx's side of the upstream connection
	Upstream   string
	Start      time.Time
	// End is how the upstream's connection ended: "eof" (FIN from nginx),
	// "reset" (RST from nginx), or "" while it is open.
	End    string
	EndAt  time.Time
	closed chan struct{}
}

// upstream is the lab's backend behind nginx.
type upstream struct {
	addr netip.AddrPort
	mu   sync.Mutex
	seen map[string]*upstreamVisit // by client ip:port (X-Lab-Client)
	// floodTotal is how many bytes /flood sends, in 1 KiB messages.
	floodTotal int
}

func (u *upstream) visit(r *http.Request) *upstreamVisit {
	conn, _ := strconv.ParseInt(r.Header.Get("X-Lab-Connection"), 10, 64)
	local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	v := &upstreamVisit{Connection: conn, Nginx: r.RemoteAddr, Start: time.Now().UTC(), closed: make(chan struct{})}
	if local != nil {
		v.Upstream = local.String()
	}
	u.mu.Lock()
	u.seen[r.Header.Get("X-Lab-Client")] = v
	u.mu.Unlock()
	return v
}

// ended records how the upstream's connection ended, from the error that
// ended it.
func (v *upstreamVisit) ended(err error) {
	v.End = "eof"
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		v.End = "reset"
	}
	v.EndAt = time.Now().UTC()
	close(v.closed)
}

// wait returns the visit of client, once the upstream has seen it, and
// once it ended when ended is set.
func (u *upstream) wait(client string, ended bool, timeout time.Duration) (*upstreamVisit, error) {
	deadline := time.Now().Add(timeout)
	for {
		u.mu.Lock()
		v := u.seen[client]
		u.mu.Unlock()
		if v != nil {
			if !ended {
				return v, nil
			}
			select {
			case <-v.closed:
				return v, nil
			case <-time.After(time.Until(deadline)):
				return nil, fmt.Errorf("upstream: connection for %s did not end", client)
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("upstream: no request from nginx for client %s", client)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startUpstream serves the lab's backend:
//
//	/        200 with a 1000-byte body
//	/slow    reads the request and never answers
//	/ws      WebSocket echo until the close handshake
//	/flood   WebSocket: sends floodTotal bytes in 1 KiB text messages, then
//	         closes with 1000 and waits for the close to complete
//	/ticker  WebSocket: 100 bytes every 50 ms until the connection fails
//	/idle    WebSocket: echoes one message, then only reads
func (e *Env) startUpstream() (*upstream, error) {
	u := &upstream{addr: e.AddrPort(hostUpstream, upstreamPort), seen: map[string]*upstreamVisit{}, floodTotal: 64 * 1024}
	ln, err := listen(u.addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		v := u.visit(r)
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body(1000))
		go func() { <-r.Context().Done(); v.ended(nil) }()
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		v := u.visit(r)
		<-r.Context().Done() // nginx gives up and closes
		v.ended(nil)
	})
	ws := func(path string, serve func(ctx context.Context, c *websocket.Conn) error) {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			v := u.visit(r)
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				v.ended(err)
				return
			}
			defer c.CloseNow()
			v.ended(serve(context.Background(), c))
		})
	}
	ws("/ws", func(ctx context.Context, c *websocket.Conn) error {
		for {
			typ, data, err := c.Read(ctx)
			if err != nil {
				return err
			}
			if err := c.Write(ctx, typ, data); err != nil {
				return err
			}
		}
	})
	ws("/flood", func(ctx context.Context, c *websocket.Conn) error {
		msg := body(1024)
		for sent := 0; sent < u.floodTotal; sent += len(msg) {
			if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
				return err
			}
		}
		_, _, err := c.Read(ctx) // the close handshake, or the end nginx makes
		return err
	})
	ws("/ticker", func(ctx context.Context, c *websocket.Conn) error {
		failed := make(chan error, 1)
		go func() {
			_, _, err := c.Read(ctx)
			failed <- err
		}()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case err := <-failed:
				return err
			case <-tick.C:
				if err := c.Write(ctx, websocket.MessageText, body(100)); err != nil {
					return err
				}
			}
		}
	})
	ws("/idle", func(ctx context.Context, c *websocket.Conn) error {
		typ, data, err := c.Read(ctx)
		if err != nil {
			return err
		}
		if err := c.Write(ctx, typ, data); err != nil {
			return err
		}
		_, _, err = c.Read(ctx)
		return err
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	e.Defer(func() { srv.Close() })
	return u, nil
}

// nginxLab is a scenario's nginx, upstream and capture.
type nginxLab struct {
	e     *Env
	ng    *nginxProc
	up    *upstream
	cap   *capture
	nginx netip.AddrPort
}

// startNginxLab starts the upstream, nginx (listening with extra listen
// parameters, server directives and locations) and the capture.
func (e *Env) startNginxLab(listenParams, server, locations string) (*nginxLab, error) {
	l := &nginxLab{e: e, nginx: e.AddrPort(hostNginx, nginxPort)}
	var err error
	if l.up, err = e.startUpstream(); err != nil {
		return nil, err
	}
	if l.ng, err = e.startNginx(nginxSpec{
		Listen:   l.nginx.String() + listenParams,
		Bind:     e.IP(hostNginx).String(),
		Server:   server,
		Location: locations,
	}); err != nil {
		return nil, err
	}
	if l.cap, err = e.startCapture(captureSpec{File: "capture.pcap"}); err != nil {
		return nil, err
	}
	return l, nil
}

// proxyTo is a location block proxying path to the lab's upstream (or to
// target, when set), with extra directives.
func (e *Env) proxyTo(path, target, extra string) string {
	if target == "" {
		target = e.AddrPort(hostUpstream, upstreamPort).String()
	}
	return "        location " + path + " {\n            proxy_pass http://" + target + ";\n" + extra + "        }\n"
}

// stop ends the capture, then nginx, and records the files.
func (l *nginxLab) stop() error {
	if err := l.cap.stop(); err != nil {
		return err
	}
	return l.ng.stop()
}

// join records a client conversation's nginx connection serial and, when
// the upstream saw the request, the upstream conversation.
func (l *nginxLab) join(conv *Conversation, connHeader, request string, upstreamConv *Conversation) {
	conn, _ := strconv.ParseInt(connHeader, 10, 64)
	j := NginxJoin{Connection: conn, Client: conv.Client, Server: l.nginx.String(), Request: request, Conversation: conv.ID}
	if upstreamConv != nil {
		j.Upstream = &Flow{Client: upstreamConv.Client, Server: upstreamConv.Server}
		j.UpstreamConversation = upstreamConv.ID
	}
	l.e.AddNginxJoin(j)
}

// upstreamConversation builds the conversation nginx made to the upstream
// for a client conversation, from what the upstream saw.
func (l *nginxLab) upstreamConversation(id string, client *Conversation, v *upstreamVisit) Conversation {
	c := Conversation{ID: id, Role: "nginx to upstream for " + client.ID, Client: v.Nginx, Server: v.Upstream,
		Files: []string{"capture.pcap"}, Handshake: HandshakeCompleted, Start: v.Start}
	switch v.End {
	case "eof":
		c.Closes = []Close{{By: SideClient, How: CloseFIN, At: v.EndAt}, {By: SideServer, How: CloseFIN}}
		c.End = v.EndAt
	case "reset":
		c.Closes = []Close{{By: SideClient, How: CloseRST, At: v.EndAt}}
		c.End = v.EndAt
	default:
		c.OpenAtEnd = true
	}
	return c
}

// get sends one GET through nginx on a fresh connection (Connection:
// close) and returns the conversation and nginx's connection serial.
func (l *nginxLab) get(id, path string) (Conversation, string, error) {
	d := dialFrom(l.e.ctx, l.e.IP(hostClient), l.nginx, 3*time.Second, nil)
	conv := Conversation{ID: id, Role: "HTTP GET " + path + " through nginx", Client: d.Local.String(), Server: l.nginx.String(),
		Files: []string{"capture.pcap"}, Start: d.Start}
	if d.Err != nil {
		return conv, "", d.Err
	}
	defer d.Conn.Close()
	conv.Handshake = HandshakeCompleted
	resp, err := httpGet(d.Conn, bufio.NewReader(d.Conn), l.nginx.String(), path, false)
	if err != nil {
		return conv, "", fmt.Errorf("%s: %w", id, err)
	}
	conv.HTTP = []HTTPExchange{{Method: "GET", URI: path, Status: resp.StatusCode}}
	conv.End = time.Now().UTC()
	return conv, resp.Header.Get("X-Lab-Connection"), nil
}

// dialWS opens a WebSocket through nginx.
func (l *nginxLab) dialWS(ctx context.Context, id, path string, setup func(fd int) error) (*websocket.Conn, Conversation, dialed, string, error) {
	hc, last := l.e.wsDialer(l.e.IP(hostClient), setup)
	c, resp, err := websocket.Dial(ctx, "ws://"+l.nginx.String()+path, &websocket.DialOptions{HTTPClient: hc})
	d := last()
	conv := Conversation{ID: id, Role: "WebSocket " + path + " through nginx", Client: d.Local.String(), Server: l.nginx.String(),
		Files: []string{"capture.pcap"}, Start: d.Start}
	if err != nil {
		return nil, conv, d, "", fmt.Errorf("%s: %w", id, err)
	}
	conv.Handshake = HandshakeCompleted
	conv.HTTP = []HTTPExchange{{Method: "GET", URI: path, Status: resp.StatusCode}}
	conv.Upgrade = &Upgrade{Verdict: UpgradeOK, Status: resp.StatusCode}
	conv.WebSocket = &WebSocket{}
	return c, conv, d, resp.Header.Get("X-Lab-Connection"), nil
}

// record adds a client conversation, the upstream one when the upstream
// saw it (waiting for its end when ended is set), and their join.
func (l *nginxLab) record(conv Conversation, connHeader, path string, upID string, ended bool) (*Conversation, error) {
	v, err := l.up.wait(conv.Client, ended, 10*time.Second)
	if err != nil {
		return nil, err
	}
	upConv := l.upstreamConversation(upID, &conv, v)
	l.e.AddConversation(conv)
	l.e.AddConversation(upConv)
	l.join(&conv, connHeader, "GET "+path+" HTTP/1.1", &upConv)
	return &upConv, nil
}

// tcpState reads the kernel's state of a socket (tcpi_state of TCP_INFO,
// the first byte): 7 is TCP_CLOSE, where a RST leaves a socket its owner
// has not closed.
func tcpState(c *net.TCPConn) (uint8, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var info [256]byte
	var state uint8
	var serr error
	rc.Control(func(fd uintptr) {
		l := uint32(len(info))
		_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_INFO,
			uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&l)), 0)
		if errno != 0 {
			serr = errno
		}
		state = info[0]
	})
	return state, serr
}

const tcpClose = 7
