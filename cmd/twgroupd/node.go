package main

import (
	"context"
	"log/slog"

	"github.com/twgroupd/twgroupd/internal/config"
	"github.com/twgroupd/twgroupd/internal/node"
)

// runNode runs the daemon until ctx ends, calling ready once the RPC
// listener is up.
func runNode(ctx context.Context, cfg config.Config, log *slog.Logger, ready func()) error {
	return node.Run(ctx, cfg, log, ready)
}
