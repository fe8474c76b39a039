package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/twgroupd/twgroupd/dm"
	"github.com/twgroupd/twgroupd/groupchat"
	"github.com/twgroupd/twgroupd/internal/msgstore"
	"github.com/twgroupd/twgroupd/internal/twproto"
	"github.com/twgroupd/twgroupd/wallet"
)

// The interfaces below are what the methods need from the rest of the
// daemon; their signatures are those of contracts.md, so *dm.Engine,
// *groupchat.Service, *wallet.Wallet, registry.Registry, *dht.Node and
// *swarm.Swarm satisfy them as they are. A nil backend makes its methods
// answer a clear error (or go upstream when one is configured).

// DMEngine is the part of *dm.Engine the DM methods use.
type DMEngine interface {
	NewDirectMsg(ctx context.Context, from string, k int64, to, msg string, copySelf bool) (post []byte, err error)
	GetDirectMsgs(localUser string, count int, queries []msgstore.Query) ([]Thread, error)
	Rescan(ctx context.Context, user string) error
	Follow(ctx context.Context, localUser string, users []string) error
	Unfollow(ctx context.Context, localUser string, users []string) error
	Following(localUser string) ([]string, error)
}

// GroupService is the part of *groupchat.Service the group methods use.
type GroupService interface {
	Create(ctx context.Context, desc, wif string) (alias string, err error)
	List(user string, onlyIgnored bool) ([]string, error)
	Info(alias string) (GroupInfo, error)
	Invite(ctx context.Context, user string, k int64, alias string, members []string) error
	SetDescription(ctx context.Context, user string, k int64, alias, desc string) error
	Leave(ctx context.Context, user, alias string) error
}

// Wallet is the part of *wallet.Wallet the key methods use.
type Wallet interface {
	CreateUser(name string) (*twproto.PrivateKey, error)
	ImportUserKey(name string, key *twproto.PrivateKey) error
	Key(name string) (*twproto.PrivateKey, error)
	Users() ([]string, error)
}

// KeySource is the user registry (the blockchain of twisterd).
type KeySource = twproto.KeySource

// DHTNode is the part of *dht.Node behind dhtget and dhtput.
type DHTNode interface {
	Get(ctx context.Context, user, resource string, multi bool, timeout, timeoutMulti time.Duration, minMulti int) ([][]byte, error)
	Put(ctx context.Context, user, resource string, multi bool, value json.RawMessage, sigUser string, seq int64) error
}

// Swarm is the part of *swarm.Swarm behind the piece and post methods.
type Swarm interface {
	LastHave(user string) int64
	NumPieces(user string) int
	PieceMaxSeen(user string, k int64) int
	Posts(ctx context.Context, count int, queries []msgstore.Query, allowedFlags, requiredFlags int) ([][]byte, error)
}

// Registrar publishes a wallet user's public key to the user registry: the
// work of twisterd's sendnewusertransaction. On a devnet it writes the
// shared registry file; the result is shown as the transaction id.
type Registrar interface {
	RegisterUser(ctx context.Context, user string, pubkey []byte) (txid string, err error)
}

// NodeInfo reports the node state getinfo shows.
type NodeInfo interface {
	NodeStatus(ctx context.Context) (NodeStatus, error)
}

// NodeStatus holds our values for getinfo's twisterd field names; the
// fields twgroupd has no equivalent for are reported as zero.
type NodeStatus struct {
	Blocks         int64 // best height known to the registry
	Connections    int   // swarm peer connections
	DHTNodes       int64 // routing table size
	DHTGlobalNodes int64 // estimated network size
	Proxy          string
	ExtPort1       int // swarm/DHT port
	ExtPort2       int
	ExtAddrNet1    string
	ExtAddrNet2    string
	DHTTorrents    int // swarms we take part in
	NumPeers       int
	PeerListSize   int
	TotalDownload  int64
	TotalUpload    int64
	TotalDHTDown   int64
	TotalDHTUp     int64
	Errors         string
	Chain          *ChainSync // nil unless the registry is twgroupd's own chain
}

// ChainSync is the -registry=chain initial sync state, shown after
// twisterd's getinfo fields (twisterd has none: its "blocks" alone tells).
type ChainSync struct {
	Headers    int32   // most-work valid header's height
	Target     int32   // the height being synced to (headers or a peer's announced height)
	Syncing    bool    // blocks < Target
	Percent    float64 // 100 * blocks / Target
	BlocksPerS float64 // blocks connected per second since the sync began
}

// Forwarder passes a JSON-RPC request body to an upstream twisterd
// unchanged; *upstream.Client implements it.
type Forwarder interface {
	Forward(ctx context.Context, body []byte) (status int, header http.Header, reply []byte, err error)
}

// backendErrors is the table of backend sentinel errors and their JSON-RPC
// codes (contracts.md "Errors", spec §8.4). Messages are the sentinels'
// texts, which are twisterd's.
func backendErrors() []errorCode {
	return []errorCode{
		{target: dm.ErrEncryptToDest, code: CodeInternal},
		{target: dm.ErrEncryptToSelf, code: CodeInternal},
		{target: dm.ErrSign, code: CodeInternal},
		{target: dm.ErrKUsed, code: CodeInvalidParams, wrapped: true},
		{target: dm.ErrNegativeK, code: CodeInvalidParams},
		{target: dm.ErrEmptyMessage, code: CodeInvalidParameter},
		{target: dm.ErrNotRegistered, code: CodeInvalidParameter, wrapped: true},
		{target: groupchat.ErrNoMembers, code: CodeInvalidParameter},
		{target: groupchat.ErrUnknownGroup, code: CodeInternal},
		{target: groupchat.ErrUnknownUser, code: CodeInternal},
		{target: groupchat.ErrEncryptToGroup, code: CodeInternal},
		{target: wallet.ErrUserNotFound, code: CodeInvalidAddressOrKey},
		{target: wallet.ErrKeyNotKnown, code: CodeWallet, wrapped: true},
		{target: wallet.ErrInvalidKey, code: CodeInvalidAddressOrKey},
		{target: wallet.ErrUserMustExist, code: CodeInvalidAddressOrKey},
		{target: wallet.ErrKeyMismatch, code: CodeInvalidAddressOrKey},
		{target: wallet.ErrUserExists, code: CodeWalletAccountName},
		{target: wallet.ErrUserInChain, code: CodeWalletAccountName},
		{target: wallet.ErrInvalidName, code: CodeWalletAccountName, wrapped: true},
		{target: wallet.ErrLocked, code: CodeWallet, wrapped: true},
		{target: errNoBackend, code: CodeMisc, wrapped: true},
	}
}

// mapBackendError maps err through backendErrors and the typed errors of
// twproto; nil when err is none of them.
func mapBackendError(err error) *Error {
	var pe *twproto.PostError
	if errors.As(err, &pe) {
		return &Error{Code: CodeInvalidParams, Message: pe.Error()}
	}
	return mapByTable(err, backendErrors())
}
