package rpc

import (
	"errors"
	"fmt"
	"strings"

	"github.com/twgroupd/twgroupd/dm"
	"github.com/twgroupd/twgroupd/internal/upstream"
)

// JSON-RPC error codes (twisterd src/bitcoinrpc.h, spec §8.1).
const (
	CodeInvalidRequest      = -32600
	CodeMethodNotFound      = -32601
	CodeInvalidParams       = -32602
	CodeInternal            = -32603
	CodeParse               = -32700
	CodeMisc                = -1
	CodeType                = -3
	CodeWallet              = -4
	CodeInvalidAddressOrKey = -5
	CodeInvalidParameter    = -8
	CodeWalletAccountName   = -11
	CodeWalletUnlockNeeded  = -13
)

// Error is a JSON-RPC error object {"code":..,"message":..}. Handlers return
// it for errors decided at the RPC layer; backend errors go through rpcError.
type Error struct {
	Code    int
	Message string
}

func (e *Error) Error() string { return e.Message }

// httpStatus is twisterd's ErrorReply mapping for a single request.
func (e *Error) httpStatus() int {
	switch e.Code {
	case CodeInvalidRequest:
		return 400
	case CodeMethodNotFound:
		return 404
	}
	return 500
}

// errorCode is one row of the mapping from backend errors to JSON-RPC codes.
type errorCode struct {
	target error
	code   int
	// wrapped: the message is the wrapping error's text (which carries
	// context such as the username), not the sentinel's.
	wrapped bool
}

// rpcError maps any error a handler returns to a JSON-RPC error: the one
// table of the daemon (contracts.md "Errors"). Sentinels give twisterd's
// message exactly even when a backend wrapped them with context.
func rpcError(err error) *Error {
	var re *Error
	if errors.As(err, &re) {
		return re
	}
	var ue *upstream.RPCError
	if errors.As(err, &ue) {
		return &Error{Code: ue.Code, Message: ue.Message}
	}
	if e := mapBackendError(err); e != nil {
		return e
	}
	return &Error{Code: CodeInternal, Message: err.Error()}
}

// messageOf returns the text for a mapped error: the sentinel's own text, or
// for wrapped sentinels the text of the innermost error that carries context
// around the sentinel (e.g. "Private key for username bob is not known"),
// without a trailing ": <sentinel>".
func messageOf(err error, row errorCode) string {
	if !row.wrapped {
		// A sentinel with its culprit appended keeps twisterd's text as
		// the prefix (docs/rpc.md "Differences").
		var ce *dm.CulpritError
		if errors.As(err, &ce) && errors.Is(ce.Err, row.target) {
			return ce.Error()
		}
		return row.target.Error()
	}
	msg := ""
	for e := err; e != nil && e != row.target; e = errors.Unwrap(e) {
		if errors.Is(e, row.target) {
			msg = e.Error()
		}
	}
	if msg == "" {
		return row.target.Error()
	}
	return strings.TrimSuffix(msg, ": "+row.target.Error())
}

func mapByTable(err error, table []errorCode) *Error {
	for _, row := range table {
		if errors.Is(err, row.target) {
			return &Error{Code: row.code, Message: messageOf(err, row)}
		}
	}
	return nil
}

// errNoBackend marks a method whose backend is not configured in this
// daemon; with an upstream it is forwarded there.
var errNoBackend = errors.New("not available in this twgroupd")

func noBackend(method, what string) error {
	return fmt.Errorf("%s: no %s configured in this twgroupd (run it with -upstream or enable the %s): %w", method, what, what, errNoBackend)
}
