package rules

import (
	"fmt"
	"time"

	"wiremortem/flows"
)

func init() {
	Register(Rule{
		ID:       "zero-window-stall",
		Title:    "A reader stopped reading for a long time",
		Severity: Medium,
		Doc: `One side held its receive window at zero for longer than min_duration, without the connection being reset over it (that is zero-window-rst): its application stopped calling recv() and the sender could only probe (RFC 9293 section 3.8.6.1). ` +
			`The summary gives the longest episode (who, how long, probes, bytes waiting, how it ended) and how many episodes there were. ` +
			`Traps: a slow but reading consumer closes its window for milliseconds at a time under bulk transfer, which is flow control working; only long episodes count. An episode still open when the capture stopped lasted at least until then.`,
		Params: []Param{
			DurationParam("min_duration", 2*time.Second, "the window must stay closed at least this long"),
		},
		DefersTo: []string{"zero-window-rst"},
		Detect:   detectZeroWindowStall,
	})
}

func detectZeroWindowStall(ctx *Context) []Incident {
	minimum := ctx.Params.Duration("min_duration")
	var out []Incident
	for _, c := range ctx.In.Conversations {
		if ctx.ExplainedBy(c) != "" {
			continue
		}
		var longest *flows.ZeroWindowEpisode
		var longestHeld time.Duration
		long := 0
		for i := range c.ZeroWindows {
			ep := &c.ZeroWindows[i]
			held := heldFor(ep, ctx.In.endFor(c))
			if held < minimum {
				continue
			}
			long++
			if held > longestHeld {
				longest, longestHeld = ep, held
			}
		}
		if longest != nil {
			out = append(out, stalled(c, longest, longestHeld, long).done())
		}
	}
	return out
}

// heldFor is how long an episode kept the window closed; one still open
// when the capture stopped lasted at least until the capture's end.
func heldFor(ep *flows.ZeroWindowEpisode, captureEnd time.Time) time.Duration {
	if ep.End == nil && ep.EndedBy == "capture-end" && captureEnd.After(ep.Start.Time) {
		return captureEnd.Sub(ep.Start.Time)
	}
	return ep.Duration
}

func stalled(c *flows.Conversation, ep *flows.ZeroWindowEpisode, held time.Duration, long int) *draft {
	reader, sender := ep.Receiver, ep.Receiver.Other()
	d := newDraft(Medium, "high")
	d.flow(c)
	ending := map[string]string{
		"window-update": "and then reopened it",
		"fin":           "until the connection closed",
		"rst":           "until the connection was reset",
		"capture-end":   "and it was still closed when the capture ended",
		"idle":          "and nothing more was captured on the connection",
	}[ep.EndedBy]
	if ending == "" {
		ending = "until the tracker stopped following the connection (" + ep.EndedBy + ")"
	}
	others := ""
	if long > 1 {
		others = fmt.Sprintf("; it did so %s on this connection", times(long))
	}
	d.summary("%s stopped reading: it held a zero window to %s for %s (%s) %s%s.",
		capitalize(who(c, reader)), endpointOf(c, sender), seconds(held), stuck(ep), ending, others)
	closed := d.cite(ep.Start, "zero window advertised by %s", who(c, reader))
	proof := []int{closed}
	end := ep.Start.Time.Add(held)
	probes := keyPacketsBetween(c, sender, ep.Start.Time, end.Add(time.Nanosecond), "zero-window-probe")
	for i, kp := range probes {
		if i == 0 || i == len(probes)-1 {
			proof = append(proof, d.cite(kp.Stamp, "zero-window probe %d from the %s, +%s", i+1, sender, seconds(kp.Time.Sub(ep.Start.Time))))
		}
	}
	switch {
	case ep.End != nil && ep.EndedBy == "window-update":
		proof = append(proof, d.cite(*ep.End, "%s reopened its window after %s", who(c, reader), seconds(held)))
	case ep.End != nil:
		proof = append(proof, d.cite(*ep.End, "connection ended (%s) with the window still closed", ep.EndedBy))
	default:
		d.End = later(d.End, end)
	}
	d.cause(fmt.Sprintf("The %s's application stopped calling recv() for %s: a blocked or overloaded reading thread (slow message handling on the I/O thread, a lock, a GC pause, slow disk), so its receive buffer filled.", reader, seconds(held)), proof...)
	d.cause(fmt.Sprintf("The %s applies back-pressure on purpose (it reads only when it can process), and the %s sends faster than it consumes.", reader, sender), closed)
	d.next(
		fmt.Sprintf("On the %s (%s), while it happens: ss -tnm 'dst %s'; a large, growing Recv-Q means its application is not calling recv().", reader, c.Endpoint(reader).Addr(), c.Endpoint(sender)),
		fmt.Sprintf("Take a thread dump or profile of the application at %s during a stall: what is the thread that reads this socket doing?", c.Endpoint(reader)),
		fmt.Sprintf("On the %s (%s): how its write timeouts (nginx send_timeout, proxy_send_timeout) compare with %s; a longer stall will end in a reset.", sender, c.Endpoint(sender).Addr(), seconds(held)),
	)
	return d
}
