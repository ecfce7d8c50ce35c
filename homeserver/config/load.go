package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// EnvPrefix starts the name of every environment override.
const EnvPrefix = "PARLEY_"

// envIgnored are PARLEY_ variables that are not configuration keys.
var envIgnored = []string{"PARLEY_TEST_", "PARLEY_CONFIG"}

// Load reads the YAML file at path (if path is not empty), applies the
// environment overrides in env (KEY=VALUE strings, as os.Environ gives),
// fills derived defaults and validates the result.
func Load(path string, env []string) (*Config, error) {
	c := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if err := decodeYAML(data, c); err != nil {
			return nil, err
		}
	}
	if err := applyEnv(c, env); err != nil {
		return nil, err
	}
	if err := c.Finish(); err != nil {
		return nil, err
	}
	return c, nil
}

// decodeYAML walks the document itself instead of letting yaml.v3 decode the
// whole struct, so that an unknown key or a wrong type is reported with the
// key's full name and line.
func decodeYAML(data []byte, c *Config) error {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an empty file keeps every default
		}
		return fmt.Errorf("config: not valid YAML: %w", err)
	}
	if len(doc.Content) == 0 {
		return nil
	}
	return decodeNode(doc.Content[0], reflect.ValueOf(c).Elem(), "")
}

func decodeNode(n *yaml.Node, v reflect.Value, path string) error {
	if v.Kind() == reflect.Struct {
		if n.Kind != yaml.MappingNode {
			if n.Tag == "!!null" {
				return nil
			}
			return keyError(rootName(path), "must be a mapping (line %d)", n.Line)
		}
		fields := structFields(v.Type())
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			idx, ok := fields[k.Value]
			full := join(path, k.Value)
			if !ok {
				return keyError(full, "unknown key (line %d)", k.Line)
			}
			if err := decodeNode(val, v.Field(idx), full); err != nil {
				return err
			}
		}
		return nil
	}
	if n.Kind != yaml.ScalarNode && v.Kind() != reflect.Slice && v.Kind() != reflect.Map {
		return keyError(path, "must be a single value (line %d)", n.Line)
	}
	if n.Kind == yaml.ScalarNode {
		// Scalars go through the same parser as environment values, so a
		// file and PARLEY_* agree on what "10s" or "yes" means.
		if n.Tag == "!!null" {
			return nil
		}
		if err := setScalar(v, n.Value); err != nil {
			return keyError(path, "%v (line %d)", err, n.Line)
		}
		return nil
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		return keyError(path, "wrong type (line %d): %v", n.Line, err)
	}
	return nil
}

func rootName(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// structFields maps yaml key names to field indexes.
func structFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		name := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if name != "" && name != "-" {
			m[name] = i
		}
	}
	return m
}

var (
	durationType        = reflect.TypeOf(time.Duration(0))
	textUnmarshalerType = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
)

// setScalar parses s into v according to v's type.
func setScalar(v reflect.Value, s string) error {
	switch {
	case v.CanAddr() && v.Addr().Type().Implements(textUnmarshalerType):
		// Types with their own text form (lists of structures, say).
		return v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s))
	case v.Type() == durationType:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("want a duration such as 30s or 5m, got %q", s)
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		b, err := parseBool(s)
		if err != nil {
			return err
		}
		v.SetBool(b)
	case v.Kind() == reflect.Int || v.Kind() == reflect.Int64:
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("want an integer, got %q", s)
		}
		v.SetInt(i)
	case v.Kind() == reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("want a number, got %q", s)
		}
		v.SetFloat(f)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		var items []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				items = append(items, p)
			}
		}
		v.Set(reflect.ValueOf(items))
	case v.Kind() == reflect.Map && v.Type().Key().Kind() == reflect.String && v.Type().Elem().Kind() == reflect.String:
		m := reflect.MakeMap(v.Type())
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			k, val, ok := strings.Cut(p, "=")
			if !ok {
				return fmt.Errorf("want name=value pairs separated by commas, got %q", p)
			}
			m.SetMapIndex(reflect.ValueOf(strings.TrimSpace(k)), reflect.ValueOf(strings.TrimSpace(val)))
		}
		v.Set(m)
	default:
		return fmt.Errorf("cannot be set from text")
	}
	return nil
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "true", "yes", "on", "1":
		return true, nil
	case "false", "no", "off", "0":
		return false, nil
	}
	return false, fmt.Errorf("want true or false, got %q", s)
}

// envKeys lists every leaf key as (PARLEY_ name, dotted key, field).
func envKeys(v reflect.Value, path string, out map[string]envKey) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		name := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if name == "" || name == "-" {
			continue
		}
		full := join(path, name)
		f := v.Field(i)
		if f.Kind() == reflect.Struct && f.Type() != durationType {
			envKeys(f, full, out)
			continue
		}
		env := EnvPrefix + strings.ToUpper(strings.ReplaceAll(full, ".", "_"))
		out[env] = envKey{key: full, field: f}
	}
}

type envKey struct {
	key   string
	field reflect.Value
}

func applyEnv(c *Config, env []string) error {
	keys := map[string]envKey{}
	envKeys(reflect.ValueOf(c).Elem(), "", keys)
	for _, kv := range env {
		name, val, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) || ignoredEnv(name) {
			continue
		}
		k, ok := keys[name]
		if !ok {
			return keyError(name, "environment variable names no configuration key")
		}
		if err := setScalar(k.field, val); err != nil {
			return keyError(k.key, "from %s: %v", name, err)
		}
	}
	return nil
}

func ignoredEnv(name string) bool {
	for _, p := range envIgnored {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}
