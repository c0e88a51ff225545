// Command harness measures wiremortem against its peers on the same
// generated captures in the same run: `wiremortem analyze --json` (the full
// pipeline without HTML), `wiremortem flows` (the table alone) and `flows
// --json` (the document without decoding and rules), `tshark -q -z conv,tcp`,
// `tcptrace -n` and a bare pcapgo read loop (the floor). It prints a table
// of wall time, MB/s, packets/s, peak RSS and ratios, and writes the results
// as JSON with a description of the machine to bench/results/.
//
//	go run ./bench/harness -size 20MB -runs 1          # CI: keeps working
//	go run ./bench/harness -size 2GB -runs 3 -concurrent 10000 -stretch 10000   # by hand
//	go run ./bench/harness -size 512MB,1GB,2GB,4GB -runs 1 -shapes long -concurrent 10000 -stretch 1000
//
// Given several sizes, it measures each shape at each and ends with a table
// of how time and peak memory grow with the capture.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// shape is one kind of generated capture: which real seed conversations it
// replays.
type shape struct {
	name string
	// lab lists lab scenarios (testdata/captures/<name>) whose captures are
	// the seeds; corpus lists public captures used when the lab's are
	// missing.
	lab    []string
	corpus []string
}

var shapes = []shape{
	{"http", []string{"tcp-clean"}, []string{"zeek/testing/btest/Traces/wikipedia.pcap"}},
	{"websocket", []string{"ws-chatty"}, []string{"zeek/testing/btest/Traces/websocket/wstunnel-https.pcap", "zeek/testing/btest/Traces/websocket/jupyter-websocket.pcap"}},
	{"synstorm", []string{"syn-backlog"}, []string{"zeek/testing/btest/Traces/rotation.pcap", "zeek/testing/btest/Traces/nmap-vsn.pcap"}},
	{"long", []string{"zero-window", "zero-window-slow-reader", "zero-window-stall"}, []string{"zeek/testing/btest/Traces/http/206_example_b.pcap", "zeek/testing/btest/Traces/ssh/ssh.client-side-half-duplex.pcap"}},
	{"mixed", []string{"tcp-clean", "ws-echo", "syn-backlog", "zero-window", "close-wait"}, []string{"zeek/testing/btest/Traces/wikipedia.pcap", "zeek/testing/btest/Traces/http/206_example_b.pcap", "zeek/testing/btest/Traces/websocket/wstunnel-ssh.pcap", "zeek/testing/btest/Traces/nmap-vsn.pcap"}},
}

// Measurement is one tool's runs on one capture.
type Measurement struct {
	Tool      string    `json:"tool"`
	Command   []string  `json:"command"`
	WallSec   []float64 `json:"wall_seconds"`
	MedianSec float64   `json:"median_seconds"`
	PeakRSSMB float64   `json:"peak_rss_mb"`
	MBPerSec  float64   `json:"mb_per_second"`
	PktPerSec float64   `json:"packets_per_second"`
	// Ratio is this tool's median time over `wiremortem analyze`'s.
	Ratio float64 `json:"ratio_to_analyze"`
	Error string  `json:"error,omitempty"`
}

// Result is one shape's capture and measurements.
type Result struct {
	Shape string `json:"shape"`
	// Size is what the capture was generated to (-size).
	Size         string   `json:"size"`
	Seeds        []string `json:"seeds"`
	CaptureBytes int64    `json:"capture_bytes"`
	Packets      int64    `json:"packets"`
	Concurrent   int      `json:"concurrent"`
	// Stretch multiplied the seeds' packet times (bench/scale -stretch).
	Stretch float64 `json:"stretch"`
	// Conversations, PeakLive and SpanSec come from analyze's document:
	// memory follows the conversations live at once (closed ones linger
	// 5 s), and the generated captures compress time.
	Conversations int64         `json:"conversations"`
	PeakLive      int64         `json:"peak_live_conversations"`
	SpanSec       float64       `json:"span_sec"`
	Measurements  []Measurement `json:"measurements"`
}

