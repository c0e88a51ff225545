package lab

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// A peer is a scenario server run as its own process, so that strace traces
// it alone: the lab re-executes its own binary with the role named in
// roleEnv. The peer reports what it did (its pid, each accepted fd and its
// addresses) as JSON lines in a report file it writes with pwrite(2), a
// call left out of the strace filter, so the trace holds only the
// evidence. SIGTERM stops it; it then reports its thread ids and exits.
const (
	roleEnv       = "WIREMORTEM_LAB_ROLE"
	roleArgsEnv   = "WIREMORTEM_LAB_ROLE_ARGS"
	roleReportEnv = "WIREMORTEM_LAB_ROLE_REPORT"
)

// straceTrace is the syscall filter for traced peers: the socket calls and
// every read and write, without the Go runtime's futex/nanosleep/epoll_pwait
// noise.
const straceTrace = "trace=socket,bind,listen,accept,accept4,connect,getsockname,getpeername,setsockopt,shutdown,close,read,write,readv,writev,recvfrom,sendto,recvmsg,sendmsg,epoll_ctl"

// roleEvent is one line of a peer's report.
type roleEvent struct {
	Event string `json:"event"` // ready, accepted, closed, note, error, exit
	PID   int    `json:"pid,omitempty"`
	FD    int    `json:"fd,omitempty"`
	Local string `json:"local,omitempty"`
	Peer  string `json:"peer,omitempty"`
	Msg   string `json:"msg,omitempty"`
	// Backlog is listen(2)'s argument, in a ready event.
	Backlog int       `json:"backlog,omitempty"`
	TIDs    []int     `json:"tids,omitempty"`
	At      time.Time `json:"at"`
}

// roles maps a role name to the code a peer runs; each scenario file adds
// its own.
var roles = map[string]func(args []byte, r *reporter) error{}

// RunRoleIfAsked runs the scenario peer role this process was started for
// and exits; it returns at once in any other process. Programs and test
// binaries that run scenarios call it first thing in main or TestMain.
func RunRoleIfAsked() {
	name := os.Getenv(roleEnv)
	if name == "" {
		return
	}
	r, err := openReporter(os.Getenv(roleReportEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab peer:", err)
		os.Exit(1)
	}
	run, ok := roles[name]
	if !ok {
		r.emit(roleEvent{Event: "error", Msg: "unknown role " + name})
		os.Exit(1)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	go func() {
		if err := run([]byte(os.Getenv(roleArgsEnv)), r); err != nil {
			r.emit(roleEvent{Event: "error", Msg: err.Error()})
		}
	}()
	<-stop
	r.emit(roleEvent{Event: "exit", TIDs: threadIDs()})
	os.Exit(0)
}

// reporter writes a peer's report with pwrite(2) (see roleEnv).
type reporter struct {
	mu  sync.Mutex
	f   *os.File
	off int64
}

func openReporter(path string) (*reporter, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	return &reporter{f: f}, nil
}

func (r *reporter) emit(ev roleEvent) {
	if ev.At.IsZero() {
		ev.At = time.Now().UTC()
	}
	b, _ := json.Marshal(ev)
	b = append(b, '\n')
	r.mu.Lock()
	defer r.mu.Unlock()
	n, _ := r.f.WriteAt(b, r.off)
	r.off += int64(n)
}

// accepted reports an accepted connection with its fd.
func (r *reporter) accepted(c *net.TCPConn) {
	r.emit(roleEvent{Event: "accepted", FD: connFD(c), Local: c.LocalAddr().String(), Peer: c.RemoteAddr().String()})
}

// connFD is the file descriptor behind a connection (without dup'ing it,
// as File() would).
func connFD(c *net.TCPConn) int {
	fd := -1
	if rc, err := c.SyscallConn(); err == nil {
		rc.Control(func(u uintptr) { fd = int(u) })
	}
	return fd
}

func threadIDs() []int {
	ents, _ := os.ReadDir("/proc/self/task")
	var tids []int
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, n)
		}
	}
	slices.Sort(tids)
	return tids
}

// straceSpec asks for a peer to be run under strace.
type straceSpec struct {
	File  string   // name in the scenario directory
	Flags []string // e.g. -f -tt -T -yy
}

// peer is a running scenario peer process.
type peer struct {
	e      *Env
	name   string
	role   string
	cmd    *exec.Cmd
	report string
	trace  *straceSpec
	args   []string

	mu     sync.Mutex
	events []roleEvent
	read   int64
	pid    int
	ready  roleEvent
	exited bool
}

