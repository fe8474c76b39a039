package config

import (
	"strings"

	"github.com/spf13/pflag"
)

// rawValue keeps a flag's text as given; Resolve parses and validates it so
// the command line and the file share one set of rules and messages.
type rawValue struct {
	vals []string
	kind kind
}

func (v *rawValue) Set(s string) error {
	if v.kind == kindList {
		v.vals = append(v.vals, s)
	} else {
		v.vals = []string{s}
	}
	return nil
}

func (v *rawValue) String() string { return strings.Join(v.vals, ",") }

func (v *rawValue) Type() string {
	switch v.kind {
	case kindInt:
		return "int"
	case kindBool:
		return "bool"
	case kindList:
		return "strings"
	}
	return "string"
}

// AddFlags registers every setting on fs under its twisterd name.
// Boolean settings may be given bare (-debug) or with a value (-debug=0).
func AddFlags(fs *pflag.FlagSet) {
	for _, s := range settings() {
		v := &rawValue{kind: s.kind}
		f := fs.VarPF(v, s.name, "", s.usage)
		f.DefValue = s.def
		if s.kind == kindBool {
			f.NoOptDefVal = "1"
		}
	}
}

// FlagValues returns the settings given on fs's command line, for Resolve.
func FlagValues(fs *pflag.FlagSet) Values {
	vals := Values{}
	fs.Visit(func(f *pflag.Flag) {
		if v, ok := f.Value.(*rawValue); ok {
			vals[f.Name] = append([]string(nil), v.vals...)
		}
	})
	return vals
}

// Load is Resolve of the settings given on fs.
func Load(fs *pflag.FlagSet) (Config, error) {
	return Resolve(FlagValues(fs))
}

// TakesValue reports whether the setting called name needs a value, so a
// command line "--name value" may consume the next argument. Unknown names
// and boolean settings report false.
func TakesValue(name string) bool {
	s, ok := lookup(name)
	return ok && s.kind != kindBool
}
