package policy

import (
	"fmt"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/internal/capped"
)

// maxFile caps what ReadFile reads; Load rejects anything near it anyway.
const maxFile = 4 << 20

// ReadFile reads a policy document from a file with Load, or returns the
// built-in default when path is empty: the --policy flag of the CLI's
// commands.
func ReadFile(path string) (*v1alpha1.SlimImagePolicy, error) {
	if path == "" {
		return Default(), nil
	}
	data, err := capped.ReadFile(path, maxFile)
	if err != nil {
		return nil, err
	}
	p, err := Load(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}
