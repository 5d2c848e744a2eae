package config

import (
	"time"

	"go.yaml.in/yaml/v3"
)

// String formats the duration as the file writes it ("1m30s").
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalYAML writes a Duration as a duration string, so a marshalled Config (the effective
// configuration shown by the admin API or `waage validate`) loads again as it was.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalYAML writes a StringMap as a mapping in its own order, rather than as the list of KV
// structs it is in Go.
func (m StringMap) MarshalYAML() (any, error) {
	n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for _, kv := range m {
		n.Content = append(n.Content,
			&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: kv.Key},
			&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: kv.Value})
	}
	return n, nil
}
