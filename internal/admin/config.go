package admin

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/waage/waage/internal/config"
)

// Redacted replaces secrets in the running configuration that GET /api/config shows.
const Redacted = "<redacted>"

// configNode renders cfg as the YAML document it would load from (effective values, with
// defaults applied), with secrets replaced by Redacted: admin.token, the private key file of
// every certificate (any mapping with both cert and key), password and secret keys anywhere, and
// the values of header fields that usually carry credentials (Authorization, Cookie, API keys).
func configNode(cfg *config.Config) (*yaml.Node, error) {
	var doc yaml.Node
	if err := doc.Encode(cfg); err != nil {
		return nil, fmt.Errorf("render configuration: %w", err)
	}
	redactNode(&doc, "")
	return &doc, nil
}

// redactNode walks a YAML tree; parent is the key whose value n is.
func redactNode(n *yaml.Node, parent string) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			redactNode(c, parent)
		}
	case yaml.MappingNode:
		hasCert := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "cert" {
				hasCert = true
			}
		}
		headerMap := parent == "headers" || parent == "set" || parent == "add"
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i].Value, n.Content[i+1]
			switch {
			case k == "token" && parent == "admin",
				k == "key" && hasCert,
				k == "password" || k == "secret",
				headerMap && sensitiveHeader(k):
				redactScalar(v)
			default:
				redactNode(v, k)
			}
		}
	}
}

func redactScalar(v *yaml.Node) {
	if v.Kind == yaml.ScalarNode && v.Value != "" {
		v.Value, v.Tag, v.Style = Redacted, "!!str", 0
	}
}

// sensitiveHeader reports whether a header field's value is likely a credential.
func sensitiveHeader(name string) bool {
	n := strings.ToLower(name)
	for _, s := range []string{"authorization", "cookie", "token", "secret", "password", "api-key", "apikey", "api_key"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

// configJSON is the redacted configuration as a value for encoding/json, with the YAML key names.
func configJSON(cfg *config.Config) (any, error) {
	n, err := configNode(cfg)
	if err != nil {
		return nil, err
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return nil, fmt.Errorf("render configuration: %w", err)
	}
	return v, nil
}

// configYAML is the redacted configuration as a YAML document.
func configYAML(cfg *config.Config) ([]byte, error) {
	n, err := configNode(cfg)
	if err != nil {
		return nil, err
	}
	return yaml.Marshal(n)
}
