//go:build linux || darwin || freebsd || openbsd || netbsd || dragonfly

package registry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// lockFile takes an exclusive flock on path (created if missing; never
// removed, since removing a lock file races with its next user). flock locks
// belong to the open file description, so they exclude other processes and
// other descriptors of this process alike; the kernel drops them if the
// holder dies. It polls with backoff so that ctx can cancel the wait.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	fd, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	deadline := time.NewTimer(lockWait)
	defer deadline.Stop()
	backoff := time.Millisecond
	for {
		err := syscall.Flock(int(fd.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(fd.Fd()), syscall.LOCK_UN)
				fd.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			fd.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		wait := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			wait.Stop()
			fd.Close()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-deadline.C:
			wait.Stop()
			fd.Close()
			return nil, fmt.Errorf("lock %s: held by another process for more than %s", path, lockWait)
		case <-wait.C:
		}
		backoff = min(2*backoff, 20*time.Millisecond)
	}
}
