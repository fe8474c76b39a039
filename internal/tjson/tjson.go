// Package tjson writes JSON text the way twisterd's json_spirit writer does
// (spec posts-dm-groups-rpc §8.2): strings are emitted as raw bytes (no HTML
// escaping, no U+FFFD replacement of invalid UTF-8), only '"', '\\' and the
// control bytes 0x00–0x1F are escaped, and objects keep insertion order.
//
// It also reads JSON text the way json_spirit does (read.go: value kinds,
// raw string bytes, member order, int/real numbers), in two modes: as
// twisterd's client reads (TwisterClient, for the CLI) and as the server
// reads requests (RFC8259); and it names json_spirit's value kinds, whose
// names twisterd puts in its parameter type errors.
//
// It owns JSON text only; it knows nothing of posts, RPC or storage.
package tjson

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
)

// Field is one member of an ordered Object.
type Field struct {
	Key   string
	Value any
}

// Object is a JSON object whose members are written in slice order.
// Duplicate keys are written as given, as twisterd does for getdirectmsgs.
type Object []Field

// Set appends a member and returns the object, for chaining in literals.
func (o Object) Set(key string, value any) Object { return append(o, Field{key, value}) }

// Get returns the value of the first member named key.
func (o Object) Get(key string) (any, bool) {
	for _, f := range o {
		if f.Key == key {
			return f.Value, true
		}
	}
	return nil, false
}

// Marshal renders v. Supported: nil, bool, all integer kinds, float32/64,
// string, []byte (as a string of those bytes), json.RawMessage (verbatim),
// Object, Value (as AppendValue), map[string]V (sorted keys), slices and
// arrays, pointers to those, and json.Marshaler. Anything else falls back
// to encoding/json without HTML escaping.
func Marshal(v any) ([]byte, error) {
	return Append(nil, v)
}

// Append is Marshal appending to dst.
func Append(dst []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case json.RawMessage:
		if x == nil {
			return append(dst, "null"...), nil
		}
		return append(dst, x...), nil
	case Value:
		return AppendValue(dst, x, false), nil
	case Object:
		dst = append(dst, '{')
		for i, f := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendString(dst, f.Key)
			dst = append(dst, ':')
			var err error
			if dst, err = Append(dst, f.Value); err != nil {
				return nil, err
			}
		}
		return append(dst, '}'), nil
	case string:
		return AppendString(dst, x), nil
	case []byte:
		return AppendString(dst, string(x)), nil
	case bool:
		return strconv.AppendBool(dst, x), nil
	case int:
		return strconv.AppendInt(dst, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(dst, x, 10), nil
	case int32:
		return strconv.AppendInt(dst, int64(x), 10), nil
	case uint64:
		return strconv.AppendUint(dst, x, 10), nil
	case float64:
		return appendFloat(dst, x)
	case []any:
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = Append(dst, e); err != nil {
				return nil, err
			}
		}
		return append(dst, ']'), nil
	case []string:
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendString(dst, e)
		}
		return append(dst, ']'), nil
	case json.Marshaler:
		b, err := x.MarshalJSON()
		if err != nil {
			return nil, err
		}
		return append(dst, b...), nil
	}
	return appendReflect(dst, reflect.ValueOf(v))
}

func appendFloat(dst []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("tjson: unsupported float %v", f)
	}
	return strconv.AppendFloat(dst, f, 'g', -1, 64), nil
}

func appendReflect(dst []byte, rv reflect.Value) ([]byte, error) {
	switch rv.Kind() {
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return append(dst, "null"...), nil
		}
		return Append(dst, rv.Elem().Interface())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.AppendInt(dst, rv.Int(), 10), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.AppendUint(dst, rv.Uint(), 10), nil
	case reflect.Float32, reflect.Float64:
		return appendFloat(dst, rv.Float())
	case reflect.String:
		return AppendString(dst, rv.String()), nil
	case reflect.Bool:
		return strconv.AppendBool(dst, rv.Bool()), nil
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			return append(dst, "[]"...), nil
		}
		dst = append(dst, '[')
		for i := 0; i < rv.Len(); i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = Append(dst, rv.Index(i).Interface()); err != nil {
				return nil, err
			}
		}
		return append(dst, ']'), nil
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			break
		}
		keys := make([]string, 0, rv.Len())
		for _, k := range rv.MapKeys() {
			keys = append(keys, k.String())
		}
		sort.Strings(keys)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendString(dst, k)
			dst = append(dst, ':')
			var err error
			if dst, err = Append(dst, rv.MapIndex(reflect.ValueOf(k).Convert(rv.Type().Key())).Interface()); err != nil {
				return nil, err
			}
		}
		return append(dst, '}'), nil
	}
	// Structs and the rest: encoding/json, without HTML escaping.
	b, err := marshalStd(rv.Interface())
	if err != nil {
		return nil, fmt.Errorf("tjson: %w", err)
	}
	return append(dst, b...), nil
}

const hexDigits = "0123456789ABCDEF"

// AppendString appends s as a JSON string with json_spirit's escaping:
// bytes >= 0x80 (valid UTF-8 or not), '/', '<', '>', '&' and 0x7F pass raw.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			dst = append(dst, '\\', '"')
		case '\\':
			dst = append(dst, '\\', '\\')
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			if c < 0x20 {
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			} else {
				dst = append(dst, c)
			}
		}
	}
	return append(dst, '"')
}
