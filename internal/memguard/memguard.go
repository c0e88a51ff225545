// Package memguard keeps a run inside the memory it may use. SetLimit
// gives Go's garbage collector a soft limit under the container's memory
// limit (cgroup v1 or v2), or the machine's memory, so that the heap's
// headroom (by default the heap grows to twice what is live between
// collections) does not take a run past it; Watch stops a run cleanly,
// before the kernel's OOM killer would end it with nothing written, when
// what it keeps nears that limit.
package memguard

import (
	"context"
	"fmt"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// SetLimit sets Go's soft memory limit to 90% of the cgroup's memory
// limit, or of the machine's memory when the process has none, and at
// least reserve below it. GOMEMLIMIT in the environment wins;
// AUTOMEMLIMIT=off sets none, AUTOMEMLIMIT=0.7 another share
// (github.com/KimMachineGun/automemlimit reads the cgroup files). An
// unreadable cgroup file or a bad AUTOMEMLIMIT leaves the limit as it
// was: none, or GOMEMLIMIT's.
func SetLimit() {
	memlimit.Set(memlimit.WithRatio(ratio), memlimit.WithProvider(withReserve(memlimit.ApplyFallback(memlimit.FromCgroup, memlimit.FromSystem))))
}

// ratio is the share of the container's or the machine's memory given to
// Go's limit.
const ratio = 0.9

// reserve is what the process needs beyond Go's limit: the program's own
// pages (its text is 18 MB), stacks, what the runtime keeps outside the
// heap. Measured: 27-36 MiB past the limit at the peak, in cgroups of
// 150 and 500 MiB. Under a small limit 10% is not enough: in a 150 MiB
// cgroup, with 135 MiB of Go limit, a run that Watch had stopped was
// killed while it wrote its JSON.
const reserve = 48 << 20

// withReserve lowers what provider gives so that, once Set has applied
// ratio to it, at least reserve stays outside the heap's limit. Below
// twice the reserve, the ratio alone.
func withReserve(provider memlimit.Provider) memlimit.Provider {
	return func() (uint64, error) {
		limit, err := provider()
		if err != nil {
			return 0, err
		}
		if float64(limit)*(1-ratio) < reserve && limit > 2*reserve {
			limit = uint64(float64(limit-reserve) / ratio)
		}
		return limit, nil
	}
}

// Share is the part of Go's memory limit the live heap may reach before
// Watch stops the run: the rest is room for what runs on what was kept
// (the rules, the JSON and the report) and for the collector. Measured
// (GODEBUG=gctrace=1, a SYN storm of a million conversations stopped in a
// 2 GiB cgroup): the live heap grew 6% past the stop while the rules and
// the JSON ran. At 0.7 a 300 MB capture of short HTTP conversations that
// completes at 0.8 in an 800 MiB cgroup stopped at 98.6% of its packets,
// and took twice as long, the collector running near the limit.
const Share = 0.8

// interval is how often Watch reads the live heap. The collector
// measures it at each cycle, and near the limit cycles come often.
const interval = 50 * time.Millisecond

// Use returns the live heap as the last collection found it, and the
// live heap at which Watch stops a run (0 when there is no limit): what a
// progress line shows, so that a run nearing its stop is seen coming.
func Use() (live, stopAt int64) {
	limit := debug.SetMemoryLimit(-1)
	if limit == math.MaxInt64 {
		return liveHeap(), 0
	}
	return liveHeap(), int64(Share * float64(limit))
}

func liveHeap() int64 {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(sample[0].Value.Uint64())
}

// Exceeded is the cause of a context Watch cancelled.
type Exceeded struct {
	// Live is the heap the last collection found in use; Limit is Go's
	// memory limit.
	Live, Limit int64
}

func (e *Exceeded) Error() string {
	return fmt.Sprintf("stopped at the memory limit: what the analysis keeps reached %s, %.0f%% of the %s it may use (GOMEMLIMIT; by default set below the container's memory limit or the machine's memory); to read the rest, give it more memory or cut the capture to the minutes that matter (editcap -A START -B END)",
		mib(e.Live), Share*100, mib(e.Limit))
}

func mib(n int64) string { return fmt.Sprintf("%d MiB", n>>20) }

// Watch returns a context cancelled, with an *Exceeded cause, once the
// live heap passes Share of Go's memory limit, and a function that stops
// watching and releases it. With no limit it only passes parent on.
func Watch(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	limit := debug.SetMemoryLimit(-1)
	if limit == math.MaxInt64 {
		return ctx, func() { cancel(nil) }
	}
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if live := liveHeap(); float64(live) > Share*float64(limit) {
				cancel(&Exceeded{Live: live, Limit: limit})
				return
			}
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() { close(done) })
		cancel(nil)
	}
}
