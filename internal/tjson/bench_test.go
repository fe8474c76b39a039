package tjson

import (
	"bytes"
	"encoding/json"
	"testing"
)

// The server read requests with encoding/json before tjson did; these pair
// each reader call with that old path, for a ratio in one run.
var benchRequest = []byte(`{"jsonrpc":"2.0","id":1,"method":"getdirectmsgs","params":["alice",20,[{"username":"bob","max_id":3},{"username":"*reawrcvt"}],"caf\u00e9 \ud83d\ude00 text of a message"]}`)

func BenchmarkValid(b *testing.B) {
	b.Run("tjson", func(b *testing.B) {
		for b.Loop() {
			Valid(benchRequest, RFC8259)
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			json.Valid(benchRequest)
		}
	})
}

func BenchmarkMembers(b *testing.B) {
	b.Run("tjson", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Members(benchRequest, RFC8259); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			dec := json.NewDecoder(bytes.NewReader(benchRequest))
			dec.Token()
			var out []RawMember
			for dec.More() {
				tok, _ := dec.Token()
				var v json.RawMessage
				if err := dec.Decode(&v); err != nil {
					b.Fatal(err)
				}
				out = append(out, RawMember{tok.(string), v})
			}
		}
	})
}

func BenchmarkElements(b *testing.B) {
	params := benchRequest[bytes.Index(benchRequest, []byte(`["alice"`)) : len(benchRequest)-1]
	b.Run("tjson", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Elements(params, RFC8259); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var elems []json.RawMessage
			if err := json.Unmarshal(params, &elems); err != nil {
				b.Fatal(err)
			}
		}
	})
}
