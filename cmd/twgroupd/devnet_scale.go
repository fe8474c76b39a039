package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/twgroupd/twgroupd/internal/devnet"
)

// runScale is `twgroupd devnet --scenario scale` (`make net`): N nodes,
// each on its own loopback address, measured through the scale scenario;
// the nodes stop when it ends.
func runScale(ctx context.Context, o devnet.Options, keep bool, out io.Writer) (err error) {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	done, _, err := prepareDevnet(&o, "twgroupd-scale-", keep, out)
	defer done(&err)
	if err != nil {
		return err
	}
	o.Users = devnet.ScaleUsers(o.Nodes)
	// One-second blocks: the creator can post its n+n/16 invites after
	// about n/2 s instead of n*5 s (registry.DefaultBlockInterval is 10 s).
	o.BlockInterval = time.Second
	fmt.Fprintf(out, "devnet scale in %s (node logs in nodeN/twgroupd.log)\n", o.Dir)
	nw, err := devnet.Start(ctx, o)
	if err != nil {
		return err
	}
	defer nw.Stop()
	rep, err := nw.Scale(ctx, devnet.ScaleOptions{Phase: o.Timeout})
	if rep != nil {
		devnet.PrintScale(out, rep)
	}
	return err
}
