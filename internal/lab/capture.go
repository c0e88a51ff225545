package lab

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// snaplenFull is what tcpdump -s 0 means: 262144 bytes, more than any
// loopback packet (MTU 65536).
const snaplenFull = 262144

// captureSpec says what one tcpdump writes.
type captureSpec struct {
	File     string // name in the scenario directory
	Iface    string // "lo" (default) or "any"
	LinkType string // -y, e.g. "LINUX_SLL2"
	Filter   string // default: the scenario's net
	// RotateSeconds is tcpdump's -G argument: a new file every so many
	// seconds (when a packet arrives after the interval), named by File
	// with its "%s" replaced by the epoch second the part starts. (-C
	// counts in millions of bytes in tcpdump 4.99.3, too big for a small
	// corpus.)
	RotateSeconds int
	// Temp captures are inputs of a later step (mergecap) and are not
	// recorded as artifacts; stop leaves their facts in capture.result.
	Temp bool
}

// capture is a running tcpdump.
type capture struct {
	e      *Env
	spec   captureSpec
	cmd    *exec.Cmd
	args   []string
	done   chan struct{}
	stderr strings.Builder
	result File
}

// startCapture starts tcpdump and waits until it is capturing (it prints
// "listening on" once the socket is bound and the filter is in place).
func (e *Env) startCapture(spec captureSpec) (*capture, error) {
	spec.Iface = cmp.Or(spec.Iface, "lo")
	spec.Filter = cmp.Or(spec.Filter, e.NetFilter())
	// -U: each packet is written as soon as tcpdump has it. Not
	// --immediate-mode: libpcap then uses TPACKET_V2 frames of snaplen
	// (256 KiB with -s 0) each, and its 2 MiB ring drops a burst of more
	// than eight packets; TPACKET_V3 packs packets into blocks that the
	// kernel hands over within the 1 s timeout, so stop waits longer than
	// that. -B 16384: a 16 MiB ring. -n: no name lookups. -Z root: the
	// files stay root's instead of tcpdump's user.
	args := []string{"tcpdump", "-i", spec.Iface, "-n", "-U", "-B", "16384", "-s", "0", "-Z", "root"}
	if spec.LinkType != "" {
		args = append(args, "-y", spec.LinkType)
	}
	if spec.RotateSeconds > 0 {
		args = append(args, "-G", strconv.Itoa(spec.RotateSeconds))
	}
	args = append(args, "-w", e.Path(spec.File), spec.Filter)
	c := &capture{e: e, spec: spec, args: args, done: make(chan struct{})}
	c.cmd = exec.CommandContext(e.ctx, args[0], args[1:]...)
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan bool, 1)
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			c.stderr.WriteString(line + "\n")
			if !signalled && strings.Contains(line, "listening on") {
				ready <- true
				signalled = true
			}
		}
		if !signalled {
			ready <- false
		}
		io.Copy(io.Discard, stderr)
	}()
	e.Defer(func() { c.kill() })
	select {
	case ok := <-ready:
		if !ok {
			c.cmd.Wait()
			return nil, fmt.Errorf("tcpdump did not start: %s", c.stderr.String())
		}
	case <-time.After(10 * time.Second):
		c.kill()
		return nil, fmt.Errorf("tcpdump not listening after 10s: %s", c.stderr.String())
	}
	return c, nil
}

func (c *capture) kill() {
	if c.cmd.ProcessState == nil && c.cmd.Process != nil {
		c.cmd.Process.Kill()
		c.cmd.Wait()
	}
}

var (
	capturedRE = regexp.MustCompile(`(\d+) packets? captured`)
	droppedRE  = regexp.MustCompile(`(\d+) packets? dropped by kernel`)
	linkRE     = regexp.MustCompile(`link-type (\S+)`)
)

// captureDrain is how long stop waits before SIGINT: longer than libpcap's
// 1 s block timeout, so the last packets have reached tcpdump.
const captureDrain = 1200 * time.Millisecond

// stop lets the last packets reach tcpdump, stops it with SIGINT (it then
// flushes and prints its counts), and records the file or its parts.
func (c *capture) stop() error {
	time.Sleep(captureDrain)
	if c.cmd.ProcessState != nil {
		return fmt.Errorf("tcpdump exited early: %s", c.stderr.String())
	}
	c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.kill()
		return fmt.Errorf("tcpdump did not stop on SIGINT")
	}
	c.cmd.Wait()
	out := c.stderr.String()
	m := capturedRE.FindStringSubmatch(out)
	if m == nil {
		return fmt.Errorf("tcpdump printed no packet count: %s", out)
	}
	packets, _ := strconv.Atoi(m[1])
	if d := droppedRE.FindStringSubmatch(out); d != nil && d[1] != "0" {
		return fmt.Errorf("tcpdump %s: %s packets dropped by kernel", c.spec.File, d[1])
	}
	link := ""
	if l := linkRE.FindStringSubmatch(out); l != nil {
		link = l[1]
	}
	f := File{
		Name:       c.spec.File,
		Kind:       KindPcap,
		Command:    c.args,
		Interfaces: []string{c.spec.Iface},
		LinkTypes:  []string{link},
		Filter:     c.spec.Filter,
		Snaplen:    snaplenFull,
		Packets:    packets,
	}
	c.result = f
	if c.spec.Temp {
		return nil
	}
	if c.spec.RotateSeconds == 0 {
		c.e.AddFile(f)
		return nil
	}
	parts, err := c.parts()
	if err != nil {
		return err
	}
	for i, name := range parts {
		p := f
		p.Name = name
		p.Packets = 0 // tcpdump counts the whole capture, not each part
		p.Rotation = &Rotation{Set: c.spec.File, Part: i}
		p.Command = slices.Clone(p.Command)
		c.e.AddFile(p)
	}
	return nil
}

// parts lists a rotated capture's files in time order.
func (c *capture) parts() ([]string, error) {
	prefix, suffix, _ := strings.Cut(c.spec.File, "%s")
	matches, err := filepath.Glob(c.e.Path(prefix + "*" + suffix))
	if err != nil {
		return nil, err
	}
	type part struct {
		name  string
		epoch int64
	}
	var ps []part
	for _, m := range matches {
		name := filepath.Base(m)
		epoch, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(name, prefix), suffix), 10, 64)
		if err != nil {
			continue
		}
		ps = append(ps, part{name, epoch})
	}
	slices.SortFunc(ps, func(a, b part) int { return cmp.Compare(a.epoch, b.epoch) })
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.name
	}
	return names, nil
}
