package reporttest

import (
	"strings"

	"wiremortem/decoders/http"
	"wiremortem/decoders/websocket"
	"wiremortem/evidence"
	"wiremortem/flows"
)

// decoded is what the HTTP and WebSocket decoders would have found on the
// fixed document's two upgraded conversations: seed 000's upgrade that
// got no 101 and the Close frame sent anyway, and seed 001's upgrade
// through nginx followed by the master's messages until the reset.
func decoded(noAnswer, slowAgent *flows.Conversation) map[int]*http.Conversation {
	get, closeFrame := noAnswer.KeyPackets[3], noAnswer.KeyPackets[5]
	req := &http.Message{
		Start: get.Stamp, End: get.Stamp, Method: "GET", URI: "/ws", Version: "HTTP/1.1",
		Headers:     http.Headers{{Name: "Host", Value: "10.0.0.9:9501"}, {Name: "Upgrade", Value: "websocket"}, {Name: "Connection", Value: "Upgrade"}, {Name: "Sec-WebSocket-Key", Value: "dGhlIHNhbXBsZSBub25jZQ=="}},
		HeaderBytes: 178, Complete: true,
	}
	seed000 := &http.Conversation{
		Protocol:  "http",
		Exchanges: []http.Exchange{{Request: req}},
		Upgrades: []http.UpgradeHandshake{{
			Request: req, Protocol: "websocket", Verdict: http.VerdictNotUpgradedButFrames,
			Waited:               closeFrame.Time.Sub(get.Time),
			ExpectedAccept:       "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
			FramesWithoutUpgrade: []http.FrameNote{{Stamp: closeFrame.Stamp, Opcode: "close", CloseCode: 1000, Hex: "88 02 03 e8"}},
		}},
	}

	first, answer := find(slowAgent, "first-data", 0), slowAgent.KeyPackets[4]
	upReq := &http.Message{
		Start: first.Stamp, End: first.Stamp, Method: "GET", URI: "/agent/stream?id=31", Version: "HTTP/1.1",
		Headers:     http.Headers{{Name: "Host", Value: "master.example"}, {Name: "Upgrade", Value: "websocket"}, {Name: "Sec-WebSocket-Extensions", Value: "permessage-deflate"}},
		HeaderBytes: 212, Complete: true,
	}
	upResp := &http.Message{
		Start: answer.Stamp, End: answer.Stamp, Version: "HTTP/1.1", Status: 101, Reason: "Switching Protocols",
		Headers:     http.Headers{{Name: "Upgrade", Value: "websocket"}, {Name: "Server", Value: "nginx"}},
		HeaderBytes: 129, Complete: true,
	}
	ws := &websocket.Summary{
		Frames: map[string]int64{"server text": 5, "server binary": 1},
		Closes: []websocket.Close{},
	}
	for i, kp := range slowAgent.KeyPackets[5:11] {
		m := websocket.Message{From: evidence.Server, Opcode: "text", Start: kp.Stamp, End: kp.Stamp, Frames: 1, Length: 10132, PayloadTruncated: true}
		m.Payload = []byte(`{"job":` + string(rune('1'+i)) + `,"rows":["` + strings.Repeat("0123456789", 10) + `","`)
		if i == 3 {
			m.Opcode, m.Compressed, m.Decompressed, m.Length = "binary", true, 40960, 10132
			m.Payload = []byte{0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03}
		}
		ws.Messages = append(ws.Messages, m)
	}
	seed001 := &http.Conversation{
		Protocol:  "http",
		Exchanges: []http.Exchange{{Request: upReq, Response: upResp}},
		Upgrades: []http.UpgradeHandshake{{
			Request: upReq, Response: upResp, Protocol: "websocket", Verdict: http.VerdictOK,
			Waited: answer.Time.Sub(first.Time), ExpectedAccept: "HSmrc0sMlYUkAGmm5OPpG2HaGWk=", Accept: "HSmrc0sMlYUkAGmm5OPpG2HaGWk=",
		}},
		WebSocket: ws,
	}
	return map[int]*http.Conversation{noAnswer.ID: seed000, slowAgent.ID: seed001}
}
