package policy

import (
	"fmt"
	"io"
	"os"

	"slimgate.dev/slimgate/api/v1alpha1"
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
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, maxFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(data) > maxFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxFile)
	}
	p, err := Load(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}
