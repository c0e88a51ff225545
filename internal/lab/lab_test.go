package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"wiremortem/internal/testenv"
)

func TestMain(m *testing.M) {
	RunRoleIfAsked() // the scenarios re-execute this binary for their peers
	os.Exit(m.Run())
}

// TestRunScenarios regenerates a few quick scenarios live and checks their
// facts against the artifacts with tshark.
func TestRunScenarios(t *testing.T) {
	testenv.Root(t)
	for _, tool := range []string{"tcpdump", "tshark", "strace", "ss", "netstat", "nginx"} {
		testenv.Tool(t, tool)
	}
	out := t.TempDir()
	for _, name := range []string{"tcp-clean", "syn-refused", "close-wait", "upstream-refused"} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			f, err := Run(ctx, name, out)
			if err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(out, name)
			loaded, err := Load(filepath.Join(dir, "facts.json"))
			if err != nil {
				t.Fatal(err)
			}
			if loaded.Scenario != name || len(loaded.Conversations) != len(f.Conversations) {
				t.Fatalf("facts.json says %s with %d conversations, Run returned %d", loaded.Scenario, len(loaded.Conversations), len(f.Conversations))
			}
			verifyScenario(t, dir, loaded)
		})
	}
}

// packet is one TCP packet as tshark prints it.
type packet struct {
	src, dst                  string
	syn, ack, fin, rst, zeroW bool
}

// readPackets lists a capture's TCP packets with tshark (zstd files are
// decompressed first: this tshark may not read them).
func readPackets(t *testing.T, file string) []packet {
	t.Helper()
	if strings.HasSuffix(file, ".zst") {
		plain := filepath.Join(t.TempDir(), strings.TrimSuffix(filepath.Base(file), ".zst"))
		if out, err := exec.Command(testenv.Tool(t, "zstd"), "-q", "-d", "-o", plain, file).CombinedOutput(); err != nil {
			t.Fatalf("zstd -d %s: %v: %s", file, err, out)
		}
		file = plain
	}
	out, err := exec.Command("tshark", "-r", file, "-Y", "tcp", "-T", "fields", "-e", "tcp.srcport", "-e", "tcp.dstport",
		"-e", "tcp.flags.syn", "-e", "tcp.flags.ack", "-e", "tcp.flags.fin", "-e", "tcp.flags.reset", "-e", "tcp.window_size_value").Output()
	if err != nil {
		t.Fatalf("tshark %s: %v", file, err)
	}
	set := func(s string) bool { return s == "1" || s == "True" }
	var ps []packet
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 7 {
			t.Fatalf("%s: tshark line %q", file, line)
		}
		p := packet{src: f[0], dst: f[1], syn: set(f[2]), ack: set(f[3]), fin: set(f[4]), rst: set(f[5])}
		p.zeroW = f[6] == "0" && !p.syn && !p.rst
		ps = append(ps, p)
	}
	return ps
}

// checkConversation checks the packets of a conversation's captures
// against what the lab recorded: a SYN from the client for every
// handshake, and the flags each recorded conn_state implies; a zero
// window from a receiver that stopped reading.
func checkConversation(t *testing.T, c Conversation, packets func(file string) []packet) {
	t.Helper()
	clientPort, serverPort := port(t, c.Client), port(t, c.Server)
	var fromClient, fromServer []packet
	for _, file := range c.Files {
		for _, p := range packets(file) {
			// A client port of 0 is one the lab could not know (nginx's):
			// match on the server's port alone.
			switch {
			case p.dst == serverPort && (clientPort == "0" || p.src == clientPort):
				fromClient = append(fromClient, p)
			case p.src == serverPort && (clientPort == "0" || p.dst == clientPort):
				fromServer = append(fromServer, p)
			}
		}
	}
	any := func(ps []packet, f func(packet) bool) bool { return slices.ContainsFunc(ps, f) }
	syn := func(p packet) bool { return p.syn && !p.ack }
	synAck := func(p packet) bool { return p.syn && p.ack }
	fin := func(p packet) bool { return p.fin }
	rst := func(p packet) bool { return p.rst }
	if !any(fromClient, syn) {
		t.Errorf("%s: no SYN from %s in %v", c.ID, c.Client, c.Files)
	}
	want := map[string]struct{ ok bool }{}
	switch c.ConnState {
	case "S0":
		want["nothing from the server"] = struct{ ok bool }{len(fromServer) == 0}
	case "REJ":
		want["RST and no SYN-ACK from the server"] = struct{ ok bool }{any(fromServer, rst) && !any(fromServer, synAck)}
	case "SF":
		want["SYN-ACK, FIN both ways, no RST"] = struct{ ok bool }{any(fromServer, synAck) && any(fromClient, fin) && any(fromServer, fin) && !any(fromClient, rst) && !any(fromServer, rst)}
	case "S2":
		want["FIN from the client only, no RST"] = struct{ ok bool }{any(fromServer, synAck) && any(fromClient, fin) && !any(fromServer, fin) && !any(fromClient, rst) && !any(fromServer, rst)}
	case "RSTR":
		want["RST from the server only"] = struct{ ok bool }{any(fromServer, synAck) && any(fromServer, rst) && !any(fromClient, rst)}
	case "RSTO":
		want["RST from the client"] = struct{ ok bool }{any(fromServer, synAck) && any(fromClient, rst)}
	}
	for what, w := range want {
		if !w.ok {
			t.Errorf("%s %s -> %s: conn_state %s but not %s", c.ID, c.Client, c.Server, c.ConnState, what)
		}
	}
	if z := c.ZeroWindow; z != nil && !z.StoppedReading.IsZero() {
		receiver := fromClient
		if z.Receiver == SideServer {
			receiver = fromServer
		}
		if !any(receiver, func(p packet) bool { return p.zeroW }) {
			t.Errorf("%s: the %s stopped reading but never advertised a zero window", c.ID, z.Receiver)
		}
	}
}

