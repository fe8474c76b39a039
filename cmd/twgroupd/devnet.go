package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
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
	var exitAfter, keep bool
	var scenario string
	c := &cobra.Command{
		Use:   "devnet",
		Short: "run a local network of nodes on 127.0.0.10.. and script a group chat (or --scenario scale) through their RPC",
		Long: "devnet starts --nodes twgroupd processes, each on its own loopback address (127.0.0.10,\n" +
			".11, ...; RPC on 127.0.0.1) with a shared user registry,\n" +
			"scripts a group chat and a DM through their RPC, prints what each node shows and\n" +
			"keeps them running until Ctrl-C. With --dir DIR a later run on the same DIR resumes\n" +
			"the same network (users, keys, groups); without it a temporary directory is used and\n" +
			"removed at exit unless --keep. --htmldir serves that twister-html from every node.",
		GroupID: "daemon",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.KeepOpen = !exitAfter
			o.Out = stdout
			if f := cmd.Flags().Lookup("htmldir"); f != nil {
				o.HTMLDir = f.Value.String()
			}
			if f := cmd.Flags().Lookup("debug"); f != nil && f.Changed {
				v := f.Value.String()
				o.Debug = v != "" && v != "0" && v != "false"
			}
			switch scenario {
			case "chat":
				return runDevnet(cmd.Context(), o, keep, stdout)
			case "scale":
				return runScale(cmd.Context(), o, keep, stdout)
			}
			return fmt.Errorf("devnet: unknown scenario %q (chat, scale)", scenario)
		},
	}
	c.Flags().IntVar(&o.Nodes, "nodes", 3, "number of nodes")
	c.Flags().StringVar(&o.Dir, "dir", "", "base directory for the nodes' datadirs; a later run on it resumes the same network (default: a new temporary directory)")
	c.Flags().DurationVar(&o.Timeout, "timeout", 90*time.Second, "how long to wait for the conversation to reach every node")
	c.Flags().BoolVar(&exitAfter, "exit", false, "stop the nodes after the script instead of waiting for Ctrl-C")
	c.Flags().BoolVar(&keep, "keep", false, "keep the temporary directory at exit (without --dir)")
	c.Flags().StringVar(&scenario, "scenario", "chat", "chat: a scripted group chat; scale: everyone follows everyone, a group of all, a message, churn, with timings and per-node sockets and RSS (stops by itself)")
	return c
}

// prepareDevnet sets o.Binary to this executable and, without --dir, o.Dir
// to a new temporary directory named prefix*; the returned done removes it
// at the end unless keep (a removal error goes to *err if it is nil).
func prepareDevnet(o *devnet.Options, prefix string, keep bool, out io.Writer) (done func(err *error), temp bool, err error) {
	done = func(*error) {}
	bin, err := os.Executable()
	if err != nil {
		return done, false, fmt.Errorf("devnet: find own binary: %w", err)
	}
	o.Binary = bin
	if o.Dir != "" {
		return done, false, nil
	}
	if o.Dir, err = os.MkdirTemp("", prefix); err != nil {
		return done, false, fmt.Errorf("devnet: %w", err)
	}
	dir := o.Dir
	return func(err *error) {
		if keep {
			fmt.Fprintf(out, "devnet kept in %s (run again with --dir %s to resume it)\n", dir, dir)
			return
		}
		if rerr := os.RemoveAll(dir); rerr != nil && *err == nil {
			*err = fmt.Errorf("devnet: remove %s: %w", dir, rerr)
		}
	}, true, nil
}

func runDevnet(ctx context.Context, o devnet.Options, keep bool, out io.Writer) (err error) {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	done, temp, err := prepareDevnet(&o, "twgroupd-devnet-", keep, out)
	defer done(&err)
	if err != nil {
		return err
	}
	if temp {
		fmt.Fprintf(out, "devnet in %s (node logs in nodeN/twgroupd.log; removed at exit, --keep keeps it, --dir DIR makes a network you can resume)\n", o.Dir)
	} else {
		if o.Dir, err = filepath.Abs(o.Dir); err != nil {
			return fmt.Errorf("devnet: %w", err)
		}
		fmt.Fprintf(out, "devnet in %s (node logs in nodeN/twgroupd.log; run again with the same --dir to resume)\n", o.Dir)
	}
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
		devnet.PrintAccess(out, nw, o.Binary)
		<-ctx.Done()
	}
	return nil
}
