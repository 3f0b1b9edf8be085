package server

import (
	"errors"
	"reflect"

	"go.yaml.in/yaml/v3"

	"github.com/lokilab/lokilab/pkg/config"
)

// diffConfig returns the parts of current that differ from defaults, as a
// YAML-shaped tree. Both are rendered to YAML first, so the comparison sees
// exactly what /config prints.
func diffConfig(defaults, current any) (any, error) {
	if defaults == nil {
		return nil, errors.New("no default configuration registered")
	}
	d, err := toTree(defaults)
	if err != nil {
		return nil, err
	}
	c, err := toTree(current)
	if err != nil {
		return nil, err
	}
	diff, _ := diffTree(d, c)
	if diff == nil {
		return map[string]any{}, nil
	}
	return diff, nil
}

func toTree(v any) (any, error) {
	raw, err := config.YAML(v)
	if err != nil {
		return nil, err
	}
	var tree any
	if err := yaml.Unmarshal(raw, &tree); err != nil {
		return nil, err
	}
	return tree, nil
}

// diffTree returns the subtree of c that differs from d, and whether any
// difference was found. Maps are compared key by key; anything else whole.
func diffTree(d, c any) (any, bool) {
	dm, dok := d.(map[string]any)
	cm, cok := c.(map[string]any)
	if !dok || !cok {
		if reflect.DeepEqual(d, c) {
			return nil, false
		}
		return c, true
	}
	out := map[string]any{}
	for k, cv := range cm {
		if sub, changed := diffTree(dm[k], cv); changed {
			out[k] = sub
		}
	}
	if len(out) == 0 {
		return nil, false
	}
	return out, true
}
