package tjson

import "strconv"

// AppendValue appends v as json_spirit's write_string(v, pretty) does
// (spec §8.2): compact, or pretty with 4-space indents, `"key" : value`
// members, one element per line (an empty array prints as "[" newline "]"),
// and reals fixed with 8 decimals (Bitcoin's change to json_spirit).
func AppendValue(dst []byte, v Value, pretty bool) []byte {
	return appendValue(dst, v, pretty, 0)
}

func appendValue(dst []byte, v Value, pretty bool, level int) []byte {
	switch v.Kind {
	case KindObject:
		return appendContainer(dst, '{', '}', len(v.Obj), pretty, level, func(dst []byte, i int) []byte {
			dst = AppendString(dst, v.Obj[i].Key)
			if pretty {
				dst = append(dst, " : "...)
			} else {
				dst = append(dst, ':')
			}
			return appendValue(dst, v.Obj[i].Val, pretty, level+1)
		})
	case KindArray:
		return appendContainer(dst, '[', ']', len(v.Arr), pretty, level, func(dst []byte, i int) []byte {
			return appendValue(dst, v.Arr[i], pretty, level+1)
		})
	case KindString:
		return AppendString(dst, v.Str)
	case KindBool:
		return strconv.AppendBool(dst, v.Bool)
	case KindInt:
		switch {
		case v.huge:
			return append(dst, v.Raw...)
		case v.IsUint:
			return strconv.AppendUint(dst, v.Uint, 10)
		}
		return strconv.AppendInt(dst, v.Int, 10)
	case KindReal:
		if v.huge {
			return append(dst, v.Raw...)
		}
		return strconv.AppendFloat(dst, v.Real, 'f', 8, 64)
	}
	return append(dst, "null"...)
}

func appendContainer(dst []byte, open, closing byte, n int, pretty bool, level int, elem func([]byte, int) []byte) []byte {
	dst = append(dst, open)
	if pretty {
		dst = append(dst, '\n')
	}
	for i := 0; i < n; i++ {
		if pretty {
			dst = indent(dst, level+1)
		}
		dst = elem(dst, i)
		if i < n-1 {
			dst = append(dst, ',')
		}
		if pretty {
			dst = append(dst, '\n')
		}
	}
	if pretty {
		dst = indent(dst, level)
	}
	return append(dst, closing)
}

func indent(dst []byte, level int) []byte {
	for i := 0; i < level; i++ {
		dst = append(dst, "    "...)
	}
	return dst
}
