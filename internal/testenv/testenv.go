// Package testenv finds what tests need outside the repository: the public
// corpus in ../shared/corpus and external tools such as tshark or nginx.
//
// Under CI=true a missing corpus or tool fails the test: CI installs them, so
// their absence is a broken CI, not a reason to skip. Elsewhere the test skips
// with a message saying what is missing.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// InCI reports whether the tests run under CI (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// RepoRoot returns the repository root (the directory holding go.mod).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Corpus returns the path of a file or directory under ../shared/corpus,
// relative to the repository root. It fails under CI and skips elsewhere when
// the path does not exist.
func Corpus(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(RepoRoot(), "..", "shared", "corpus", rel)
	if _, err := os.Stat(p); err != nil {
		Missing(t, "public corpus file "+p+" ("+err.Error()+")")
	}
	return p
}

// Tool returns the path of an external program, failing under CI and
// skipping elsewhere when it is not installed.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name+" is not installed")
	}
	return p
}

// Root fails under CI and skips elsewhere unless the test runs as root
// (needed to capture on loopback and to create network namespaces).
func Root(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "this test needs root (tcpdump on lo)")
	}
}

// Missing fails the test under CI and skips it elsewhere, saying what is
// missing.
func Missing(t testing.TB, what string) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI=true but %s", what)
	}
	t.Skipf("skipping: %s", what)
}

// Watchdog panics with the input quoted if the returned stop function is not
// called within d: Go's fuzzer does not detect hangs on its own, and "never
// hang" is part of every parser's contract. Use it as
//
//	defer testenv.Watchdog(3*time.Second, data)()
func Watchdog(d time.Duration, input []byte) (stop func()) {
	timer := time.AfterFunc(d, func() {
		panic(fmt.Sprintf("input took over %v (a hang?): %q", d, input))
	})
	return func() { timer.Stop() }
}
