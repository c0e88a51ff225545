package correlate

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"wiremortem/decoders/http"
	"wiremortem/decoders/nginx"
	"wiremortem/flows"
)

// refusedUpstream builds what nginx in front of a dead upstream leaves: n
// client conversations from one address (a load balancer) to nginx, n
// conversations from nginx to the upstream each refused with a RST, one
// error line per refusal ("connect() failed (111: Connection refused)
// while connecting to upstream") and one access line per request, logged
// without $remote_port.
func refusedUpstream(n int) Sources {
	base := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	lb := netip.MustParseAddr("10.1.0.5")
	nginxAddr := netip.MustParseAddr("10.0.0.1")
	upstream := netip.MustParseAddrPort("10.0.0.2:9")
	var convs []*flows.Conversation
	var access []nginx.AccessRecord
	var errs []nginx.ErrorRecord
	decoded := map[int]*http.Conversation{}
	for i := range n {
		at := base.Add(time.Duration(i) * 10 * time.Millisecond)
		port := uint16(1024 + i%60000)
		client := &flows.Conversation{ID: 2*i + 1, Client: netip.AddrPortFrom(lb, port), Server: netip.AddrPortFrom(nginxAddr, 80),
			Start: at, End: at.Add(3 * time.Millisecond), EndReason: "fin"}
		up := &flows.Conversation{ID: 2*i + 2, Client: netip.AddrPortFrom(nginxAddr, 40000+port%20000), Server: upstream,
			Start: at.Add(time.Millisecond), End: at.Add(time.Millisecond + 20*time.Microsecond), EndReason: "rst"}
		convs = append(convs, client, up)
		decoded[client.ID] = &http.Conversation{Protocol: "http", Exchanges: []http.Exchange{{Request: &http.Message{Method: "GET", URI: fmt.Sprintf("/api/%d", i), Version: "HTTP/1.1"}}}}
		access = append(access, nginx.AccessRecord{Time: at.Add(3 * time.Millisecond), RemoteAddr: lb, Method: "GET", URI: fmt.Sprintf("/api/%d", i), Status: 502,
			Upstreams: []nginx.UpstreamAttempt{{AddrPort: upstream}}})
		errs = append(errs, nginx.ErrorRecord{Time: at.Add(time.Millisecond), ClientAddr: lb, UpstreamAddr: upstream, Errno: 111})
	}
	return Sources{Conversations: convs, HTTP: decoded, Access: []AccessFile{{Path: "access.log", Records: access}}, Errors: []ErrorFile{{Path: "error.log", Records: errs}}}
}

// BenchmarkJoinRefusedUpstream measures the join as the number of
// conversations to one upstream and of log lines grows together: it must
// grow about linearly.
func BenchmarkJoinRefusedUpstream(b *testing.B) {
	for _, n := range []int{1000, 5000, 20000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				src := refusedUpstream(n)
				b.StartTimer()
				Join(src)
			}
		})
	}
}

// TestTimeIndexPicksWhatTheWholeListWould: on random lists (starts and
// ends spread over a minute, some open at capture end, equal starts,
// some long conversations), closest over near(t) picks what closest over
// the whole list picks, and firstStartingIn what a scan finds, for times
// before, inside and after the lists, and for untimed events.
func TestTimeIndexPicksWhatTheWholeListWould(t *testing.T) {
	base := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	rnd := rand.New(rand.NewPCG(1, 2))
	at := func(maxMs int) time.Time { return base.Add(time.Duration(rnd.IntN(maxMs)) * time.Millisecond) }
	for round := range 300 {
		n := rnd.IntN(200) + 1
		var list []*flows.Conversation
		for i := range n {
			start := at(60_000)
			if rnd.IntN(5) == 0 && len(list) > 0 {
				start = list[rnd.IntN(len(list))].Start // equal starts
			}
			d := time.Duration(rnd.IntN(3000)) * time.Millisecond
			if rnd.IntN(20) == 0 {
				d = 50 * time.Second // a long one
			}
			c := &flows.Conversation{ID: i + 1, Start: start, End: start.Add(d), EndReason: "fin"}
			if rnd.IntN(10) == 0 {
				c.EndReason = "capture-end"
			}
			list = append(list, c)
		}
		ti := newTimeIndex(list)
		for range 50 {
			when := base.Add(time.Duration(rnd.IntN(70_000)-5_000) * time.Millisecond)
			if rnd.IntN(25) == 0 {
				when = time.Time{}
			}
			if want, got := closest(list, when), closest(ti.near(when), when); want != got {
				t.Fatalf("round %d, t %v: closest over the list %v, over near %v", round, when, id(want), id(got))
			}
			from := base.Add(time.Duration(rnd.IntN(60_000)) * time.Millisecond)
			to := from.Add(time.Duration(rnd.IntN(5_000)) * time.Millisecond)
			var want *flows.Conversation
			for _, c := range list {
				if c.Start.Before(from) || c.Start.After(to) {
					continue
				}
				if want == nil || c.Start.Before(want.Start) {
					want = c
				}
			}
			if got := ti.firstStartingIn(from, to); got != want {
				t.Fatalf("round %d, [%v, %v]: scan finds %v, index %v", round, from, to, id(want), id(got))
			}
		}
	}
}

func id(c *flows.Conversation) int {
	if c == nil {
		return 0
	}
	return c.ID
}

// TestJoinRefusedUpstream: every error line and access line of the
// refused-upstream input joins its own upstream conversation, and every
// access line its own client conversation (by address, request line and
// time: the format has no $remote_port).
func TestJoinRefusedUpstream(t *testing.T) {
	j := Join(refusedUpstream(2000))
	for i, e := range j.Errors {
		if e.Upstream != 2*i+2 {
			t.Fatalf("error line %d joined upstream conversation %d, want %d", i, e.Upstream, 2*i+2)
		}
	}
	for i, a := range j.Access {
		if a.Conversation != 2*i+1 || a.Key != KeyTime {
			t.Fatalf("access line %d joined conversation %d by %q, want %d by time", i, a.Conversation, a.Key, 2*i+1)
		}
		if a.Upstream != 2*i+2 {
			t.Fatalf("access line %d joined upstream conversation %d, want %d", i, a.Upstream, 2*i+2)
		}
	}
}
