package lab

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"time"
)

// runAnySLL2: a clean exchange captured on the "any" pseudo-interface,
// whose link type is Linux cooked capture v2.
func runAnySLL2(e *Env) error {
	return e.cleanScenario(captureSpec{File: "capture.pcap", Iface: "any", LinkType: "LINUX_SLL2"}, 2000)
}

// runPcapngMixed: one conversation captured on lo (Ethernet), another on
// any (SLL2), merged by mergecap into one pcapng with two interfaces of
// different link types. Each packet is in the file once.
func runPcapngMixed(e *Env) error {
	const name = "capture.pcapng"
	servers := []struct {
		port        uint16
		iface, link string
	}{{8081, "lo", ""}, {8082, "any", "LINUX_SLL2"}}
	var caps []*capture
	var parts []string
	for i, s := range servers {
		addr := e.AddrPort(hostServer, s.port)
		part := fmt.Sprintf(".part%d.pcap", i)
		c, err := e.startCapture(captureSpec{File: part, Iface: s.iface, LinkType: s.link, Temp: true,
			Filter: fmt.Sprintf("%s and port %d", e.NetFilter(), addr.Port())})
		if err != nil {
			return err
		}
		e.Defer(func() { os.Remove(e.Path(part)) })
		caps = append(caps, c)
		parts = append(parts, e.Path(part))
	}
	book := newCloseBook()
	for i, s := range servers {
		addr := e.AddrPort(hostServer, s.port)
		ln, err := listen(addr)
		if err != nil {
			return err
		}
		e.serve(ln, httpResponder(book, 1200, true))
		conv, err := e.cleanGet(fmt.Sprintf("c%d", i+1), "HTTP GET captured on "+s.iface, e.IP(hostClient), addr, book, 1200, true, nil)
		if err != nil {
			return err
		}
		conv.Files = []string{name}
		e.AddConversation(conv)
	}
	packets := 0
	var links []string
	for _, c := range caps {
		if err := c.stop(); err != nil {
			return err
		}
		packets += c.result.Packets
		links = append(links, c.result.LinkTypes...)
	}
	args := append([]string{"mergecap", "-F", "pcapng", "-w", e.Path(name)}, parts...)
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("mergecap: %v: %s", err, out)
	}
	e.AddFile(File{Name: name, Kind: KindPcapng, Command: args, Interfaces: []string{"lo", "any"}, LinkTypes: links,
		Filter: e.NetFilter() + " and port 8081 (lo) / port 8082 (any)", Snaplen: snaplenFull, Packets: packets})
	e.Note("conversation c1 is on interface 0 (lo, EN10MB), c2 on interface 1 (any, LINUX_SLL2)")
	return nil
}

// runGzip: a clean exchange, the capture compressed with gzip.
func runGzip(e *Env) error {
	if err := e.cleanScenario(captureSpec{File: "capture.pcap"}, 2000); err != nil {
		return err
	}
	return e.compress("capture.pcap", "capture.pcap.gz", "gzip", "gzip", "-9", "-n", e.Path("capture.pcap"))
}

// runZstd: a clean exchange converted to pcapng by editcap, then
// compressed with zstd.
func runZstd(e *Env) error {
	if err := e.cleanScenario(captureSpec{File: "capture.pcap"}, 2000); err != nil {
		return err
	}
	args := []string{"editcap", "-F", "pcapng", e.Path("capture.pcap"), e.Path("capture.pcapng")}
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("editcap: %v: %s", err, out)
	}
	os.Remove(e.Path("capture.pcap"))
	e.renameFile("capture.pcap", "capture.pcapng", func(f *File) {
		f.Kind = KindPcapng
		f.Command = append(f.Command, "&&", "editcap", "-F", "pcapng")
	})
	return e.compress("capture.pcapng", "capture.pcapng.zst", "zstd", "zstd", "-q", "--rm", "-19", e.Path("capture.pcapng"))
}

// compress runs a compressor that replaces from with to, and renames the
// file in the facts.
func (e *Env) compress(from, to, compression string, args ...string) error {
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", args[0], err, out)
	}
	if _, err := os.Stat(e.Path(to)); err != nil {
		return err
	}
	e.renameFile(from, to, func(f *File) {
		f.Compression = compression
		f.Command = append(f.Command, "&&", args[0])
	})
	return nil
}

// renameFile renames a recorded file everywhere the facts name it.
func (e *Env) renameFile(from, to string, edit func(f *File)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range e.facts.Files {
		if e.facts.Files[i].Name == from {
			e.facts.Files[i].Name = to
			edit(&e.facts.Files[i])
		}
	}
	for i := range e.facts.Conversations {
		for j, f := range e.facts.Conversations[i].Files {
			if f == from {
				e.facts.Conversations[i].Files[j] = to
			}
		}
	}
}

const pcapHeaderSize = 24

// runRotated: one HTTP response trickled in 2 KB chunks every 250 ms for
// 4 s, captured with tcpdump -G 1: the conversation spans several parts.
func runRotated(e *Env) error {
	const (
		chunk  = 2048
		chunks = 16
		pause  = 250 * time.Millisecond
	)
	addr := e.AddrPort(hostServer, 8080)
	ln, err := listen(addr)
	if err != nil {
		return err
	}
	c, err := e.startCapture(captureSpec{File: "capture-%s.pcap", RotateSeconds: 1})
	if err != nil {
		return err
	}
	book := newCloseBook()
	e.serve(ln, func(c *net.TCPConn) {
		client := c.RemoteAddr().String()
		defer book.finished(client)
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			c.Close()
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", chunk*chunks)
		for range chunks {
			c.Write(body(chunk))
			time.Sleep(pause)
		}
		book.add(client, Close{By: SideServer, How: CloseFIN, At: time.Now().UTC()})
		c.Close()
	})
	conv, err := e.cleanGet("c1", "one slow HTTP response spanning several capture parts", e.IP(hostClient), addr, book, chunk*chunks, true, nil)
	if err != nil {
		return err
	}
	if err := c.stop(); err != nil {
		return err
	}
	parts, err := c.parts()
	if err != nil {
		return err
	}
	if len(parts) < 3 {
		return fmt.Errorf("rotation wrote %d parts, want at least 3", len(parts))
	}
	// A part holding only the 24-byte pcap header (tcpdump opens the first
	// file before any packet comes) holds none of the conversation.
	for _, p := range parts {
		if st, err := os.Stat(e.Path(p)); err == nil && st.Size() > pcapHeaderSize {
			conv.Files = append(conv.Files, p)
		}
	}
	e.AddConversation(conv)
	e.Note("tcpdump -G 1 names each part by the epoch second it starts; tcpdump counted %d packets over all %d parts", c.result.Packets, len(parts))
	return nil
}
