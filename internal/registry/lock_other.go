//go:build !(linux || darwin || freebsd || openbsd || netbsd || dragonfly)

package registry

import (
	"context"
	"errors"
)

// lockFile: writing a shared registry file needs flock, which this platform
// lacks; reading works everywhere.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	return nil, errors.New("registry file writes need flock, not available on this platform")
}