// Report is the JSON written to bench/results.
type Report struct {
	Date    string   `json:"date"`
	Machine Machine  `json:"machine"`
	Size    string   `json:"size"`
	Runs    int      `json:"runs"`
	Results []Result `json:"results"`
}

// Machine describes where the numbers were taken.
type Machine struct {
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	MemoryGB  int    `json:"memory_gb"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
	Tshark    string `json:"tshark"`
}

func main() {
	size := flag.String("size", "20MB", "size of each generated capture; several, comma-separated, measure each shape at each")
	runs := flag.Int("runs", 3, "runs per tool (the median is reported)")
	concurrent := flag.Int("concurrent", 1000, "conversations live at once in the generated captures")
	stretch := flag.Float64("stretch", 1, "multiply the seed conversations' packet times by this (1: loopback speed, 100,000 conversations in a fraction of a second; 10000: a 4 ms conversation lasts 40 s, as behind a busy server)")
	only := flag.String("shapes", "", "comma-separated shapes to run (default all: http,websocket,synstorm,long,mixed)")
	out := flag.String("out", "bench/results", "directory for the results JSON")
	keep := flag.Bool("keep", false, "keep the generated captures")
	flag.Parse()

	work, err := os.MkdirTemp("", "wiremortem-bench-")
	check(err)
	if !*keep {
		defer os.RemoveAll(work)
	}
	bin := func(name, pkg string) string {
		p := filepath.Join(work, name)
		run("go", "build", "-o", p, pkg)
		return p
	}
	wm := bin("wiremortem", "./cmd/wiremortem")
	readloop := bin("readloop", "./bench/readloop")
	scale := bin("scale", "./bench/scale")

	report := Report{Date: time.Now().UTC().Format(time.RFC3339), Machine: describeMachine(), Size: *size, Runs: *runs}
	h := &bench{work: work, keep: *keep, runs: *runs, concurrent: *concurrent, stretch: *stretch, wm: wm, readloop: readloop, scale: scale}
	sizes := strings.Split(*size, ",")
	for _, sh := range shapes {
		if *only != "" && !strings.Contains(","+*only+",", ","+sh.name+",") {
			continue
		}
		seeds := seedsFor(sh)
		if len(seeds) == 0 {
			fmt.Fprintf(os.Stderr, "harness: no seed capture for shape %s\n", sh.name)
			os.Exit(1)
		}
		for _, sz := range sizes {
			report.Results = append(report.Results, h.measureShape(sh.name, sz, seeds))
		}
	}
	if len(sizes) > 1 {
		printGrowth(report.Results)
	}
	check(os.MkdirAll(*out, 0o755))
	name := filepath.Join(*out, fmt.Sprintf("bench-%s-%s.json", strings.NewReplacer(".", "_", ",", "+").Replace(*size), time.Now().UTC().Format("20060102T150405Z")))
	doc, err := json.MarshalIndent(report, "", "  ")
	check(err)
	check(os.WriteFile(name, append(doc, '\n'), 0o644))
	fmt.Println("results written to", name)
	for _, r := range report.Results {
		for _, m := range r.Measurements {
			if m.Error != "" && strings.HasPrefix(m.Tool, "wiremortem") {
				fmt.Fprintf(os.Stderr, "harness: %s failed on %s: %s\n", m.Tool, r.Shape, m.Error)
				os.Exit(1)
			}
		}
	}
}

// bench is one harness run's settings and tools.
type bench struct {
	work                string // where captures and documents go
	keep                bool   // keep the generated captures
	runs, concurrent    int
	stretch             float64
	wm, readloop, scale string // the binaries built for the run
}

// measureShape generates one shape's capture at one size and measures every
// tool on it; the capture goes afterwards unless b.keep.
func (b *bench) measureShape(shape, size string, seeds []string) Result {
	pcap := filepath.Join(b.work, shape+"-"+size+".pcap")
	run(b.scale, append([]string{"-o", pcap, "-size", size, "-concurrent", strconv.Itoa(b.concurrent), "-stretch", strconv.FormatFloat(b.stretch, 'g', -1, 64)}, seeds...)...)
	if !b.keep {
		defer os.Remove(pcap)
	}
	st, err := os.Stat(pcap)
	check(err)
	res := Result{Shape: shape, Size: size, Seeds: seeds, CaptureBytes: st.Size(), Concurrent: b.concurrent, Stretch: b.stretch}
	res.Packets = countPackets(b.readloop, pcap)
	jsonOut := filepath.Join(b.work, shape+".json")
	tools := []struct {
		name string
		cmd  []string
	}{
		{"wiremortem analyze", []string{b.wm, "analyze", "--json", jsonOut, pcap}},
		{"wiremortem flows", []string{b.wm, "flows", pcap}},
		// The same tracking as analyze with the document (key packets,
		// window samples, hashes, JSON, printed to /dev/null) but no
		// decoding and no rules: analyze's time over this one is about
		// what decoding and rules cost.
		{"wiremortem flows --json", []string{b.wm, "flows", "--json", pcap}},
		{"tcptrace -n", []string{"tcptrace", "-n", pcap}},
		{"tshark -q -z conv,tcp", []string{"tshark", "-q", "-z", "conv,tcp", "-r", pcap}},
		{"pcapgo read loop", []string{b.readloop, pcap}},
	}
	for _, tool := range tools {
		m := Measurement{Tool: tool.name, Command: tool.cmd}
		for i := 0; i < b.runs; i++ {
			wall, rss, err := measure(tool.cmd)
			if err != nil {
				m.Error = err.Error()
				break
			}
			m.WallSec = append(m.WallSec, wall)
			m.PeakRSSMB = max(m.PeakRSSMB, rss)
		}
		if len(m.WallSec) > 0 {
			m.MedianSec = median(m.WallSec)
			m.MBPerSec = float64(res.CaptureBytes) / (1 << 20) / m.MedianSec
			m.PktPerSec = float64(res.Packets) / m.MedianSec
		}
		res.Measurements = append(res.Measurements, m)
	}
	if err := readSummary(jsonOut, &res); err != nil {
		fmt.Fprintf(os.Stderr, "harness: %s: %v\n", jsonOut, err)
	}
	os.Remove(jsonOut)
	base := res.Measurements[0].MedianSec
	for i := range res.Measurements {
		if base > 0 {
			res.Measurements[i].Ratio = res.Measurements[i].MedianSec / base
		}
	}
	printTable(res)
	return res
}

// printGrowth shows, shape by shape, how each tool's time and peak memory
// grow with the capture: bounded memory is a flat column.
func printGrowth(results []Result) {
	fmt.Printf("\nas the capture grows (median wall s / peak RSS MB):\n")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "shape\tsize\tconversations\tpeak live\t")
	for _, m := range results[0].Measurements {
		fmt.Fprintf(tw, "%s\t", m.Tool)
	}
	fmt.Fprintln(tw)
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t", r.Shape, r.Size, r.Conversations, r.PeakLive)
		for _, m := range r.Measurements {
			if m.Error != "" {
				fmt.Fprint(tw, "failed\t")
				continue
			}
			fmt.Fprintf(tw, "%.2f / %.0f\t", m.MedianSec, m.PeakRSSMB)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

// readSummary reads the conversation counts and the time span from the
// summary of analyze's JSON document, streaming past the rest (the
// document of a big capture is large).
func readSummary(path string, res *Result) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	dec := json.NewDecoder(bufio.NewReaderSize(f, 1<<20))
	if _, err := dec.Token(); err != nil {
		return err
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return err
		}
		if key != "summary" {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return err
			}
			continue
		}
		var sum struct {
			Start, End    time.Time
			Conversations int64
			Packets       struct {
				PeakLive int64 `json:"peak_live_conversations"`
			}
		}
		if err := dec.Decode(&sum); err != nil {
			return err
		}
		res.Conversations, res.PeakLive = sum.Conversations, sum.Packets.PeakLive
		res.SpanSec = sum.End.Sub(sum.Start).Seconds()
		return nil
	}
	return fmt.Errorf("no summary in the document")
}

// seedsFor returns the lab captures of a shape, or its public corpus
// captures when the lab's are not there.
func seedsFor(sh shape) []string {
	var seeds []string
	for _, name := range sh.lab {
		m, _ := filepath.Glob(filepath.Join("testdata", "captures", name, "*.pcap"))
		seeds = append(seeds, m...)
	}
	if len(seeds) > 0 {
		return seeds
	}
	for _, rel := range sh.corpus {
		p := filepath.Join("..", "shared", "corpus", rel)
		if _, err := os.Stat(p); err == nil {
			seeds = append(seeds, p)
		}
	}
	return seeds
}

// measure runs a command, discarding its output, and returns its wall time
// in seconds and its peak resident set size in MB.
func measure(cmd []string) (float64, float64, error) {
	c := exec.Command(cmd[0], cmd[1:]...)
	// Output goes to /dev/null, not into this process: os/exec starts
	// children with vfork, and a child's peak RSS starts at its parent's,
	// so the harness must stay small for the numbers to be the tool's.
	var stderr tailWriter
	c.Stderr = &stderr
	start := time.Now()
	err := c.Run()
	wall := time.Since(start).Seconds()
	if err != nil {
		// wiremortem exits 1 when --fail-on matches and 3 on damaged
		// input; neither happens here, so any failure is real.
		return 0, 0, fmt.Errorf("%v: %s", err, lastLine(stderr.b))
	}
	ru, _ := c.ProcessState.SysUsage().(*syscall.Rusage)
	rss := 0.0
	if ru != nil {
		rss = float64(ru.Maxrss) / 1024 // Linux reports KB
	}
	return wall, rss, nil
}

// tailWriter keeps the last 4 KB written to it.
type tailWriter struct{ b []byte }

func (t *tailWriter) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = t.b[len(t.b)-4096:]
	}
	return len(p), nil
}

func countPackets(readloop, pcap string) int64 {
	out, err := exec.Command(readloop, pcap).Output()
	check(err)
	n, err := strconv.ParseInt(strings.Fields(string(out))[0], 10, 64)
	check(err)
	return n
}

func printTable(r Result) {
	fmt.Printf("\n%s: %.1f MB, %d packets, %d conversations over %v of capture time (generated %d at a time; at most %d live in the tracker)\n",
		r.Shape, float64(r.CaptureBytes)/(1<<20), r.Packets, r.Conversations, time.Duration(r.SpanSec*float64(time.Second)).Round(time.Microsecond), r.Concurrent, r.PeakLive)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "tool\twall s\tMB/s\tMpkt/s\tpeak RSS MB\tvs analyze\t")
	for _, m := range r.Measurements {
		if m.Error != "" {
			fmt.Fprintf(tw, "%s\tfailed: %s\t\t\t\t\t\n", m.Tool, m.Error)
			continue
		}
		fmt.Fprintf(tw, "%s\t%.3f\t%.0f\t%.2f\t%.0f\t%.2fx\t\n", m.Tool, m.MedianSec, m.MBPerSec, m.PktPerSec/1e6, m.PeakRSSMB, m.Ratio)
	}
	tw.Flush()
}

func describeMachine() Machine {
	m := Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) == nil {
		m.MemoryGB = int(uint64(si.Totalram) * uint64(si.Unit) >> 30)
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("tshark", "--version").Output(); err == nil {
		m.Tshark = strings.SplitN(string(out), "\n", 2)[0]
	}
	return m
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

func run(name string, args ...string) {
	c := exec.Command(name, args...)
	c.Stderr = os.Stderr
	if err := c.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "harness: %s %s: %v\n", name, strings.Join(args, " "), err)
		os.Exit(1)
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "harness:", err)
		os.Exit(1)
	}
}
