package strace

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"wiremortem/decoders/logline"
	"wiremortem/internal/lab"
	"wiremortem/internal/testenv"
)

func scan(t *testing.T, text string, opts Options) (*Result, *Scanner) {
	t.Helper()
	if opts.Source == "" {
		opts.Source = "t.strace"
	}
	s := NewScanner(strings.NewReader(text), opts)
	r, err := s.Run()
	if err != nil {
		t.Fatal(err)
	}
	if !s.Tally().Balanced() {
		t.Fatalf("tally does not balance: %+v", s.Tally())
	}
	return r, s
}

func TestLineShapes(t *testing.T) {
	tests := []struct {
		line string
		want rawLine
		bad  bool
	}{
		{line: `1234  10:11:12.123456 recvfrom(5, "GET / HTTP/1.1\r\n", 8192, 0, NULL, NULL) = 16 <0.000020>`,
			want: rawLine{kind: lineCall, pid: 1234, tsFormat: timeOfDay, seconds: 36672, nanos: 123456000, name: "recvfrom", args: `5, "GET / HTTP/1.1\r\n", 8192, 0, NULL, NULL`, ret: "16", retOK: true, dur: 20000}},
		{line: `[pid 77] 1697048351.000541 brk(NULL)                 = 0x55b1f2e94000`,
			want: rawLine{kind: lineCall, pid: 77, tsFormat: timeEpoch, seconds: 1697048351, nanos: 541000, name: "brk", args: "NULL", ret: "0x55b1f2e94000", retOK: true, dur: -1}},
		{line: `read(3, "a) = 5 \"(", 10) = -1 EAGAIN (Resource temporarily unavailable)`,
			want: rawLine{kind: lineCall, name: "read", args: `3, "a) = 5 \"(", 10`, ret: "-1 EAGAIN (Resource temporarily unavailable)", retOK: true, dur: -1}},
		{line: `55 12:00:00 accept4(3,  <unfinished ...>`,
			want: rawLine{kind: lineUnfinished, pid: 55, tsFormat: timeOfDay, seconds: 43200, name: "accept4", args: "3", dur: -1}},
		{line: `55 12:00:01 <... accept4 resumed>{sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("1.2.3.4")}, [16], 0) = 7 <1.000000>`,
			want: rawLine{kind: lineResumed, pid: 55, tsFormat: timeOfDay, seconds: 43201, name: "accept4", args: `{sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("1.2.3.4")}, [16], 0`, ret: "7", retOK: true, dur: 1e9}},
		{line: `--- SIGPIPE {si_signo=SIGPIPE, si_code=SI_USER, si_pid=7, si_uid=0} ---`,
			want: rawLine{kind: lineSignal, name: "", rest: "SIGPIPE {si_signo=SIGPIPE, si_code=SI_USER, si_pid=7, si_uid=0}", dur: -1}},
		{line: `9 +++ exited with 0 +++`, want: rawLine{kind: lineExit, pid: 9, rest: "exited with 0", dur: -1}},
		{line: `     0.000123 close(3)                = 0`,
			want: rawLine{kind: lineCall, tsFormat: timeRelative, seconds: 0, nanos: 123000, name: "close", args: "3", ret: "0", retOK: true, dur: -1}},
		{line: `exit_group(0)                           = ?`, want: rawLine{kind: lineCall, name: "exit_group", args: "0", ret: "?", retOK: true, dur: -1}},
		{line: `strace: Process 31 attached`, want: rawLine{kind: lineNote, rest: "strace: Process 31 attached", dur: -1}},
		{line: `GET / HTTP/1.1`, bad: true},
		{line: `open("/etc/passwd", O_RDONLY`, bad: true},
		{line: `2026/11/22 10:00:00 [error] 1#0: *5 recv() failed (104: Connection reset by peer)`, bad: true},
	}
	for _, tt := range tests {
		got, problem := splitLine(tt.line, 0)
		if tt.bad {
			if problem == "" {
				t.Errorf("%q: parsed as %+v, want a problem", tt.line, got)
			}
			continue
		}
		if problem != "" {
			t.Errorf("%q: %s", tt.line, problem)
			continue
		}
		if got != tt.want {
			t.Errorf("%q:\n got %+v\nwant %+v", tt.line, got, tt.want)
		}
	}
}

