package rpc

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/twgroupd/twgroupd/dm"
	"github.com/twgroupd/twgroupd/internal/tjson"
)

// params are a request's positional parameters. The accessors behave like
// json_spirit's get_str/get_int/get_bool/get_array/get_obj: a value of the
// wrong type is the -1 error "value is type <got>, expected <want>".
type params []json.RawMessage

func (p params) has(i int) bool { return i < len(p) }

func (p params) str(i int) (string, error) {
	return rawString(p[i])
}

func rawString(raw json.RawMessage) (string, error) {
	if t := tjson.KindOf(raw); t != tjson.KindString {
		return "", typeError(t, tjson.KindString)
	}
	v, err := tjson.Parse(raw, tjson.RFC8259)
	if err != nil {
		return "", &Error{Code: CodeParse, Message: "Parse error"}
	}
	return v.Str, nil
}

// integer is get_int: a JSON integer within C int range.
func (p params) integer(i int) (int64, error) {
	return rawInt(p[i])
}

func rawInt(raw json.RawMessage) (int64, error) {
	if t := tjson.KindOf(raw); t != tjson.KindInt {
		return 0, typeError(t, tjson.KindInt)
	}
	v, err := strconv.ParseInt(string(trimJSON(raw)), 10, 64)
	if err != nil || v < math.MinInt32 || v > math.MaxInt32 {
		return 0, &Error{Code: CodeMisc, Message: "value is out of range, expected int"}
	}
	return v, nil
}

// postK is a post number parameter: an integer >= 0, or null for the next
// free k of the user, chosen by the engine (dm.AutoK).
type postK int64

// errNegativeK is a k below 0 (twisterd let it through to "too much
// posts"); the text is dm.ErrNegativeK's.
var errNegativeK = &Error{Code: CodeInvalidParams, Message: dm.ErrNegativeK.Error()}

func rawK(raw json.RawMessage) (postK, error) {
	if tjson.KindOf(raw) == tjson.KindNull {
		return postK(dm.AutoK), nil
	}
	v, err := rawInt(raw)
	if err != nil {
		return 0, err
	}
	if v < 0 {
		return 0, errNegativeK
	}
	return postK(v), nil
}

func (p params) boolean(i int) (bool, error) {
	raw := p[i]
	if t := tjson.KindOf(raw); t != tjson.KindBool {
		return false, typeError(t, tjson.KindBool)
	}
	return string(trimJSON(raw)) == "true", nil
}

func (p params) array(i int) ([]json.RawMessage, error) {
	return rawArray(p[i])
}

func rawArray(raw json.RawMessage) ([]json.RawMessage, error) {
	if t := tjson.KindOf(raw); t != tjson.KindArray {
		return nil, typeError(t, tjson.KindArray)
	}
	elems, err := tjson.Elements(raw, tjson.RFC8259)
	if err != nil {
		return nil, &Error{Code: CodeParse, Message: "Parse error"}
	}
	return elems, nil
}

// strings is get_array followed by get_str on every element.
func (p params) strings(i int) ([]string, error) {
	elems, err := p.array(i)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(elems))
	for _, e := range elems {
		s, err := rawString(e)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// typeError is json_spirit's check_type failure; execute turns it into -1.
func typeError(got, want tjson.Kind) *Error {
	return &Error{Code: CodeMisc, Message: tjson.TypeErrorMessage(got, want)}
}

func rawObject(raw json.RawMessage) ([]tjson.RawMember, error) {
	if t := tjson.KindOf(raw); t != tjson.KindObject {
		return nil, typeError(t, tjson.KindObject)
	}
	m, err := tjson.Members(raw, tjson.RFC8259)
	if err != nil {
		return nil, &Error{Code: CodeParse, Message: "Parse error"}
	}
	return m, nil
}

func trimJSON(raw json.RawMessage) []byte {
	b := []byte(raw)
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r' || b[0] == '\n') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\r' || b[len(b)-1] == '\n') {
		b = b[:len(b)-1]
	}
	return b
}

// scan reads parameters 0, 1, ... into dst in order, with the accessor for
// each destination's type (*string, *int64, *bool, *[]string,
// *[]json.RawMessage, or *json.RawMessage for any value), stopping at the first missing one: the method table
// has already checked the count, so what is missing is optional and keeps
// the value it had. The first wrong type is the error, as in twisterd's
// sequence of get_str/get_int calls.
func (p params) scan(dst ...any) error {
	for i, d := range dst {
		if !p.has(i) {
			return nil
		}
		var err error
		switch v := d.(type) {
		case *string:
			*v, err = p.str(i)
		case *int64:
			*v, err = p.integer(i)
		case *postK:
			*v, err = rawK(p[i])
		case *bool:
			*v, err = p.boolean(i)
		case *[]string:
			*v, err = p.strings(i)
		case *[]json.RawMessage:
			*v, err = p.array(i)
		case *json.RawMessage: // any JSON value, taken as it is
			*v = json.RawMessage(trimJSON(p[i]))
		default:
			return fmt.Errorf("rpc: cannot scan a parameter into %T", d)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
