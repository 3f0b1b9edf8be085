// Package config loads a component's configuration the way operators of
// Prometheus-style systems expect: every field has a flag whose default is
// the field's default, a YAML file may override any of them, and a flag given
// on the command line overrides the file.
//
// The precedence (defaults < file < explicit flags) is implemented by parsing
// the flag set twice: the first parse writes defaults and finds -config.file,
// the YAML is decoded over the struct, and the second parse re-applies only
// the flags that were actually given. Flag values must therefore be
// idempotent when set twice with the same argument (no append-style flags).
package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"
)

// Registerer is implemented by every config struct: it registers one flag per
// field, with the field's default, on the given flag set.
type Registerer interface {
	RegisterFlags(fs *flag.FlagSet)
}

// Parse registers cfg's flags on fs, parses args, loads the YAML file named by
// -config.file (if any) over the defaults and re-applies explicit flags.
//
// Unknown YAML fields are an error: a misspelt key that silently does nothing
// is the most expensive kind of configuration bug.
func Parse(fs *flag.FlagSet, args []string, cfg Registerer) error {
	var (
		file      string
		expandEnv bool
	)
	fs.StringVar(&file, "config.file", "", "YAML configuration file; flags given on the command line override it.")
	fs.BoolVar(&expandEnv, "config.expand-env", false, "Expand ${VAR} references in the configuration file from the environment.")
	cfg.RegisterFlags(fs)

	if err := fs.Parse(args); err != nil {
		return err
	}
	if file == "" {
		return nil
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("reading config file: %w", err)
	}
	if expandEnv {
		raw = []byte(os.ExpandEnv(string(raw)))
	}
	if err := DecodeYAML(raw, cfg); err != nil {
		return fmt.Errorf("config file %s: %w", file, err)
	}
	// Re-apply the flags given on the command line so that they win over
	// the file.
	return fs.Parse(args)
}

// DecodeYAML decodes raw into dst, rejecting unknown fields. An empty
// document leaves dst unchanged.
func DecodeYAML(raw []byte, dst any) error {
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(dst); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// YAML renders v as YAML, the format /config serves.
func YAML(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
