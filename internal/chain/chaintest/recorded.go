package chaintest

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"

	"github.com/twgroupd/twgroupd/internal/chainwire"
)

// LoadBlocks reads a blocks.jsonl copied from shared/chain (fields height
// and raw_hex) into blocks, genesis first.
func LoadBlocks(t testing.TB, path string) []*chainwire.Block {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []*chainwire.Block
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r struct {
			Height int    `json:"height"`
			RawHex string `json:"raw_hex"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		raw, err := hex.DecodeString(r.RawHex)
		if err != nil {
			t.Fatal(err)
		}
		b, err := chainwire.ParseBlock(raw)
		if err != nil || int(b.Header.Height) != r.Height {
			t.Fatalf("block %d: %v", r.Height, err)
		}
		out = append(out, b)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