// verifyScenario checks a scenario directory's facts against its files.
func verifyScenario(t *testing.T, dir string, f Facts) {
	t.Helper()
	if err := f.Check(dir); err != nil {
		t.Fatal(err)
	}
	if len(f.Conversations) == 0 {
		t.Fatal("no conversations")
	}
	cache := map[string][]packet{}
	packets := func(file string) []packet {
		if _, ok := cache[file]; !ok {
			cache[file] = readPackets(t, filepath.Join(dir, file))
		}
		return cache[file]
	}
	for _, c := range f.Conversations {
		checkConversation(t, c, packets)
	}
	for _, j := range f.Joins.Strace {
		checkStraceJoin(t, filepath.Join(dir, j.File), j)
	}
	for _, j := range f.Joins.Nginx {
		checkNginxJoin(t, dir, j)
	}
	for _, in := range f.Incidents {
		if in.Rule == "server-read-no-write" {
			checkReadNoWrite(t, dir, f, in)
		}
	}
}

// checkReadNoWrite checks a planted server-read-no-write in the -yy trace:
// on each conversation's socket the server read and never wrote.
func checkReadNoWrite(t *testing.T, dir string, f Facts, in Incident) {
	t.Helper()
	for _, id := range in.Conversations {
		i := slices.IndexFunc(f.Joins.Strace, func(j StraceJoin) bool { return j.Conversation == id })
		if i < 0 {
			t.Errorf("server-read-no-write on %s: no strace join", id)
			continue
		}
		j := f.Joins.Strace[i]
		b, err := os.ReadFile(filepath.Join(dir, j.File))
		if err != nil {
			t.Fatal(err)
		}
		socket := fmt.Sprintf("(%d<TCP:[%s->%s]>, ", j.FD, j.Local, j.Peer)
		var reads, writes int
		for _, line := range strings.Split(string(b), "\n") {
			switch {
			case !strings.Contains(line, socket):
			case strings.Contains(line, " read"+socket) && !strings.Contains(line, "= -1"):
				reads++
			case strings.Contains(line, " write"+socket), strings.Contains(line, " sendto"+socket), strings.Contains(line, " writev"+socket):
				writes++
			}
		}
		if reads == 0 || writes != 0 {
			t.Errorf("server-read-no-write on %s: %d reads and %d writes on %s in %s", id, reads, writes, socket, j.File)
		}
	}
}

// TestCommittedCorpus checks every committed scenario's facts against its
// artifacts, so a regeneration that went wrong cannot be committed
// unnoticed.
func TestCommittedCorpus(t *testing.T) {
	testenv.Tool(t, "tshark")
	root := filepath.Join(testenv.RepoRoot(), "testdata", "captures")
	for _, sc := range Scenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			dir := filepath.Join(root, sc.Name)
			f, err := Load(filepath.Join(dir, "facts.json"))
			if err != nil {
				t.Fatal(err)
			}
			if f.Scenario != sc.Name || f.HealthyTwin != (sc.TwinOf != "") {
				t.Fatalf("facts for %q (twin %v) in %s", f.Scenario, f.HealthyTwin, dir)
			}
			verifyScenario(t, dir, f)
		})
	}
}

// checkStraceJoin finds the accept of the joined fd in the strace file:
// the peer's port and address in the sockaddr and the fd as the result,
// decorated with the socket's addresses under -yy.
func checkStraceJoin(t *testing.T, file string, j StraceJoin) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	peer := netip.MustParseAddrPort(j.Peer)
	sockaddr := fmt.Sprintf("sin_port=htons(%d), sin_addr=inet_addr(%q)", peer.Port(), peer.Addr())
	decorated := fmt.Sprintf("= %d<TCP:[%s->%s]>", j.FD, j.Local, j.Peer)
	plain := fmt.Sprintf(") = %d", j.FD)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "accept4(") && strings.Contains(line, sockaddr) &&
			(strings.Contains(line, decorated) || strings.HasSuffix(line, plain)) {
			return
		}
	}
	t.Errorf("%s: no accept4 from %s returning fd %d", file, j.Peer, j.FD)
}

