package flows

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"wiremortem/internal/lab"
	"wiremortem/internal/testenv"
)

// labScenarios returns the lab corpus's scenario directories.
func labScenarios(t *testing.T) []string {
	dirs, _ := filepath.Glob(filepath.Join(testenv.RepoRoot(), "testdata", "captures", "*", "facts.json"))
	if len(dirs) == 0 {
		t.Fatal("no lab scenarios in testdata/captures (regenerate with: sudo go run ./testdata/lab)")
	}
	sort.Strings(dirs)
	for i := range dirs {
		dirs[i] = filepath.Dir(dirs[i])
	}
	return dirs
}

// labCaptures returns a scenario's capture files, in rotation order.
func labCaptures(dir string, f *lab.Facts) []string {
	var paths []string
	for _, file := range f.Files {
		if file.Kind == lab.KindPcap || file.Kind == lab.KindPcapng {
			paths = append(paths, filepath.Join(dir, file.Name))
		}
	}
	return paths
}

// TestLabConversations checks the tracker against what the lab knows about
// every conversation it made: the 4-tuple and who is the client, whether
// the handshake completed, Zeek's conn_state where the lab can know it, who
// closed and how, the bytes each side sent, who stopped reading, and that
// nothing else appears in the capture.
func TestLabConversations(t *testing.T) {
	for _, dir := range labScenarios(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			facts, err := lab.Load(filepath.Join(dir, "facts.json"))
			if err != nil {
				t.Fatal(err)
			}
			paths := labCaptures(dir, &facts)
			if len(paths) == 0 {
				t.Skip("no capture in this scenario")
			}
			convs, stats := track(t, paths...)
			if stats.Malformed+stats.UnsupportedLink != 0 {
				t.Errorf("real captures gave %d malformed and %d unsupported packets", stats.Malformed, stats.UnsupportedLink)
			}
			byTuple := map[string][]*Conversation{}
			for _, c := range convs {
				k := c.Client.String() + " " + c.Server.String()
				byTuple[k] = append(byTuple[k], c)
			}
			for _, want := range facts.Conversations {
				k := want.Client + " " + want.Server
				if strings.HasSuffix(want.Client, ":0") {
					// The lab could not see this client's port (nginx's
					// refused connect): match on the rest.
					for key, cs := range byTuple {
						c, s, _ := strings.Cut(key, " ")
						if len(cs) > 0 && s == want.Server && strings.HasPrefix(c, strings.TrimSuffix(want.Client, "0")) {
							k = key
						}
					}
				}
				got := byTuple[k]
				if len(got) == 0 {
					t.Errorf("%s (%s): not found with that client and server", want.ID, k)
					continue
				}
				c := got[0]
				byTuple[k] = got[1:]
				checkLabConversation(t, want, c)
			}
			for k, rest := range byTuple {
				for _, c := range rest {
					t.Errorf("conversation %d %s (%s %s) is not one the lab made", c.ID, k, c.ConnState, c.History)
				}
			}
		})
	}
}

func checkLabConversation(t *testing.T, want lab.Conversation, c *Conversation) {
	t.Helper()
	name := fmt.Sprintf("%s (conversation %d)", want.ID, c.ID)
	switch want.Handshake {
	case lab.HandshakeCompleted:
		if !c.Handshake.Completed {
			t.Errorf("%s: handshake not completed", name)
		}
	case lab.HandshakeRefused:
		if c.Handshake.RefusedBy == nil {
			t.Errorf("%s: refusal (RST to the SYN) not found", name)
		}
	case lab.HandshakeUnanswered:
		if c.Handshake.SYNACKCount != 0 || c.Handshake.SYNCount == 0 {
			t.Errorf("%s: want SYNs with no SYN-ACK, got %d SYNs and %d SYN-ACKs", name, c.Handshake.SYNCount, c.Handshake.SYNACKCount)
		}
	}
	if want.ConnState != "" && c.ConnState != want.ConnState {
		t.Errorf("%s: conn_state %s (history %s), the lab knows %s", name, c.ConnState, c.History, want.ConnState)
	}
	for _, cl := range want.Closes {
		if cl.At.IsZero() {
			// The lab did not time this close: the call was made, but it
			// may never have reached the wire (a RST got there first).
			continue
		}
		side := Client
		if cl.By == lab.SideServer {
			side = Server
		}
		marks := c.Closing.FINs
		if cl.How == lab.CloseRST {
			marks = c.Closing.RSTs
		}
		if marks[side] == nil {
			t.Errorf("%s: no %s from the %s", name, strings.ToUpper(cl.How), cl.By)
		}
	}
	if want.OpenAtEnd {
		if hc := c.Closing.HalfClose; hc != nil && !hc.OpenAtEnd {
			t.Errorf("%s: the lab left it open, but the half-close ended", name)
		}
	}
	// Bytes: the lab counts what each application wrote as payload (HTTP
	// bodies, WebSocket messages), so the wire carries at least that much
	// when nothing was reset away (a RST discards what was still queued)
	// and nothing was compressed.
	reset := false
	for _, cl := range want.Closes {
		reset = reset || cl.How == lab.CloseRST
	}
	compressed := want.WebSocket != nil && want.WebSocket.Extension != ""
	if !reset && !compressed {
		if c.FromClient.Bytes < want.ClientBytes {
			t.Errorf("%s: client sent %d bytes, the lab wrote at least %d", name, c.FromClient.Bytes, want.ClientBytes)
		}
		if c.FromServer.Bytes < want.ServerBytes {
			t.Errorf("%s: server sent %d bytes, the lab wrote at least %d", name, c.FromServer.Bytes, want.ServerBytes)
		}
	}
	if zw := want.ZeroWindow; zw != nil && !zw.StoppedReading.IsZero() {
		receiver := Client
		if zw.Receiver == lab.SideServer {
			receiver = Server
		}
		found := false
		for _, ep := range c.ZeroWindows {
			found = found || ep.Receiver == receiver
		}
		if !found {
			t.Errorf("%s: the %s stopped reading but no zero-window episode from it", name, zw.Receiver)
		}
	}
}

// TestLabCapturesAgainstTshark runs the tshark cross-check of
// TestAgainstTshark on every lab capture too.
func TestLabCapturesAgainstTshark(t *testing.T) {
	tshark := testenv.Tool(t, "tshark")
	for _, dir := range labScenarios(t) {
		facts, err := lab.Load(filepath.Join(dir, "facts.json"))
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range labCaptures(dir, &facts) {
			t.Run(filepath.Base(dir)+"/"+filepath.Base(path), func(t *testing.T) {
				t.Parallel()
				if _, err := os.Stat(path); err != nil {
					t.Fatal(err)
				}
				compareWithTshark(t, tshark, path)
			})
		}
	}
}
