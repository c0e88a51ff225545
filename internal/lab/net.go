package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// dialed is a client connection and the local address the lab read back
// with getsockname before connecting, so it knows the client port even
// when the connect fails.
type dialed struct {
	Conn  *net.TCPConn // nil when the connect failed
	Local netip.AddrPort
	Start time.Time
	Err   error
}

// dialFrom connects from local (port 0: the kernel picks one) to remote
// within timeout. setup, when set, runs on the socket before connect (to
// set SO_RCVBUF, say).
func dialFrom(ctx context.Context, local netip.Addr, remote netip.AddrPort, timeout time.Duration, setup func(fd int) error) dialed {
	var d dialed
	dialer := net.Dialer{
		Timeout: timeout,
		Control: func(network, address string, rc syscall.RawConn) error {
			var err error
			cerr := rc.Control(func(u uintptr) {
				fd := int(u)
				if setup != nil {
					if err = setup(fd); err != nil {
						return
					}
				}
				if err = syscall.Bind(fd, sockaddr(netip.AddrPortFrom(local, 0))); err != nil {
					return
				}
				var sa syscall.Sockaddr
				if sa, err = syscall.Getsockname(fd); err == nil {
					d.Local = addrPortOf(sa)
				}
			})
			return errors.Join(cerr, err)
		},
	}
	d.Start = time.Now().UTC()
	c, err := dialer.DialContext(ctx, "tcp", remote.String())
	if err != nil {
		d.Err = err
		return d
	}
	d.Conn = c.(*net.TCPConn)
	return d
}

func sockaddr(ap netip.AddrPort) syscall.Sockaddr {
	if ap.Addr().Is4() {
		return &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

func addrPortOf(sa syscall.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *syscall.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
	}
	return netip.AddrPort{}
}

// listen opens a plain TCP listener on addr. Go listens with MPTCP by
// default (Go 1.24); the servers the lab imitates use TCP.
func listen(addr netip.AddrPort) (*net.TCPListener, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	network := "tcp4"
	if addr.Addr().Is6() {
		network = "tcp6"
	}
	ln, err := lc.Listen(context.Background(), network, addr.String())
	if err != nil {
		return nil, err
	}
	return ln.(*net.TCPListener), nil
}

// setRcvBuf sets SO_RCVBUF (the kernel doubles it); before connect it also
// bounds the window scale the SYN offers.
func setRcvBuf(n int) func(fd int) error {
	return func(fd int) error { return syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, n) }
}

// resetClose closes c with SO_LINGER 0: the kernel sends RST, not FIN, and
// drops whatever was queued (RFC 9293 section 3.10.5 ABORT).
func resetClose(c *net.TCPConn) error {
	if err := c.SetLinger(0); err != nil {
		return err
	}
	return c.Close()
}

// watchSS runs a watch loop of `ss -tanoi` restricted to the scenario's
// net, every interval, into name, as a shell loop
// `while :; do date --rfc-3339=ns; ss -tanoi ...; sleep 0.5; done` would
// write it: a date line (in the scenario's zone), then ss's output. It
// returns a stop function that waits for the loop to end.
func (e *Env) watchSS(name string, interval time.Duration) (stop func() error) {
	filter := fmt.Sprintf("src 127.0.%d.0/24", e.sc.Net)
	args := []string{"ss", "-tanoi", filter}
	f, err := os.Create(e.Path(name))
	if err != nil {
		return func() error { return err }
	}
	quit := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		var werr error
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			now := e.Local(time.Now())
			fmt.Fprintln(f, now.Format("2006-01-02 15:04:05.000000000-07:00"))
			cmd := exec.Command(args[0], args[1:]...)
			cmd.Stdout = f
			if err := cmd.Run(); err != nil && werr == nil {
				werr = fmt.Errorf("ss: %w", err)
			}
			select {
			case <-quit:
				done <- errors.Join(werr, f.Close())
				return
			case <-t.C:
			}
		}
	}()
	var stopped bool
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		close(quit)
		err := <-done
		e.AddFile(File{Name: name, Kind: KindSS, Command: args})
		return err
	}
	e.Defer(func() { stop() })
	return stop
}

// snapshot runs a command and writes its output to name in the scenario
// directory, recording the file with the given kind.
func (e *Env) snapshot(name, kind string, args ...string) error {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = e.Environ()
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	if err := os.WriteFile(e.Path(name), out, 0o644); err != nil {
		return err
	}
	e.AddFile(File{Name: name, Kind: kind, Command: args})
	return nil
}