// TestSeed000 reads the trace lines of seed 000 (../shared/seeds/000_*.txt,
// strace -p 25289 -f -F of the Swoole server, without times; the article's
// line numbers removed): the server accepted the monitor's connection on fd
// 2032, read the upgrade request, never wrote, then read the Close frame
// 88 02 03 e8, read EOF and closed.
func TestSeed000(t *testing.T) {
	const trace = `accept4(4, {sa_family=AF_INET, sin_port=htons(46407), sin_addr=inet_addr("10.0.0.5")}, [16], SOCK_CLOEXEC|SOCK_NONBLOCK) = 2032
epoll_ctl(204, EPOLL_CTL_ADD, 2032, {EPOLLOUT, {u32=2032, u64=2032}} <unfinished ...>
<... epoll_wait resumed> {{EPOLLOUT, {u32=2032, u64=2032}}}, 4096, -1) = 1
epoll_ctl(204, EPOLL_CTL_MOD, 2032, {EPOLLIN, {u32=2032, u64=2032}} <unfinished ...>
<... epoll_wait resumed> {{EPOLLIN, {u32=2032, u64=2032}}}, 4096, -1) = 1
recvfrom(2032, "GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", 8192, 0, NULL, NULL) = 39
<... epoll_wait resumed> {{EPOLLIN, {u32=2032, u64=2032}}}, 4096, -1) = 1
recvfrom(2032, "\210\2\3\350", 8192, 0, NULL, NULL) = 4
epoll_wait(204, {{EPOLLIN, {u32=2032, u64=2032}}}, 4096, -1) = 1
recvfrom(2032, "", 8188, 0, NULL, NULL) = 0
epoll_ctl(204, EPOLL_CTL_DEL, 2032, NULL) = 0
close(2032)                             = 0
`
	r, _ := scan(t, trace, Options{})
	var life *SocketLife
	for _, l := range r.Lives {
		if l.FD == 2032 {
			life = l
		}
	}
	if life == nil {
		t.Fatalf("no life for fd 2032: %+v", r.Lives)
	}
	if life.Kind != "accepted" || life.Peer.String() != "10.0.0.5:46407" {
		t.Errorf("kind %s peer %s, want accepted from 10.0.0.5:46407", life.Kind, life.Peer)
	}
	if life.BytesRead != 43 || life.BytesWritten != 0 || life.Writes != 0 {
		t.Errorf("read %d wrote %d, want 43 read and nothing written", life.BytesRead, life.BytesWritten)
	}
	if life.EOF == nil || life.EOF.Line != 10 || life.Closed == nil || life.Closed.Line != 12 {
		t.Errorf("EOF %+v closed %+v, want EOF at line 10 and close at 12", life.EOF, life.Closed)
	}
	var frame *Event
	for i := range life.Events {
		if life.Events[i].DataHex == "88 02 03 e8" {
			frame = &life.Events[i]
		}
	}
	if frame == nil || frame.Line != 8 {
		t.Errorf("the close frame read at line 8 is not among the events: %+v", life.Events)
	}
	if r.TimesKnown {
		t.Error("a trace without stamps cannot have known times")
	}
}

func TestTimesAndMidnight(t *testing.T) {
	shanghai, _ := time.LoadLocation("Asia/Shanghai")
	trace := "1 23:59:59.900000 socket(AF_INET, SOCK_STREAM, IPPROTO_TCP) = 3\n1 00:00:00.100000 close(3) = 0\n"
	r, _ := scan(t, trace, Options{Options: logline.Options{Clock: shanghai}, Date: time.Date(2026, 11, 22, 0, 0, 0, 0, shanghai)})
	l := r.Lives[0]
	want := time.Date(2026, 11, 23, 0, 0, 0, 100000000, shanghai)
	if !l.Closed.Time.Equal(want) || !r.TimesKnown || r.TimeFormat != "time-of-day" {
		t.Errorf("closed at %v (%s, known %v), want %v: the day rolls over at midnight", l.Closed.Time, r.TimeFormat, r.TimesKnown, want)
	}
	if got := l.Opened.Time.UTC().Format(time.RFC3339Nano); got != "2026-11-22T15:59:59.9Z" {
		t.Errorf("opened at %s UTC, want 2026-11-22T15:59:59.9Z", got)
	}
}

