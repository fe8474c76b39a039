package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/twgroupd/twgroupd/dm"
	"github.com/twgroupd/twgroupd/wallet"

	"github.com/twgroupd/twgroupd/internal/config"
	"github.com/twgroupd/twgroupd/internal/registry"
)

// bindHost is the address the DHT and swarm listen on: twisterd binds
// 0.0.0.0; -bind narrows it (127.0.0.1 for a devnet).
func bindHost(cfg config.Config) string {
	if cfg.Bind != "" {
		return cfg.Bind
	}
	return "0.0.0.0"
}

// fileRegistrar answers sendnewusertransaction on a private network by
// writing the shared registry file.
type fileRegistrar struct{ file *registry.File }

func (r fileRegistrar) RegisterUser(ctx context.Context, user string, pubkey []byte) (string, error) {
	reg, err := r.file.Register(ctx, user, pubkey)
	if err != nil {
		return "", err
	}
	return reg.TxID(), nil
}

// importUpstreamKeys copies the upstream twisterd's user keys into our
// wallet, so newdirectmsg signs, and DMs decrypt, with the keys twisterd has
// (docs/interop.md), then its users' following lists. A failure is logged:
// the node still serves, and an operator can importprivkey by hand.
func importUpstreamKeys(ctx context.Context, n *Node) {
	keys, err := registry.ImportUserKeys(ctx, n.upstream, nil)
	imported := storeImportedKeys(n, keys)
	if err != nil {
		n.log.Warn("could not read every user key from upstream twisterd", "err", err)
	}
	n.log.Info("upstream user keys", "read", len(keys), "imported", imported)
	for _, k := range keys {
		importUpstreamFollowing(ctx, n, k.User)
	}
}

func storeImportedKeys(n *Node, keys []registry.ImportedKey) int {
	imported := 0
	for _, k := range keys {
		if have, kerr := n.wallet.Key(k.User); kerr == nil && bytes.Equal(have.PubKey(), k.Key.PubKey()) {
			continue
		}
		if ierr := n.wallet.ImportUserKey(k.User, k.Key); ierr != nil {
			n.log.Warn("import upstream user key", "user", k.User, "err", ierr)
			continue
		}
		imported++
	}
	return imported
}

// defaultUpstreamSync is how often a running node reads the upstream
// twisterd's users and following lists again.
const defaultUpstreamSync = 15 * time.Second

// syncUpstream keeps the wallet and the following lists in step with the
// upstream twisterd while the node runs, not only at start: a user imported
// into twisterd later is imported here, and a follow made on twisterd
// (its own RPC, another frontend) is added here, so the not-following rule
// does not drop that user's DMs until a restart. Each round costs one
// listwalletusers and one getfollowing per user; keys are read only for
// users we do not hold yet.
func syncUpstream(ctx context.Context, n *Node) {
	res, err := n.upstream.Call(ctx, "listwalletusers")
	if err != nil {
		n.log.Debug("upstream sync: listwalletusers", "err", err)
		return
	}
	var all []string
	if err := json.Unmarshal(res, &all); err != nil {
		n.log.Debug("upstream sync: listwalletusers", "err", err)
		return
	}
	var users, missing []string
	for _, u := range all {
		if registry.CheckUsername(u) != nil { // "x/replaced", "*alias"
			continue
		}
		users = append(users, u)
		if _, err := n.wallet.Key(u); errors.Is(err, wallet.ErrUserNotFound) {
			missing = append(missing, u)
		}
	}
	if len(missing) > 0 {
		keys, err := registry.ImportUserKeys(ctx, n.upstream, missing)
		if imported := storeImportedKeys(n, keys); imported > 0 {
			n.log.Info("new upstream user keys", "imported", imported)
		}
		if err != nil {
			n.log.Debug("upstream sync: user keys", "err", err)
		}
	}
	for _, u := range users {
		if ctx.Err() != nil {
			return
		}
		if _, err := n.wallet.Key(u); err == nil {
			importUpstreamFollowing(ctx, n, u)
		}
	}
}

// upstreamLoop runs syncUpstream every n.upstreamSync until ctx ends.
func (n *Node) upstreamLoop(ctx context.Context) {
	t := time.NewTicker(n.upstreamSync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			syncUpstream(ctx, n)
		}
	}
}

// importUpstreamFollowing adds the users user follows on the upstream
// twisterd to our following list. The DM engine drops a DM whose sender
// the recipient does not follow (spec §5.3, processReceivedDM), so without
// it a twisterd user's DMs stop arriving once twgroupd handles them: a
// live twisterd's alice followed bob, and the node that imported alice's
// key dropped bob's DMs to her as "not following". Follows are only added,
// never removed: ours may hold follows made through our own RPC. Names
// twisterd follows that the registry does not know (twisterd's follow takes
// any string) are left out quietly.
func importUpstreamFollowing(ctx context.Context, n *Node, user string) {
	res, err := n.upstream.Call(ctx, "getfollowing", user)
	if err != nil {
		n.log.Warn("read following list from upstream twisterd", "user", user, "err", err)
		return
	}
	var following []string
	if err := json.Unmarshal(res, &following); err != nil {
		n.log.Warn("read following list from upstream twisterd", "user", user, "err", err)
		return
	}
	ours, err := n.engine.Following(user)
	if err != nil {
		n.log.Warn("following list", "user", user, "err", err)
		return
	}
	var add []string
	for _, f := range following {
		if !slices.Contains(ours, f) {
			add = append(add, f)
		}
	}
	if len(add) == 0 {
		return
	}
	err = n.engine.Follow(ctx, user, add)
	if err != nil && !errors.Is(err, dm.ErrNotRegistered) {
		n.log.Warn("follow upstream following list", "user", user, "err", err)
		return
	}
	n.log.Info("upstream following list", "user", user, "following", len(following), "new", add, "err", err)
}
