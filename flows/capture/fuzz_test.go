package capture

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"wiremortem/internal/testenv"
)

// FuzzReader feeds arbitrary bytes to the capture reader: it must never
// panic, never hang, and every failure must be a *capture.Error saying
// where reading stopped.
func FuzzReader(f *testing.F) {
	plain := pcapFile(&testing.T{}, 60, 1514, 54)
	f.Add(plain)
	f.Add(gz(&testing.T{}, plain))
	f.Add(zst(&testing.T{}, plain))
	f.Add(plain[:100])
	for _, rel := range []string{
		"zeek/testing/btest/Traces/tcp/http-on-irc-port-missing-syn.pcapng",
		"zeek/testing/btest/Traces/websocket/oversized-close-frame.pcapng",
		"tcpdump/tests/tcp-handshake-nano.pcap",
		"zeek/testing/btest/Traces/trunc/trunc-hdr.pcap",
	} {
		if data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "..", "shared", "corpus", rel)); err == nil && len(data) < 64<<10 {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		defer testenv.Watchdog(3*time.Second, data)()
		r, err := NewReader("fuzz.pcap", bytes.NewReader(data))
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("open error %v is %T, want *capture.Error", err, err)
			}
			return
		}
		defer r.Close()
		var p Packet
		for i := 0; ; i++ {
			err := r.Next(&p)
			if err == io.EOF {
				return
			}
			if err != nil {
				var ce *Error
				if !errors.As(err, &ce) || ce.Record != r.Records()+1 {
					t.Fatalf("read error %v (%T) does not name record %d", err, err, r.Records()+1)
				}
				return
			}
			if len(p.Data) > len(data) && r.Info().Compression == Uncompressed {
				t.Fatalf("packet of %d bytes from a %d-byte file", len(p.Data), len(data))
			}
		}
	})
}
