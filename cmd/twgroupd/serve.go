package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/twgroupd/twgroupd/internal/config"
	"github.com/twgroupd/twgroupd/internal/sdnotify"
)

// nodeRunner is the daemon's entry point, node.Run in production.
type nodeRunner func(ctx context.Context, cfg config.Config, log *slog.Logger, ready func()) error

// notifier is what serve needs from systemd notification.
type notifier interface {
	Notify(state string) error
}

// newLogger is the daemon's slog text logger; -debug lowers the level.
// Attributes whose names suggest secrets are blanked as a second line of
// defence: config.Config already renders without its password.
func newLogger(w io.Writer, debug bool) *slog.Logger {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if kind := a.Value.Kind(); kind != slog.KindString && kind != slog.KindAny {
				return a // numbers and flags such as rpcpassword_set=true are safe
			}
			k := strings.ToLower(a.Key)
			if strings.Contains(k, "password") || strings.Contains(k, "wif") ||
				strings.Contains(k, "privkey") || strings.Contains(k, "secret") {
				return slog.String(a.Key, "[redacted]")
			}
			return a
		},
	}))
}

// runServe runs the daemon: SIGINT/SIGTERM cancel its context, READY=1 is
// sent when run reports ready, STOPPING=1 when shutdown begins (signal, or
// run returning after the stop RPC). A second signal kills the process the
// default way, for an operator whose shutdown hangs.
func runServe(ctx context.Context, cfg config.Config, logw io.Writer, run nodeRunner, sd notifier) error {
	log := newLogger(logw, cfg.Debug)
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	log.Info("twgroupd starting", "config", cfg)

	ctx, stopSignals := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopSignals()

	var stopping sync.Once
	notifyStopping := func(reason string) {
		stopping.Do(func() {
			log.Info("twgroupd shutting down", "reason", reason)
			if err := sd.Notify(sdnotify.Stopping); err != nil {
				log.Warn("systemd notify failed", "err", err)
			}
		})
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			notifyStopping("signal")
			stopSignals()
		case <-done:
		}
	}()

	var readyOnce sync.Once
	ready := func() {
		readyOnce.Do(func() {
			log.Info("twgroupd ready", "rpcport", cfg.RPCPort, "dhtport", cfg.DHTPort)
			if err := sd.Notify(fmt.Sprintf("READY=1\nSTATUS=serving JSON-RPC on port %d", cfg.RPCPort)); err != nil {
				log.Warn("systemd notify failed", "err", err)
			}
		})
	}

	err := run(ctx, cfg, log, ready)
	notifyStopping("node stopped")
	if err != nil {
		log.Error("twgroupd stopped with an error", "err", err)
		return exitStatus(1)
	}
	log.Info("twgroupd stopped")
	return nil
}
