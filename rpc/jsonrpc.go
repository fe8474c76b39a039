package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/twgroupd/twgroupd/internal/tjson"
)

// request is one parsed JSON-RPC 1.0 request object (spec §8.1 "Envelope").
type request struct {
	id     json.RawMessage // echoed as given (compacted); nil means null
	method string
	params params
	raw    json.RawMessage // the request object, for forwarding
}

// parseRequest is twisterd's JSONRequest::parse. The id is set before any
// later check fails, so error replies echo it.
func parseRequest(raw json.RawMessage) (*request, *Error) {
	req := &request{raw: raw}
	if tjson.KindOf(raw) != tjson.KindObject {
		return req, &Error{Code: CodeInvalidRequest, Message: "Invalid Request object"}
	}
	members, err := tjson.Members(raw, tjson.RFC8259)
	if err != nil {
		return req, &Error{Code: CodeParse, Message: "Parse error"}
	}
	// json_spirit's find_value returns the first member of that name.
	var method, ps json.RawMessage
	var haveID bool
	for _, m := range members {
		switch m.Key {
		case "id":
			if !haveID {
				req.id, haveID = compactJSON(m.Value), true
			}
		case "method":
			if method == nil {
				method = m.Value
			}
		case "params":
			if ps == nil {
				ps = m.Value
			}
		}
	}
	switch t := tjson.KindOf(method); {
	case method == nil || t == tjson.KindNull:
		return req, &Error{Code: CodeInvalidRequest, Message: "Missing method"}
	case t != tjson.KindString:
		return req, &Error{Code: CodeInvalidRequest, Message: "Method must be a string"}
	}
	name, err := tjson.Parse(method, tjson.RFC8259)
	if err != nil {
		return req, &Error{Code: CodeParse, Message: "Parse error"}
	}
	req.method = name.Str
	switch t := tjson.KindOf(ps); {
	case ps == nil || t == tjson.KindNull:
		req.params = params{}
	case t == tjson.KindArray:
		elems, err := tjson.Elements(ps, tjson.RFC8259)
		if err != nil {
			return req, &Error{Code: CodeParse, Message: "Parse error"}
		}
		req.params = elems
	default:
		return req, &Error{Code: CodeInvalidRequest, Message: "Params must be an array"}
	}
	return req, nil
}

func compactJSON(raw json.RawMessage) json.RawMessage {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return raw
	}
	return buf.Bytes()
}

// appendReply writes {"result":..,"error":..,"id":..} (JSONRPCReplyObj):
// result is null whenever there is an error.
func appendReply(dst []byte, result []byte, rerr *Error, id json.RawMessage) []byte {
	dst = append(dst, `{"result":`...)
	if rerr != nil || result == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, result...)
	}
	dst = append(dst, `,"error":`...)
	if rerr == nil {
		dst = append(dst, "null"...)
	} else {
		dst = appendErrorObject(dst, rerr)
	}
	dst = append(dst, `,"id":`...)
	if id == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, id...)
	}
	return append(dst, '}')
}

func appendErrorObject(dst []byte, e *Error) []byte {
	dst = append(dst, `{"code":`...)
	dst = fmt.Appendf(dst, "%d", e.Code)
	dst = append(dst, `,"message":`...)
	dst = tjson.AppendString(dst, e.Message)
	return append(dst, '}')
}

// quietMethods are polled by twister-html every second or so; twisterd
// does not log them either.
var quietMethods = map[string]bool{
	"getlasthave": true, "getnumpieces": true, "getinfo": true, "getpiecemaxseen": true,
	"getposts": true, "getdirectmsgs": true, "dhtget": true,
}

// errForward asks the transport to send the request to the upstream.
var errForward = errors.New("forward to upstream")

// execute runs one parsed request: the method's result as JSON text, or an
// error. errForward means "not ours": the caller forwards the request.
func (s *Server) execute(ctx context.Context, req *request) ([]byte, error) {
	m, ok := s.methods[req.method]
	if !ok {
		if s.cfg.Upstream != nil {
			return nil, errForward
		}
		return nil, &Error{Code: CodeMethodNotFound, Message: "Method not found"}
	}
	if !quietMethods[req.method] {
		s.log.Debug("rpc call", "method", req.method)
	}
	// Wrong parameter count: the handler throws its help text, which
	// execute reports as -1 (spec §8.1 "Handler errors").
	if len(req.params) < m.minParams || (m.maxParams >= 0 && len(req.params) > m.maxParams) {
		return nil, &Error{Code: CodeMisc, Message: m.help}
	}
	result, err := m.handler(ctx, req.params)
	if err != nil {
		if errors.Is(err, errNoBackend) && s.cfg.Upstream != nil {
			return nil, errForward
		}
		return nil, err
	}
	out, err := tjson.Marshal(result)
	if err != nil {
		return nil, fmt.Errorf("%s: encode result: %w", req.method, err)
	}
	return out, nil
}

// execOne is JSONRPCExecOne: one batch element, always a reply object.
func (s *Server) execOne(ctx context.Context, raw json.RawMessage) []byte {
	req, perr := parseRequest(raw)
	if perr != nil {
		return appendReply(nil, nil, perr, req.id)
	}
	result, err := s.execute(ctx, req)
	if errors.Is(err, errForward) {
		return s.forwardOne(ctx, req)
	}
	if err != nil {
		return appendReply(nil, nil, s.replyError(req.method, err), req.id)
	}
	return appendReply(nil, result, nil, req.id)
}

// execBatch is JSONRPCExecBatch: each element runs independently.
func (s *Server) execBatch(ctx context.Context, elems []json.RawMessage) []byte {
	out := []byte{'['}
	for i, e := range elems {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, s.execOne(ctx, e)...)
	}
	return append(out, ']', '\n')
}

// forwardOne sends one request object upstream and returns its reply
// object, for batch elements and websocket requests.
func (s *Server) forwardOne(ctx context.Context, req *request) []byte {
	_, _, reply, err := s.forward(ctx, req.raw)
	if err != nil {
		return appendReply(nil, nil, s.replyError(req.method, err), req.id)
	}
	reply = bytes.TrimSpace(reply)
	if tjson.KindOf(reply) != tjson.KindObject || !tjson.Valid(reply, tjson.RFC8259) {
		return appendReply(nil, nil, &Error{Code: CodeInternal, Message: "upstream: reply is not a JSON-RPC reply"}, req.id)
	}
	return reply
}

// replyError maps err to its JSON-RPC error and logs what is not a plain
// caller error. Only method names are logged, never parameters (WIFs).
func (s *Server) replyError(method string, err error) *Error {
	e := rpcError(err)
	if e.Code == CodeInternal {
		s.log.Warn("rpc method failed", "method", method, "err", err)
	}
	return e
}
