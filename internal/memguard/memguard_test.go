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
