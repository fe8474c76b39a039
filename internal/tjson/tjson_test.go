package tjson

import (
	"encoding/json"
	"testing"
)

func TestMarshal(t *testing.T) {
	cases := []struct {
		in   any
		want string
	}{
		{nil, `null`},
		{Object{{"result", nil}, {"error", nil}, {"id", 1}}, `{"result":null,"error":null,"id":1}`},
		{"a<b>&/\u2028\x7f", "\"a<b>&/\u2028\x7f\""},
		{"q\"\\\n\x01\x1f", `"q\"\\\n\u0001\u001F"`},
		{string([]byte{0xff, 0xe9}), "\"\xff\xe9\""},
		{map[string]any{"b": 1, "a": []string{"x"}}, `{"a":["x"],"b":1}`},
		{[]any{true, int64(-3), 1.5}, `[true,-3,1.5]`},
		{json.RawMessage(`{"x":1}`), `{"x":1}`},
		{Object{{"u", 1}, {"u", 2}}, `{"u":1,"u":2}`},
		{struct {
			A string `json:"a"`
		}{"<"}, `{"a":"<"}`},
		{[]int(nil), `[]`},
	}
	for _, c := range cases {
		got, err := Marshal(c.in)
		if err != nil {
			t.Fatalf("%#v: %v", c.in, err)
		}
		if string(got) != c.want {
			t.Errorf("Marshal(%#v) = %s, want %s", c.in, got, c.want)
		}
	}
}

func TestKindNames(t *testing.T) {
	if got := TypeErrorMessage(KindString, KindInt); got != "value is type str, expected int" {
		t.Fatal(got)
	}
	if KindObject.String() != "obj" || KindNull.String() != "null" || Kind(99).String() != "Kind(99)" {
		t.Fatal("kind names")
	}
}
