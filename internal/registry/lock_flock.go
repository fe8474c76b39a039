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
// other descriptors of this process alike, and the kernel drops them if the
// holder dies. The blocking flock runs in a goroutine so that the lock is
// handed over the moment it is free while ctx (and lockWait) can still end
// the wait; a lock granted after we gave up is released by closing fd.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	fd, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	got := make(chan error, 1)
	go func() {
		for {
			err := syscall.Flock(int(fd.Fd()), syscall.LOCK_EX)
			if !errors.Is(err, syscall.EINTR) {
				got <- err
				return
			}
		}
	}()
	giveUp := func() {
		go func() {
			<-got
			fd.Close() // also releases a lock granted after we gave up
		}()
	}
	deadline := time.NewTimer(lockWait)
	defer deadline.Stop()
	select {
	case err := <-got:
		if err != nil {
			fd.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		return func() {
			_ = syscall.Flock(int(fd.Fd()), syscall.LOCK_UN)
			fd.Close()
		}, nil
	case <-ctx.Done():
		giveUp()
		return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
	case <-deadline.C:
		giveUp()
		return nil, fmt.Errorf("lock %s: held by another process for more than %s", path, lockWait)
	}
}
