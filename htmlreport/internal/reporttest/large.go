package reporttest

import (
	"fmt"
	"time"

	"wiremortem/analysis"
	"wiremortem/evidence"
	"wiremortem/flows"
	"wiremortem/rules"
)

// Large is a document of n conversations over about 100 seconds towards
// 50 servers: mostly clean, with resets, zero windows, unanswered SYNs and
// half-closed conversations mixed in, and one incident of each kind the
// report draws, so size and speed are measured with every chart present.
func Large(n int) *analysis.Document {
	var s script
	convs := make([]*flows.Conversation, 0, n)
	var unanswered, waiting []rules.Flow
	var zeroWindow, reset *flows.Conversation
	spacing := 100 * time.Second / time.Duration(max(n, 1))
	for i := range n {
		at := time.Duration(i) * spacing
		client := fmt.Sprintf("10.%d.%d.%d:%d", 1+i/65536%200, i/256%256, i%256, 32768+i%28000)
		server := fmt.Sprintf("192.168.0.%d:%d", 1+i%50, 8000+i%50)
		data := []packet{
			{at + ms(0.3), flows.Client, "PSH,ACK", 300 + i%700, 502, "first-data"},
			{at + ms(2.1), flows.Server, "PSH,ACK", 1448, 509, ""},
		}
		switch {
		case i%7 == 2:
			c := s.conversation(client, server, "S0", "S", "idle", []packet{
				{at, flows.Client, "SYN", 0, 64240, "syn"},
				{at + time.Second, flows.Client, "SYN", 0, 64240, "syn-retransmission"},
			})
			convs = append(convs, c)
			unanswered = append(unanswered, flowOf(c))
		case i%25 == 1:
			pkts := append(append(handshake(at), data...),
				packet{at + ms(40), flows.Client, "ACK", 0, 0, "zero-window"},
				packet{at + ms(240), flows.Server, "ACK", 0, 509, "zero-window-probe"},
				packet{at + ms(640), flows.Server, "ACK", 0, 509, "zero-window-probe"},
				packet{at + ms(1440), flows.Server, "RST", 0, 0, "rst"},
			)
			c := s.conversation(client, server, "RSTR", "ShADadR", "reset", pkts)
			zw := find(c, "zero-window", 0)
			c.ZeroWindows = []flows.ZeroWindowEpisode{{Receiver: flows.Client, Start: zw.Stamp, EndedBy: "rst", Duration: ms(1400), Adverts: 1, Probes: 2, BytesWaiting: 28960}}
			for j, w := range []int64{64256, 30000, 0, 0} {
				c.Windows.Client = append(c.Windows.Client, flows.WindowSample{Time: T0.Add(at + ms(float64(10+j*400))), Window: w, InFlight: 64256 - w})
			}
			convs = append(convs, c)
			if zeroWindow == nil {
				zeroWindow = c
			}
		case i%10 == 0:
			c := s.conversation(client, server, "RSTO", "ShADadR", "reset", append(append(handshake(at), data...),
				packet{at + ms(5), flows.Client, "RST,ACK", 0, 0, "rst"}))
			convs = append(convs, c)
			if reset == nil {
				reset = c
			}
		case i%13 == 5:
			c := s.conversation(client, server, "S2", "ShADadF", "capture-end", append(append(handshake(at), data...),
				packet{at + ms(10), flows.Client, "FIN,ACK", 0, 502, "fin"}))
			convs = append(convs, c)
			waiting = append(waiting, flowOf(c))
		default:
			convs = append(convs, s.conversation(client, server, "SF", "ShADadFf", "closed", append(append(handshake(at), data...),
				packet{at + ms(3), flows.Client, "FIN,ACK", 0, 502, "fin"},
				packet{at + ms(3.2), flows.Server, "FIN,ACK", 0, 509, "fin"},
				packet{at + ms(3.3), flows.Client, "ACK", 0, 502, "last"},
			)))
		}
	}
	end := T0.Add(101 * time.Second)
	var incidents []rules.Incident
	capped := func(fl []rules.Flow) ([]rules.Flow, int) {
		const maxFlows = 100
		if len(fl) > maxFlows {
			return fl[:maxFlows], len(fl) - maxFlows
		}
		return fl, 0
	}
	if len(unanswered) > 0 {
		fl, omitted := capped(unanswered)
		first := convs[2]
		incidents = append(incidents, rules.Incident{
			Rule: "syn-unanswered", Severity: rules.High, Title: "SYNs never answered",
			Summary: fmt.Sprintf("%d connection attempts got no SYN-ACK.", len(unanswered)),
			Start:   first.Start, End: end, Flows: fl, FlowsOmitted: omitted,
			Evidence:   []evidence.Item{item(first.Handshake.SYNs[0], "first unanswered SYN")},
			Causes:     []rules.Cause{{Text: "The accept queue overflowed.", Evidence: []int{0}}},
			Next:       []string{"nstat -az TcpExtListenOverflows"},
			Confidence: "medium",
		})
	}
	if zeroWindow != nil {
		incidents = append(incidents, rules.Incident{
			Rule: "zero-window-rst", Severity: rules.Critical, Title: "Zero window, then reset",
			Summary: "A receiver stopped reading and was reset.",
			Start:   zeroWindow.ZeroWindows[0].Start.Time, End: zeroWindow.End, Flows: []rules.Flow{flowOf(zeroWindow)},
			Evidence:   []evidence.Item{item(zeroWindow.ZeroWindows[0].Start, "zero window")},
			Confidence: "high",
		})
	}
	if len(waiting) > 0 {
		fl, omitted := capped(waiting)
		incidents = append(incidents, rules.Incident{
			Rule: "close-wait", Severity: rules.Medium, Title: "Half-closed conversations never closed",
			Summary: fmt.Sprintf("%d conversations stayed in CLOSE_WAIT.", len(waiting)),
			Start:   T0, End: end, Flows: fl, FlowsOmitted: omitted, Confidence: "medium",
		})
	}
	if reset != nil {
		incidents = append(incidents, rules.Incident{
			Rule: "rst-mid-stream", Severity: rules.Low, Title: "Reset in the middle of a stream",
			Summary: "A client reset a conversation with data in flight.",
			Start:   reset.Start, End: reset.End, Flows: []rules.Flow{flowOf(reset)},
			Evidence:   []evidence.Item{item(reset.Closing.First.Stamp, "RST")},
			Confidence: "low",
		})
	}
	doc := &analysis.Document{
		Tool:      analysis.Tool{Name: "wiremortem", Version: "v0.1.0-test"},
		Inputs:    []analysis.InputFile{{Path: "large.pcap", Kind: analysis.KindCapture, SHA256: "00", Records: s.nextPacket, First: T0, Last: end}},
		Incidents: incidents,
	}
	finish(doc, convs, nil, nil, end)
	return doc
}
