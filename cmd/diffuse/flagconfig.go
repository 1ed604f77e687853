package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

// parseFlags parses args into fs after adding a --config flag: a JSON object
// whose keys are the command's flag names (without dashes) and whose values
// are what the flag would take (strings, numbers, booleans; a list is
// joined with commas, as --cfg 1,3,5). Flags given on the command line
// override the file; the file's settings count as given (fs.Visit sees them).
func parseFlags(fs *flag.FlagSet, args []string) error {
	path := fs.String("config", "", `JSON file of flag settings, e.g. {"steps": 20, "eta": 1, "seed": 7}; flags given on the command line override it`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return nil
	}
	return applyFlagFile(fs, *path)
}

// applyFlagFile sets fs's flags from the JSON object in path, skipping
// those set on the command line.
func applyFlagFile(fs *flag.FlagSet, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("--config %s: %w (want a JSON object of flag names and values)", path, err)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		name := strings.TrimLeft(k, "-")
		if fs.Lookup(name) == nil || name == "config" {
			return fmt.Errorf("--config %s: %q is not a flag of diffuse %s (see --help for the names)", path, k, fs.Name())
		}
		if given[name] {
			continue
		}
		v, err := flagText(m[k])
		if err != nil {
			return fmt.Errorf("--config %s: %q: %w", path, k, err)
		}
		if err := fs.Set(name, v); err != nil {
			return fmt.Errorf("--config %s: %q = %s: %w", path, k, v, err)
		}
	}
	return nil
}

// flagText renders a JSON value as flag text.
func flagText(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case bool:
		return strconv.FormatBool(x), nil
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			s, err := flagText(e)
			if err != nil {
				return "", err
			}
			parts[i] = s
		}
		return strings.Join(parts, ","), nil
	}
	return "", fmt.Errorf("want a string, number, boolean or list, got %v", v)
}

// shortest widens a float32 default to the float64 with the same shortest
// decimal form, so --help prints 0.001, not 0.0010000000474974513.
func shortest(v float32) float64 {
	f, _ := strconv.ParseFloat(strconv.FormatFloat(float64(v), 'g', -1, 32), 64)
	return f
}
