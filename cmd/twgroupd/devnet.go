package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/twgroupd/twgroupd/internal/devnet"
)

// newDevnetCmd is `twgroupd devnet`, the main job behind `make run`: start
// local nodes (this binary as `serve`), script a group chat through their
// RPC, print each node's view and keep them running until Ctrl-C.
func newDevnetCmd(stdout io.Writer) *cobra.Command {
	var o devnet.Options
	var exitAfter bool
	var scenario string
	c := &cobra.Command{
		Use:     "devnet",
		Short:   "run a local network of nodes on 127.0.0.1 and script a group chat through their RPC",
		GroupID: "daemon",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.KeepOpen = !exitAfter
			o.Out = stdout
			switch scenario {
			case "chat":
				return runDevnet(cmd.Context(), o, stdout)
			case "scale":
				return runScale(cmd.Context(), o, stdout)
			}
			return fmt.Errorf("devnet: unknown scenario %q (chat, scale)", scenario)
		},
	}
	c.Flags().IntVar(&o.Nodes, "nodes", 3, "number of nodes")
	c.Flags().StringVar(&o.Dir, "dir", "", "base directory for the nodes' datadirs (default: a new temporary directory)")
	c.Flags().DurationVar(&o.Timeout, "timeout", 90*time.Second, "how long to wait for the conversation to reach every node")
	c.Flags().BoolVar(&exitAfter, "exit", false, "stop the nodes after the script instead of waiting for Ctrl-C")
	c.Flags().StringVar(&scenario, "scenario", "chat", "chat: a scripted group chat; scale: everyone follows everyone, a group of all, a message, churn, with timings and per-node sockets and RSS (stops by itself)")
	return c
}

func runDevnet(ctx context.Context, o devnet.Options, out io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	bin, err := os.Executable()
	if err != nil {
		return fmt.Errorf("devnet: find own binary: %w", err)
	}
	o.Binary = bin
	if o.Dir == "" {
		if o.Dir, err = os.MkdirTemp("", "twgroupd-devnet-"); err != nil {
			return fmt.Errorf("devnet: %w", err)
		}
	}
	fmt.Fprintf(out, "devnet in %s (node logs in nodeN/twgroupd.log)\n", o.Dir)
	nw, err := devnet.Start(ctx, o)
	if err != nil {
		return err
	}
	defer nw.Stop()
	views, err := nw.Script(ctx, o.Timeout)
	if err != nil {
		return err
	}
	devnet.PrintViews(out, nw, views)
	if o.KeepOpen {
		devnet.PrintAccess(out, nw, bin)
		<-ctx.Done()
	}
	return nil
}