func TestDupAndThreads(t *testing.T) {
	trace := `10 socket(AF_INET, SOCK_STREAM, IPPROTO_TCP) = 3
10 connect(3, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28) = -1 EINPROGRESS (Operation now in progress)
10 clone(child_stack=0x7f, flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM) = 11
11 dup(3) = 4
11 write(4, "hello", 5) = 5
10 close(3) = 0
11 read(4, "", 100) = 0
11 close(4) = 0
`
	r, _ := scan(t, trace, Options{})
	if len(r.Lives) != 1 {
		t.Fatalf("%d lives, want 1", len(r.Lives))
	}
	l := r.Lives[0]
	if l.Peer.String() != "[::1]:443" || l.ConnectResult != "EINPROGRESS" || l.BytesWritten != 5 {
		t.Errorf("peer %s result %s written %d", l.Peer, l.ConnectResult, l.BytesWritten)
	}
	if l.Closed == nil || l.Closed.Line != 8 || l.EOF == nil {
		t.Errorf("the socket closes with its last descriptor (line 8); got %+v", l.Closed)
	}
}

// TestLabJoins checks every strace join the lab recorded: the fd of the
// traced server, its local and peer addresses (the conversation's 4-tuple),
// and that the socket's reads, writes and close are what the lab did.
func TestLabJoins(t *testing.T) {
	dirs, _ := filepath.Glob(filepath.Join(testenv.RepoRoot(), "testdata", "captures", "*", "facts.json"))
	checked := 0
	for _, factsPath := range dirs {
		facts, err := lab.Load(factsPath)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Dir(factsPath)
		for _, file := range facts.Files {
			if file.Kind != lab.KindStrace {
				continue
			}
			t.Run(facts.Scenario+"/"+file.Name, func(t *testing.T) {
				loc, err := time.LoadLocation(facts.Clock.TimeZone)
				if err != nil {
					t.Fatal(err)
				}
				date, _ := time.ParseInLocation("2006-01-02", facts.Clock.Date, loc)
				f, err := os.Open(filepath.Join(dir, file.Name))
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				s := NewScanner(f, Options{Options: logline.Options{Source: file.Name, Clock: loc}, Date: date})
				r, err := s.Run()
				if err != nil {
					t.Fatal(err)
				}
				if u := s.Tally().Unparsed(); u != 0 {
					t.Errorf("%d lines of real strace output not parsed: %v", u, s.Unparsed())
				}
				tids := map[int]bool{}
				for _, p := range facts.Processes {
					tids[p.PID] = true
					for _, tid := range p.TIDs {
						tids[tid] = true
					}
				}
				for _, j := range facts.Joins.Strace {
					if j.File != file.Name {
						continue
					}
					checked++
					var found *SocketLife
					for _, l := range r.Lives {
						if l.FD == j.FD && l.Local.String() == j.Local && l.Peer.String() == j.Peer {
							found = l
						}
					}
					if found == nil {
						t.Errorf("fd %d %s->%s (%s): no such socket", j.FD, j.Local, j.Peer, j.Conversation)
						continue
					}
					if !tids[found.PID] {
						t.Errorf("fd %d: pid %d is not one of the traced process's threads", j.FD, found.PID)
					}
					if found.Opened.Time.Before(facts.Clock.Start.Add(-time.Minute)) || found.Opened.Time.After(facts.Clock.End.Add(time.Minute)) {
						t.Errorf("fd %d opened at %v, outside the scenario (%v to %v): clock wrong", j.FD, found.Opened.Time, facts.Clock.Start, facts.Clock.End)
					}
				}
			})
		}
	}
	if checked == 0 {
		t.Fatal("no strace join in the lab facts")
	}
}

