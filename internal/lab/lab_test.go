package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
			if len(loaded.Conversations) == 0 {
				t.Fatal("no conversations")
			}
			for _, c := range loaded.Conversations {
				for _, file := range c.Files {
					checkConversationInCapture(t, filepath.Join(dir, file), c)
				}
			}
			for _, j := range loaded.Joins.Strace {
				checkStraceJoin(t, filepath.Join(dir, j.File), j)
			}
			for _, j := range loaded.Joins.Nginx {
				checkNginxJoin(t, dir, j)
			}
		})
	}
}

// checkConversationInCapture asks tshark for the conversation's packets
// and checks them against what the lab recorded: a SYN from the client
// port; a RST from the server for a refused handshake; both FINs for SF.
func checkConversationInCapture(t *testing.T, file string, c Conversation) {
	t.Helper()
	// A client port of 0 is one the lab could not know (nginx's): match
	// on the server's port alone.
	filter := fmt.Sprintf("tcp.port == %s", port(t, c.Server))
	if port(t, c.Client) != "0" {
		filter += fmt.Sprintf(" && tcp.port == %s", port(t, c.Client))
	}
	out, err := exec.Command("tshark", "-r", file, "-Y", filter, "-T", "fields",
		"-e", "tcp.dstport", "-e", "tcp.flags.syn", "-e", "tcp.flags.ack", "-e", "tcp.flags.fin", "-e", "tcp.flags.reset").Output()
	if err != nil {
		t.Fatalf("tshark %s: %v", file, err)
	}
	var synFromClient, rstFromServer, finFromClient, finFromServer bool
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for _, line := range lines {
		f := strings.Split(line, "\t")
		if len(f) != 5 {
			t.Fatalf("%s: tshark line %q for %s", c.ID, line, filter)
		}
		fromClient := f[0] == port(t, c.Server)
		set := func(s string) bool { return s == "1" || s == "True" }
		switch {
		case fromClient && set(f[1]) && !set(f[2]):
			synFromClient = true
		case !fromClient && set(f[4]):
			rstFromServer = true
		}
		if set(f[3]) {
			if fromClient {
				finFromClient = true
			} else {
				finFromServer = true
			}
		}
	}
	if !synFromClient {
		t.Errorf("%s: no SYN from %s in %d packets", c.ID, c.Client, len(lines))
	}
	switch c.ConnState {
	case "REJ":
		if !rstFromServer {
			t.Errorf("%s: REJ but no RST from %s", c.ID, c.Server)
		}
	case "SF":
		if !finFromClient || !finFromServer {
			t.Errorf("%s: SF but FIN from client %v, from server %v", c.ID, finFromClient, finFromServer)
		}
	case "S2":
		if !finFromClient || finFromServer {
			t.Errorf("%s: S2 but FIN from client %v, from server %v", c.ID, finFromClient, finFromServer)
		}
	}
}

// checkStraceJoin finds the accept of the joined fd in the strace file:
// the peer's port in the sockaddr and the fd as the result.
func checkStraceJoin(t *testing.T, file string, j StraceJoin) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("sin_port=htons(%s)", port(t, j.Peer))
	result := fmt.Sprintf("= %d<TCP:[%s->%s]>", j.FD, j.Local, j.Peer)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "accept4(") && strings.Contains(line, want) && strings.Contains(line, result) {
			return
		}
	}
	t.Errorf("%s: no accept4 of %s returning %q", file, j.Peer, result)
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
