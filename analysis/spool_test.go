package analysis

import (
	"bytes"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
)

// TestBlockCacheReadsWhatTheFileHolds: reads at random places, some
// across two blocks, some near the end, with more blocks touched than the
// cache holds, return the file's bytes.
func TestBlockCacheReadsWhatTheFileHolds(t *testing.T) {
	data := make([]byte, spoolBlock*(spoolBlocks+5)+1234)
	rng := rand.New(rand.NewSource(1))
	rng.Read(data)
	path := filepath.Join(t.TempDir(), "spool")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := blockCache{f: f, size: int64(len(data))}
	straddled := 0
	for i := 0; i < 20000; i++ {
		n := 1 + rng.Intn(300)
		off := rng.Intn(len(data) - n + 1)
		if i%10 == 0 { // right before a block boundary
			off = max(0, (1+rng.Intn(len(data)/spoolBlock))*spoolBlock-n/2)
			off = min(off, len(data)-n)
		}
		if off/spoolBlock != (off+n-1)/spoolBlock {
			straddled++
		}
		got, err := c.read(int64(off), n)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data[off:off+n]) {
			t.Fatalf("read %d bytes at %d: wrong bytes", n, off)
		}
	}
	if straddled == 0 || len(c.blocks) != spoolBlocks {
		t.Errorf("%d reads across blocks, %d blocks cached: the test missed a case", straddled, len(c.blocks))
	}
}
