package node

import (
	"bytes"
	"context"
	"encoding/json"

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
// (docs/interop.md). A failure is logged: the node still serves, and an
// operator can importprivkey by hand.
func importUpstreamKeys(ctx context.Context, n *Node) {
	keys, err := registry.ImportUserKeys(ctx, n.upstream, nil)
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
	if err != nil {
		n.log.Warn("could not read every user key from upstream twisterd", "err", err)
	}
	n.log.Info("upstream user keys", "read", len(keys), "imported", imported)
	for _, k := range keys {
		importUpstreamFollowing(ctx, n, k.User)
	}
}

// importUpstreamFollowing adds the users user follows on the upstream
// twisterd to our following list. The DM engine drops a DM whose sender
// the recipient does not follow (spec §5.3, processReceivedDM), so without
// it a twisterd user's DMs stop arriving once twgroupd handles them: a
// live twisterd's alice followed bob, and the node that imported alice's
// key dropped bob's DMs to her as "not following". Follows are only added,
// never removed: ours may hold follows made through our own RPC.
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
	if err := n.engine.Follow(ctx, user, following); err != nil {
		n.log.Warn("follow upstream following list", "user", user, "err", err)
		return
	}
	n.log.Info("upstream following list", "user", user, "following", len(following))
}