// checkNginxJoin finds the access log line of the joined connection: the
// lab's log_format writes the client port and $connection as
// "rport=P conn=N ".
func checkNginxJoin(t *testing.T, dir string, j NginxJoin) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "access.log"))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("rport=%s conn=%d ", port(t, j.Client), j.Connection)
	if !strings.Contains(string(b), want) {
		t.Errorf("access.log has no line with %q:\n%s", want, b)
	}
}

func port(t *testing.T, hostport string) string {
	t.Helper()
	i := strings.LastIndexByte(hostport, ':')
	if i < 0 {
		t.Fatalf("no port in %q", hostport)
	}
	return hostport[i+1:]
}

func TestCheckFindsInconsistencies(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "capture.pcap"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	good := func() Facts {
		return Facts{
			Schema: SchemaVersion,
			Files:  []File{{Name: "capture.pcap", Kind: KindPcap}},
			Conversations: []Conversation{{ID: "c1", Client: "127.0.0.5:40000", Server: "127.0.0.9:80",
				Handshake: HandshakeCompleted, Files: []string{"capture.pcap"}}},
			Incidents: []Incident{{Rule: "close-wait", Conversations: []string{"c1"},
				Flows: []Flow{{Client: "127.0.0.5:40000", Server: "127.0.0.9:80"}}}},
		}
	}
	tests := []struct {
		name   string
		mutate func(f *Facts)
		want   string
	}{
		{"consistent", func(*Facts) {}, ""},
		{"missing file", func(f *Facts) { f.Files = append(f.Files, File{Name: "gone.pcap", Kind: KindPcap}) }, "gone.pcap"},
		{"file without kind", func(f *Facts) { f.Files[0].Kind = "" }, "no kind"},
		{"duplicate conversation", func(f *Facts) { f.Conversations = append(f.Conversations, f.Conversations[0]) }, "listed twice"},
		{"bad endpoint", func(f *Facts) { f.Conversations[0].Client = "127.0.0.5" }, "c1"},
		{"no handshake", func(f *Facts) { f.Conversations[0].Handshake = "" }, "handshake"},
		{"unknown capture", func(f *Facts) { f.Conversations[0].Files = []string{"x.pcap"} }, "x.pcap"},
		{"incident on unknown conversation", func(f *Facts) {
			f.Incidents[0].Conversations = []string{"c9"}
		}, "c9"},
		{"twin with incident", func(f *Facts) { f.HealthyTwin = true }, "healthy twin"},
		{"strace join to unknown conversation", func(f *Facts) {
			f.Joins.Strace = []StraceJoin{{File: "capture.pcap", FD: 5, Conversation: "c7"}}
		}, "c7"},
		{"nginx join to unknown upstream", func(f *Facts) {
			f.Joins.Nginx = []NginxJoin{{Connection: 3, Conversation: "c1", UpstreamConversation: "u1"}}
		}, "u1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := good()
			tt.mutate(&f)
			err := f.Check(dir)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Check: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Check = %v, want an error naming %q", err, tt.want)
			}
		})
	}
}

func TestRegistry(t *testing.T) {
	names := map[string]bool{}
	nets := map[int]string{}
	for _, sc := range Scenarios() {
		if names[sc.Name] {
			t.Errorf("scenario %s listed twice", sc.Name)
		}
		names[sc.Name] = true
		if other, ok := nets[sc.Net]; ok {
			t.Errorf("scenarios %s and %s share net 127.0.%d.0/24", sc.Name, other, sc.Net)
		}
		nets[sc.Net] = sc.Name
		if sc.Net < 1 || sc.Net > 254 || sc.Description == "" || sc.run == nil {
			t.Errorf("scenario %s: net %d, description %q", sc.Name, sc.Net, sc.Description)
		}
	}
	for _, sc := range Scenarios() {
		if sc.TwinOf != "" && !names[sc.TwinOf] {
			t.Errorf("%s is the twin of unknown scenario %s", sc.Name, sc.TwinOf)
		}
	}
}

func TestKernelCounters(t *testing.T) {
	c := kernelCounters()
	if _, err := os.Stat("/proc/net/netstat"); err != nil {
		t.Skip("no /proc/net/netstat")
	}
	for _, name := range []string{"TcpExtListenOverflows", "TcpActiveOpens"} {
		if _, ok := c[name]; !ok {
			t.Errorf("counter %s missing from %d counters", name, len(c))
		}
	}
}
