package tjson

import "fmt"

// Kind is json_spirit's Value_type. twisterd names it in parameter errors
// ("value is type str, expected int", spec §8.1), which the RPC server
// returns and the CLI client reports, so both use these names.
type Kind int

// The kinds, in json_spirit's order.
const (
	KindObject Kind = iota
	KindArray
	KindString
	KindBool
	KindInt
	KindReal
	KindNull
)

var kindNames = [...]string{"obj", "array", "str", "bool", "int", "real", "null"}

func (k Kind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return fmt.Sprintf("Kind(%d)", int(k))
	}
	return kindNames[k]
}

// TypeErrorMessage is json_spirit's check_type failure text.
func TypeErrorMessage(got, want Kind) string {
	return fmt.Sprintf("value is type %s, expected %s", got, want)
}
