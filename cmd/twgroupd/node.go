package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/twgroupd/twgroupd/internal/config"
)

// runNode runs the daemon until ctx ends, calling ready once the RPC
// listener is up. Placeholder until internal/node lands: the lead replaces
// the body with `return node.Run(ctx, cfg, log, ready)`.
func runNode(ctx context.Context, cfg config.Config, log *slog.Logger, ready func()) error {
	return errors.New("node not yet wired")
}
