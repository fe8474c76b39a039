package rpc

import (
	"github.com/twgroupd/twgroupd/dm"
	"github.com/twgroupd/twgroupd/groupchat"
	"github.com/twgroupd/twgroupd/internal/dht"
	"github.com/twgroupd/twgroupd/internal/swarm"
	"github.com/twgroupd/twgroupd/internal/upstream"
	"github.com/twgroupd/twgroupd/wallet"
)

// The real backends satisfy the interfaces the methods use (contracts.md).
var (
	_ DMEngine     = (*dm.Engine)(nil)
	_ GroupService = (*groupchat.Service)(nil)
	_ Wallet       = (*wallet.Wallet)(nil)
	_ DHTNode      = (*dht.Node)(nil)
	_ Swarm        = (*swarm.Swarm)(nil)
	_ RawPoster    = (*swarm.Swarm)(nil)
	_ Forwarder    = (*upstream.Client)(nil)
)