// TestPublicCorpus reads the strace outputs of lnav's and Stana's test
// suites (tstack/lnav, johnlcf/Stana; see ../shared/corpus/README.md):
// every line parsed or counted, and a few facts checked.
func TestPublicCorpus(t *testing.T) {
	tests := []struct {
		rel          string
		minCalls     int64
		unfinished   int64
		maxUnparsed  int64
		wantAccepted int
	}{
		{"lnav/test/logfile_strace_log.0", 9, 0, 0, 0},
		// lnav's toy web server: three accepts with peer addresses; one
		// accept4 resumed under another pid (hand-written by lnav's
		// authors) stays unfinished.
		{"lnav/test/logfile_strace_log.1", 40, 1, 0, 2},
		{"lnav/test/logfile_strace_log.2", 50, 0, 0, 0},
		{"stana/test/thread-ex.out", 100, 0, 0, 0},
		{"stana/test/stardict.out", 10000, 1, 0, 0},
		{"stana/test/stardict_T.out", 10000, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.rel), func(t *testing.T) {
			f, err := os.Open(testenv.Corpus(t, tt.rel))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			s := NewScanner(f, Options{Options: logline.Options{Source: tt.rel}})
			r, err := s.Run()
			if err != nil {
				t.Fatal(err)
			}
			if !s.Tally().Balanced() {
				t.Errorf("tally does not balance: %+v", s.Tally())
			}
			if u := s.Tally().Unparsed(); u > tt.maxUnparsed {
				t.Errorf("%d unparsed lines: %v", u, s.Unparsed())
			}
			if r.Calls < tt.minCalls || r.Unfinished != tt.unfinished {
				t.Errorf("%d calls, %d unfinished; want at least %d and %d unfinished", r.Calls, r.Unfinished, tt.minCalls, tt.unfinished)
			}
			accepted := 0
			for _, l := range r.Lives {
				if l.Kind == "accepted" && l.Peer.IsValid() {
					accepted++
				}
			}
			if accepted < tt.wantAccepted {
				t.Errorf("%d accepted sockets with a peer, want at least %d", accepted, tt.wantAccepted)
			}
		})
	}
}

func FuzzScanner(f *testing.F) {
	for _, name := range []string{"close-wait/server.strace", "ws-no-101/server.strace"} {
		if b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "testdata", "captures", name)); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("accept4(4, {sa_family=AF_INET, sin_port=htons(46407), sin_addr=inet_addr(\"10.0.0.5\")}, [16], 0) = 2032\nrecvfrom(2032, \"\\210\\2\\3\\350\", 8192, 0, NULL, NULL) = 4\nclose(2032) = 0\n"))
	f.Add([]byte("1 12:00:00 read(3,  <unfinished ...>\n2 12:00:01 <... read resumed>\"x\", 1) = 1 <0.5>\n--- SIGPIPE {} ---\n+++ killed by SIGKILL +++\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		defer testenv.Watchdog(3*time.Second, data)()
		s := NewScanner(strings.NewReader(string(data)), Options{Options: logline.Options{Source: "fuzz", MaxLineBytes: 4096}, Date: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
		r, err := s.Run()
		if err != nil {
			t.Fatal(err)
		}
		if !s.Tally().Balanced() {
			t.Fatalf("tally does not balance: %+v", s.Tally())
		}
		for _, l := range r.Lives {
			if l.BytesRead < 0 || l.BytesWritten < 0 || len(l.Events) > maxEvents {
				t.Fatalf("bad life %+v", l)
			}
		}
	})
}

// BenchmarkScanner measures throughput on a generated server trace (-f -tt
// -T -yy) of accepted connections each reading a request, writing a
// response and closing.
func BenchmarkScanner(b *testing.B) {
	var sb strings.Builder
	for i := 0; sb.Len() < 32<<20; i++ {
		fd := 10 + i%50
		port := 30000 + i%30000
		sb.WriteString("28443 19:42:40.487444 accept4(8<TCP:[127.0.7.9:6379]>, {sa_family=AF_INET, sin_port=htons(")
		sb.WriteString(strconv.Itoa(port))
		sb.WriteString("), sin_addr=inet_addr(\"127.0.7.5\")}, [112 => 16], SOCK_CLOEXEC|SOCK_NONBLOCK) = ")
		deco := strconv.Itoa(fd) + "<TCP:[127.0.7.9:6379->127.0.7.5:" + strconv.Itoa(port) + "]>"
		sb.WriteString(deco + " <0.000155>\n")
		sb.WriteString("28443 19:42:40.487531 read(" + deco + ", \"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n\", 4096) = 27 <0.000063>\n")
		sb.WriteString("28443 19:42:40.487580 write(" + deco + ", \"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok\", 40) = 40 <0.000020>\n")
		sb.WriteString("28443 19:42:40.487600 close(" + deco + ") = 0 <0.000010>\n")
	}
	data := sb.String()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s := NewScanner(strings.NewReader(data), Options{Options: logline.Options{Source: "bench"}, Date: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)})
		if _, err := s.Run(); err != nil {
			b.Fatal(err)
		}
	}
}
