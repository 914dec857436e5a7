package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// A settings struct describes a command's configuration: each field
// tagged `name:"..."` is a setting, with a flag --name, an environment
// variable LOCKSTITCH_NAME (upper case, - as _), and a key name in the
// TOML config file. bindSettings and loadSettings apply them in order of
// precedence: flag over environment over file over default.
//
// Supported field types: string, bool, int, int64, uint64 and
// time.Duration. A bool flag alone means true (--insecure); give false as
// --name=false. Fields whose name ends in "Bytes" take sizes with an
// optional KiB, MiB or GiB suffix.

type setting struct {
	name, env, help string
	field           reflect.Value
	bytes           bool
	raw             *string // the flag's value, when set on the command line
}

// envName returns the environment variable of a setting.
func envName(name string) string {
	return "LOCKSTITCH_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// bindSettings registers a flag for every setting of *s on fs. The flags
// only record what is given; loadSettings applies them.
func bindSettings(fs *flag.FlagSet, s any) []*setting {
	v := reflect.ValueOf(s).Elem()
	t := v.Type()
	var out []*setting
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("name")
		if name == "" {
			continue
		}
		st := &setting{name: name, env: envName(name), help: f.Tag.Get("help"), field: v.Field(i), bytes: strings.HasSuffix(f.Name, "Bytes")}
		def := formatValue(st.field, st.bytes)
		raw := new(string)
		set := func(val string) error {
			*raw = val
			st.raw = raw
			return nil
		}
		usage := fmt.Sprintf("%s (env %s, default %s)", st.help, st.env, def)
		if st.field.Kind() == reflect.Bool {
			fs.BoolFunc(name, usage, set) // --insecure alone means true; --insecure=false
		} else {
			fs.Func(name, usage, set)
		}
		out = append(out, st)
	}
	return out
}

// loadSettings applies the config file (if path is not empty), then the
// environment, then the flags that were set, to the settings. It reports
// every problem at once.
func loadSettings(settings []*setting, path string) error {
	byName := map[string]*setting{}
	for _, s := range settings {
		byName[s.name] = s
	}
	var errs []error
	if path != "" {
		var file map[string]any
		if _, err := toml.DecodeFile(path, &file); err != nil {
			return fmt.Errorf("config file %s: %w", path, err)
		}
		keys := make([]string, 0, len(file))
		for k := range file {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			s, ok := byName[k]
			if !ok {
				errs = append(errs, fmt.Errorf("config file %s: unknown setting %q", path, k))
				continue
			}
			if err := setValue(s.field, fmt.Sprint(file[k]), s.bytes); err != nil {
				errs = append(errs, fmt.Errorf("config file %s: %s: %w", path, k, err))
			}
		}
	}
	for _, s := range settings {
		if v, ok := os.LookupEnv(s.env); ok {
			if err := setValue(s.field, v, s.bytes); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", s.env, v, err))
			}
		}
	}
	for _, s := range settings {
		if s.raw != nil {
			if err := setValue(s.field, *s.raw, s.bytes); err != nil {
				errs = append(errs, fmt.Errorf("--%s %q: %w", s.name, *s.raw, err))
			}
		}
	}
	return errors.Join(errs...)
}

func setValue(f reflect.Value, s string, bytes bool) error {
	s = strings.TrimSpace(s)
	switch f.Interface().(type) {
	case string:
		f.SetString(s)
	case bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return errors.New("not true or false")
		}
		f.SetBool(b)
	case time.Duration:
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return errors.New("not a duration such as 250ms or 10s")
		}
		f.SetInt(int64(d))
	case int, int64:
		var n int64
		var err error
		if bytes {
			n, err = parseBytes(s)
		} else {
			n, err = strconv.ParseInt(s, 10, 64)
		}
		if err != nil || n < 0 {
			if bytes {
				return sizeError(s)
			}
			return errors.New("not a non-negative number")
		}
		f.SetInt(n)
	case uint64:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return errors.New("not a non-negative number")
		}
		f.SetUint(n)
	default:
		return fmt.Errorf("unsupported setting type %s", f.Type())
	}
	return nil
}

func formatValue(f reflect.Value, bytes bool) string {
	switch v := f.Interface().(type) {
	case string:
		if v == "" {
			return `""`
		}
		return v
	case int:
		if bytes {
			return formatBytes(int64(v))
		}
	case int64:
		if bytes {
			return formatBytes(v)
		}
	}
	return fmt.Sprint(f.Interface())
}

// parseBytes parses a size: a number with an optional KiB, MiB or GiB
// suffix.
func parseBytes(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, err
	}
	if n > math.MaxInt64/mult || n < 0 {
		return 0, errors.New("size out of range")
	}
	return n * mult, nil
}

// sizeError says why s is not a size, suggesting the binary unit when s
// uses a decimal or lower-case one (5MB, 5M, 5mib: 5MiB).
func sizeError(s string) error {
	num := strings.TrimRightFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	unit := strings.ToUpper(strings.TrimSpace(s[len(num):]))
	for _, u := range []string{"K", "M", "G"} {
		switch unit {
		case u, u + "B", u + "IB":
			if num != "" {
				return fmt.Errorf("not a size: the units are KiB, MiB and GiB (powers of 1024): write %s%siB", num, u)
			}
		}
	}
	return errors.New("not a size: a number of bytes, or one with a KiB, MiB or GiB suffix")
}

func formatBytes(n int64) string {
	switch {
	case n != 0 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n != 0 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n != 0 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return strconv.FormatInt(n, 10)
}
