package lab

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"
)

// closeBook collects the server side's closes by client address, written
// by handler goroutines and read when the conversation is recorded.
type closeBook struct {
	mu     sync.Mutex
	closes map[string][]Close
	fds    map[string]int
	done   map[string]chan struct{}
}

func newCloseBook() *closeBook {
	return &closeBook{closes: map[string][]Close{}, fds: map[string]int{}, done: map[string]chan struct{}{}}
}

func (b *closeBook) add(client string, c Close) {
	b.mu.Lock()
	b.closes[client] = append(b.closes[client], c)
	b.mu.Unlock()
}

func (b *closeBook) get(client string) []Close {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closes[client]
}

// finished marks a server handler done with client's connection.
func (b *closeBook) finished(client string) {
	b.mu.Lock()
	ch := b.doneChan(client)
	b.mu.Unlock()
	close(ch)
}

// wait blocks until the handler for client is done, or timeout.
func (b *closeBook) wait(client string, timeout time.Duration) error {
	b.mu.Lock()
	ch := b.doneChan(client)
	b.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("server handler for %s not done after %s", client, timeout)
	}
}

func (b *closeBook) doneChan(client string) chan struct{} {
	ch, ok := b.done[client]
	if !ok {
		ch = make(chan struct{})
		b.done[client] = ch
	}
	return ch
}

// serve accepts connections on ln until the scenario ends and runs handle
// on each in its own goroutine.
func (e *Env) serve(ln *net.TCPListener, handle func(c *net.TCPConn)) {
	e.Defer(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
}

// httpResponder answers one HTTP request per connection with a body of
// size bytes, then closes with FIN. When serverClosesFirst is false it
// instead waits for the client's FIN before closing.
func httpResponder(book *closeBook, size int, serverClosesFirst bool) func(c *net.TCPConn) {
	return func(c *net.TCPConn) {
		client := c.RemoteAddr().String()
		defer book.finished(client)
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			c.Close()
			return
		}
		io.Copy(io.Discard, req.Body)
		hdr := "Connection: close\r\n"
		if !serverClosesFirst {
			hdr = ""
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n", size, hdr)
		c.Write(body(size))
		if !serverClosesFirst {
			io.Copy(io.Discard, br) // until the client's FIN
		}
		book.add(client, Close{By: SideServer, How: CloseFIN, At: time.Now().UTC()})
		c.Close()
	}
}

// body is size bytes of printable text.
func body(size int) []byte {
	const line = "wiremortem lab body 0123456789 abcdefghijklmnopqrstuvwxyz\n"
	return []byte(strings.Repeat(line, size/len(line)+1)[:size])
}

// httpGet sends one GET and reads the response; with keepAlive false the
// request says Connection: close.
func httpGet(c net.Conn, br *bufio.Reader, host, uri string, keepAlive bool) (*http.Response, error) {
	conn := "close"
	if keepAlive {
		conn = "keep-alive"
	}
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: wiremortem-lab\r\nConnection: %s\r\n\r\n", uri, host, conn); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, err
}

// cleanGet runs one clean HTTP exchange on a fresh conversation: the
// handshake, a GET, a response of size bytes, and a FIN from each side
// (the server first when serverClosesFirst). The server must run
// httpResponder with the same book and serverClosesFirst.
func (e *Env) cleanGet(id, role string, from netip.Addr, to netip.AddrPort, book *closeBook, size int, serverClosesFirst bool, setup func(fd int) error) (Conversation, error) {
	d := dialFrom(e.ctx, from, to, 3*time.Second, setup)
	conv := Conversation{ID: id, Role: role, Client: d.Local.String(), Server: to.String(), Start: d.Start}
	if d.Err != nil {
		return conv, fmt.Errorf("%s: %w", id, d.Err)
	}
	conv.Handshake = HandshakeCompleted
	br := bufio.NewReader(d.Conn)
	uri := "/" + id
	resp, err := httpGet(d.Conn, br, to.String(), uri, !serverClosesFirst)
	if err != nil {
		return conv, fmt.Errorf("%s: %w", id, err)
	}
	conv.HTTP = []HTTPExchange{{Method: "GET", URI: uri, Status: resp.StatusCode}}
	conv.ServerBytes = int64(size)
	var closes []Close
	if serverClosesFirst {
		if _, err := io.Copy(io.Discard, br); err != nil { // until the server's FIN
			return conv, err
		}
		if err := book.wait(conv.Client, 3*time.Second); err != nil {
			return conv, err
		}
		closes = append(book.get(conv.Client), Close{By: SideClient, How: CloseFIN, At: time.Now().UTC()})
		d.Conn.Close()
	} else {
		closes = []Close{{By: SideClient, How: CloseFIN, At: time.Now().UTC()}}
		d.Conn.Close()
		if err := book.wait(conv.Client, 3*time.Second); err != nil {
			return conv, err
		}
		closes = append(closes, book.get(conv.Client)...)
	}
	conv.Closes = closes
	conv.ConnState = "SF"
	conv.End = time.Now().UTC()
	return conv, nil
}

// isTimeout reports whether err is a connect timeout (ETIMEDOUT or the
// dialer's own deadline).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, syscall.ETIMEDOUT) || (errors.As(err, &ne) && ne.Timeout())
}