// startPeer starts a peer process (under strace when trace is set) and
// waits for it to report "ready".
func (e *Env) startPeer(name, role string, args any, trace *straceSpec) (*peer, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "lab-peer-")
	if err != nil {
		return nil, err
	}
	e.Defer(func() { os.RemoveAll(tmp) })
	argJSON, err := json.Marshal(args)
	if err != nil {
		return nil, err
	}
	p := &peer{e: e, name: name, role: role, report: filepath.Join(tmp, "report.jsonl"), trace: trace}
	p.args = []string{exe}
	if trace != nil {
		p.args = slices.Concat([]string{"strace", "-o", e.Path(trace.File)}, trace.Flags, []string{"--", exe})
	}
	p.cmd = exec.Command(p.args[0], p.args[1:]...)
	p.cmd.Env = append(e.Environ(), roleEnv+"="+role, roleArgsEnv+"="+string(argJSON), roleReportEnv+"="+p.report)
	p.cmd.Stderr = os.Stderr
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	e.Defer(func() { p.kill() })
	ready, err := p.wait("ready", 10*time.Second)
	if err != nil {
		return nil, err
	}
	p.pid = ready.PID
	p.ready = ready
	return p, nil
}

// poll reads the new complete lines of the report.
func (p *peer) poll() error {
	f, err := os.Open(p.report)
	if err != nil {
		return nil // not written yet
	}
	defer f.Close()
	if _, err := f.Seek(p.read, 0); err != nil {
		return err
	}
	br := bufio.NewReader(f)
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			return nil // a partial line waits for the next poll
		}
		p.read += int64(len(line))
		var ev roleEvent
		if err := json.Unmarshal(bytes.TrimSpace(line), &ev); err != nil {
			return fmt.Errorf("peer %s report: %w", p.name, err)
		}
		if ev.Event == "error" {
			return fmt.Errorf("peer %s: %s", p.name, ev.Msg)
		}
		p.events = append(p.events, ev)
	}
}

// wait returns the first event of the kind not returned before.
func (p *peer) wait(kind string, timeout time.Duration) (roleEvent, error) {
	deadline := time.Now().Add(timeout)
	for {
		p.mu.Lock()
		err := p.poll()
		for i, ev := range p.events {
			if ev.Event == kind {
				p.events = slices.Delete(p.events, i, i+1)
				p.mu.Unlock()
				return ev, nil
			}
		}
		p.mu.Unlock()
		if err != nil {
			return roleEvent{}, err
		}
		if time.Now().After(deadline) {
			return roleEvent{}, fmt.Errorf("peer %s: no %q event after %s", p.name, kind, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// acceptedBy waits for the accepted event whose peer address is addr.
func (p *peer) acceptedBy(addr string, timeout time.Duration) (roleEvent, error) {
	deadline := time.Now().Add(timeout)
	for {
		p.mu.Lock()
		err := p.poll()
		for _, ev := range p.events {
			if ev.Event == "accepted" && ev.Peer == addr {
				p.mu.Unlock()
				return ev, nil
			}
		}
		p.mu.Unlock()
		if err != nil {
			return roleEvent{}, err
		}
		if time.Now().After(deadline) {
			return roleEvent{}, fmt.Errorf("peer %s: never accepted %s", p.name, addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop sends SIGTERM, waits for the peer (and strace) to exit, and records
// the process and its strace file.
func (p *peer) stop() error {
	if err := syscall.Kill(p.pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("peer %s: %w", p.name, err)
	}
	exit, err := p.wait("exit", 10*time.Second)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		err = fmt.Errorf("peer %s did not exit", p.name)
	}
	p.exited = true
	if err != nil {
		return fmt.Errorf("peer %s: %w", p.name, err)
	}
	p.e.AddProcess(Process{Name: p.name, Role: p.role, PID: p.pid, TIDs: exit.TIDs, Listen: p.ready.Local, Backlog: p.ready.Backlog})
	if p.trace != nil {
		p.e.AddFile(File{
			Name:        p.trace.File,
			Kind:        KindStrace,
			Command:     p.args,
			StraceFlags: p.trace.Flags,
			Process:     p.name,
		})
	}
	return nil
}

func (p *peer) kill() {
	if !p.exited && p.cmd.Process != nil {
		if p.pid > 0 {
			syscall.Kill(p.pid, syscall.SIGKILL)
		}
		p.cmd.Process.Kill()
		p.cmd.Wait()
		p.exited = true
	}
}

// straceFull and stracePlain are the two strace flag sets scenarios use:
// with -yy every fd carries its socket's addresses; without it the join
// must go through accept's peer address.
func straceFull() []string  { return []string{"-f", "-tt", "-T", "-yy", "-e", straceTrace} }
func stracePlain() []string { return []string{"-f", "-tt", "-e", straceTrace} }
