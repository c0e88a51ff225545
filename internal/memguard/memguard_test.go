package memguard

import (
	"context"
	"errors"
	"math"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// TestWatch: under a limit the live heap already passes, the watched
// context is cancelled with an *Exceeded cause naming both; with no limit
// it is not, until its stop function (safe to call twice) releases it.
func TestWatch(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	runtime.GC()
	live := liveHeap()
	if live <= 0 {
		t.Fatalf("live heap %d", live)
	}
	debug.SetMemoryLimit(live)
	ctx, stop := Watch(context.Background())
	defer stop()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a limit below the live heap did not stop the run")
	}
	var e *Exceeded
	if !errors.As(context.Cause(ctx), &e) || e.Limit != live || e.Live <= int64(Share*float64(live)) {
		t.Fatalf("cause %v, want an *Exceeded with limit %d", context.Cause(ctx), live)
	}
	if msg := e.Error(); !strings.HasPrefix(msg, "stopped at the memory limit: ") || !strings.Contains(msg, "GOMEMLIMIT") {
		t.Errorf("message %q", msg)
	}

	debug.SetMemoryLimit(math.MaxInt64)
	if _, stopAt := Use(); stopAt != 0 {
		t.Errorf("no limit, but Use says a run stops at %d", stopAt)
	}
	ctx, stop = Watch(context.Background())
	time.Sleep(4 * interval)
	if ctx.Err() != nil {
		t.Fatalf("stopped with no limit: %v", context.Cause(ctx))
	}
	stop()
	stop()
	if ctx.Err() == nil {
		t.Error("stop did not release the context")
	}

	tib := int64(1) << 40
	debug.SetMemoryLimit(tib)
	if _, stopAt := Use(); stopAt != int64(Share*float64(tib)) {
		t.Errorf("Use says a run stops at %d under a 1 TiB limit", stopAt)
	}
}

// TestReserve: under Set's 90%, a limit keeps at least reserve outside
// Go's heap limit; large limits keep their 10%, tiny ones the ratio alone.
func TestReserve(t *testing.T) {
	for _, tt := range []struct{ cgroup, want uint64 }{
		{150 << 20, 150<<20 - reserve},
		{300 << 20, 300<<20 - reserve},
		{1 << 30, 1 << 30 * 9 / 10},
		{64 << 20, 64 << 20 * 9 / 10},
	} {
		got, err := withReserve(memlimit.Limit(tt.cgroup))()
		if err != nil {
			t.Fatal(err)
		}
		if goLimit := got * 9 / 10; goLimit < tt.want-1<<10 || goLimit > tt.want+1<<10 {
			t.Errorf("cgroup %d MiB: Go limit %d MiB, want %d MiB", tt.cgroup>>20, goLimit>>20, tt.want>>20)
		}
	}
	if _, err := withReserve(func() (uint64, error) { return 0, memlimit.ErrNoLimit })(); !errors.Is(err, memlimit.ErrNoLimit) {
		t.Errorf("no limit: %v", err)
	}
}
