package config

import (
	_ "embed"
	"strconv"
	"strings"
)

//go:embed sample.yaml
var sample string

// Sample returns a complete, commented configuration file for serverName
// and dataDir with every other key at its default. config.sample.yaml at the
// top of the repository is Sample("localhost", "./parley-data").
func Sample(serverName, dataDir string) string {
	return strings.NewReplacer("__SERVER_NAME__", serverName, "data_dir: ./parley-data", "data_dir: "+yamlString(dataDir)).Replace(sample)
}

// yamlString quotes s for YAML unless it is plainly safe.
func yamlString(s string) string {
	for _, c := range s {
		if !(c == '/' || c == '.' || c == '-' || c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return strconv.Quote(s)
		}
	}
	return s
}
