package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"wiremortem/internal/scale"
	"wiremortem/internal/testenv"
)

// The test binary runs the command itself when asked, so that a test can
// start it in a memory cgroup of its own.
func init() {
	if os.Getenv("WIREMORTEM_TEST_RUN_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
}

// TestMemoryLimit runs `analyze --json` on a capture of many short HTTP
// conversations (real lab conversations replayed) in memory cgroups made
// for it, at several limits below the peak the run reaches with none (P).
// At every one the run ends on its own, never killed by the kernel, and
// writes a valid document: whole (exit 0), or marked partial with the
// memory limit as its reason (exit 4, reading stopped by memguard.Watch
// before the kernel would kill it); at the lowest the limit must stop it.
// Without memguard (AUTOMEMLIMIT=off: no soft limit, nothing watched) the
// kernel kills the runs at 40% and 70%, and nothing is written (at 90%
// it may: the peak moves by 10% between runs).
func TestMemoryLimit(t *testing.T) {
	testenv.Root(t)
	cg := memoryCgroups(t)
	seed := filepath.Join(testenv.RepoRoot(), "testdata", "captures", "tcp-clean", "capture.pcap")
	seeds, err := scale.Load(seed)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	capture := filepath.Join(dir, "http.pcap")
	if _, err := scale.Write(capture, seeds, scale.Options{Size: 60 << 20, Concurrent: 2000}); err != nil {
		t.Fatal(err)
	}
	analyze := func(limit int64, env ...string) (peak int64, exit int, killed bool, doc memDoc) {
		t.Helper()
		// The document goes to a pipe: a file's page cache would count
		// in the cgroup's peak.
		peak, state, b := cg.run(t, limit, env, os.Args[0], "analyze", "-q", "--json", "-", capture)
		if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return peak, -1, ws.Signal() == syscall.SIGKILL, doc
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatalf("limit %d: exit %d and the document is not JSON: %v", limit, state.ExitCode(), err)
		}
		return peak, state.ExitCode(), false, doc
	}

	peak, exit, killed, whole := analyze(0)
	if exit != exitOK || whole.Summary.Partial {
		t.Fatalf("no limit: exit %d (killed %v), partial %v", exit, killed, whole.Summary.Partial)
	}
	t.Logf("no limit: peak %d MiB, %d conversations of %d packets", peak>>20, whole.Summary.Conversations, whole.Inputs[0].Records)

	for _, share := range []int64{40, 70, 90} {
		limit := peak * share / 100
		_, exit, killed, doc := analyze(limit)
		switch {
		case killed || exit < 0:
			t.Errorf("limit %d MiB (%d%% of the peak): killed", limit>>20, share)
		case exit == exitOK && !doc.Summary.Partial && doc.Summary.Conversations == whole.Summary.Conversations:
			t.Logf("limit %d MiB (%d%% of the peak): whole", limit>>20, share)
		case exit == exitMemory && doc.Summary.Partial && strings.Contains(doc.Summary.PartialReason, "memory limit") &&
			doc.Summary.Conversations > 0 && doc.Inputs[0].Records < whole.Inputs[0].Records:
			t.Logf("limit %d MiB (%d%% of the peak): %d of %d packets read: %s", limit>>20, share, doc.Inputs[0].Records, whole.Inputs[0].Records, doc.Summary.PartialReason)
		default:
			t.Errorf("limit %d MiB (%d%% of the peak): exit %d, partial %v (%q), %d conversations from %d packets; want the whole document (%d conversations, exit 0) or a partial one with its reason (exit %d)",
				limit>>20, share, exit, doc.Summary.Partial, doc.Summary.PartialReason, doc.Summary.Conversations, doc.Inputs[0].Records, whole.Summary.Conversations, exitMemory)
		}
		if share == 40 && exit != exitMemory {
			t.Errorf("limit %d MiB (%d%% of the peak): exit %d; what the run keeps cannot fit, it must stop at the limit (exit %d)", limit>>20, share, exit, exitMemory)
		}
		if share == 90 {
			// The peak moves by 10% from run to run: a run without
			// memguard may or may not fit here.
			continue
		}
		if _, exit, killed, _ := analyze(limit, "AUTOMEMLIMIT=off"); !killed {
			t.Errorf("limit %d MiB (%d%% of the peak) with AUTOMEMLIMIT=off: exit %d, not killed: this limit does not test memguard", limit>>20, share, exit)
		}
	}
}

type memDoc struct {
	Summary struct {
		Conversations int    `json:"conversations"`
		Partial       bool   `json:"partial"`
		PartialReason string `json:"partial_reason"`
	} `json:"summary"`
	Inputs []struct {
		Records int64 `json:"records"`
	} `json:"inputs"`
}

// cgroupParent is the memory cgroup the test runs in, where it makes one
// child per run: v1 (memory.limit_in_bytes, memory.max_usage_in_bytes)
// or v2 (memory.max, memory.peak).
type cgroupParent struct {
	dir string
	v2  bool
}

func memoryCgroups(t *testing.T) cgroupParent {
	t.Helper()
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		testenv.Missing(t, "no /proc/self/cgroup: "+err.Error())
	}
	defer f.Close()
	var parent cgroupParent
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// hierarchy-ID:controllers:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "memory" {
				parent = cgroupParent{dir: filepath.Join("/sys/fs/cgroup/memory", parts[2])}
			}
		}
		if parts[0] == "0" && parent.dir == "" {
			if b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil && strings.Contains(string(b), "memory") {
				parent = cgroupParent{dir: filepath.Join("/sys/fs/cgroup", parts[2]), v2: true}
			}
		}
	}
	if parent.dir == "" {
		testenv.Missing(t, "no memory cgroup controller")
	}
	probe := filepath.Join(parent.dir, "wiremortem-probe")
	if err := os.Mkdir(probe, 0o755); err != nil && !os.IsExist(err) {
		testenv.Missing(t, "cannot make a memory cgroup: "+err.Error())
	}
	os.Remove(probe)
	return parent
}

// run starts argv in a new child cgroup limited to limit bytes (0: no
// limit), with env added, and returns the cgroup's peak memory, how the
// process ended and what it wrote on standard output.
func (p cgroupParent) run(t *testing.T, limit int64, env []string, argv ...string) (int64, *os.ProcessState, []byte) {
	t.Helper()
	dir, err := os.MkdirTemp(p.dir, "wiremortem-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(dir)
	limitFile, peakFile := "memory.limit_in_bytes", "memory.max_usage_in_bytes"
	if p.v2 {
		limitFile, peakFile = "memory.max", "memory.peak"
	}
	if limit > 0 {
		if err := os.WriteFile(filepath.Join(dir, limitFile), []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The shell joins the cgroup, then becomes the command: nothing it
	// allocates is counted elsewhere.
	cmd := exec.Command("sh", append([]string{"-c", `echo $$ > "$0" && exec "$@"`, filepath.Join(dir, "cgroup.procs")}, argv...)...)
	cmd.Env = append(append(os.Environ(), "WIREMORTEM_TEST_RUN_MAIN=1", "GOMEMLIMIT="), env...)
	var stdout bytes.Buffer
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatal(err)
	}
	// The cgroup's peak, not the process's rusage: a child forked from
	// the test shares its memory until exec, and its maximum resident set
	// counts the test's own.
	b, err := os.ReadFile(filepath.Join(dir, peakFile))
	if err != nil {
		t.Fatal(err)
	}
	peak, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if s := stderr.String(); s != "" {
		t.Logf("limit %d MiB: stderr: %s", limit>>20, s)
	}
	return peak, cmd.ProcessState, stdout.Bytes()
}
