// Package capped reads whole files that a user names but should never be
// large (policies, exceptions, mirror configurations), refusing one over a
// limit instead of reading it all into memory.
package capped

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrTooLarge is wrapped by ReadFile's error for a file over its limit.
var ErrTooLarge = errors.New("file too large")

// ReadFile reads path whole if it holds at most limit bytes; a larger file
// is an error wrapping ErrTooLarge, read no further than limit+1 bytes.
func ReadFile(path string, limit int64) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, limit+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("reading %s: %w", path, err)
	case int64(len(data)) > limit:
		return nil, fmt.Errorf("%s is larger than %d bytes: %w", path, limit, ErrTooLarge)
	}
	return data, nil
}
