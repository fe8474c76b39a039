package rpc

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/twgroupd/twgroupd/internal/tjson"
)

// feedBuffer is how many events a websocket client may lag behind before it
// is disconnected (it can reconnect and poll getdirectmsgs).
const feedBuffer = 256

// wsWriteTimeout bounds one websocket write, so a client that stops
// reading cannot pin its goroutine.
const wsWriteTimeout = 30 * time.Second

// wsGreeting is what twisterd sends on a new websocket connection.
const wsGreeting = `{"result":"twister WEB Socket..."}`

// Feed fans new messages out to websocket clients. Its Notify method is the
// dm engine's Notify option; it never blocks the engine.
type Feed struct {
	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

type subscriber struct {
	ch   chan []byte
	gone chan struct{} // closed when the client fell too far behind
}

// NewFeed returns an empty feed.
func NewFeed() *Feed { return &Feed{subs: make(map[*subscriber]struct{})} }

// Notify pushes ev to every connected client as twisterd's websocket JSON
// (spec §5.3 step 9): {"type","group"(groups only),"k","time","from","to","msg"}.
func (f *Feed) Notify(ev Event) {
	obj := tjson.Object{{Key: "type", Value: ev.Type}}
	if ev.Type == "GROUP" {
		obj = append(obj, tjson.Field{Key: "group", Value: ev.Group})
	}
	obj = append(obj,
		tjson.Field{Key: "k", Value: ev.K},
		tjson.Field{Key: "time", Value: ev.Time},
		tjson.Field{Key: "from", Value: ev.From},
		tjson.Field{Key: "to", Value: ev.To},
		tjson.Field{Key: "msg", Value: ev.Msg},
	)
	msg, err := tjson.Marshal(obj)
	if err != nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for sub := range f.subs {
		select {
		case sub.ch <- msg:
		default:
			delete(f.subs, sub)
			close(sub.gone)
		}
	}
}

func (f *Feed) subscribe() *subscriber {
	sub := &subscriber{ch: make(chan []byte, feedBuffer), gone: make(chan struct{})}
	f.mu.Lock()
	f.subs[sub] = struct{}{}
	f.mu.Unlock()
	return sub
}

func (f *Feed) unsubscribe(sub *subscriber) {
	f.mu.Lock()
	if _, ok := f.subs[sub]; ok {
		delete(f.subs, sub)
		close(sub.gone)
	}
	f.mu.Unlock()
}

// wsClients tracks open websocket connections so Shutdown can close them
// (they are hijacked, http.Server.Shutdown does not see them).
type wsClients struct {
	mu     sync.Mutex
	conns  map[*websocket.Conn]struct{}
	closed bool
}

func (c *wsClients) add(conn *websocket.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	if c.conns == nil {
		c.conns = make(map[*websocket.Conn]struct{})
	}
	c.conns[conn] = struct{}{}
	return true
}

func (c *wsClients) remove(conn *websocket.Conn) {
	c.mu.Lock()
	delete(c.conns, conn)
	c.mu.Unlock()
}

func (c *wsClients) closeAll() {
	c.mu.Lock()
	c.closed = true
	conns := c.conns
	c.conns = nil
	c.mu.Unlock()
	for conn := range conns {
		conn.Close(websocket.StatusGoingAway, "server stopping")
	}
}

func isWebsocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// serveWebsocket is twisterd's optional websocket server, here on the RPC
// listener behind the same auth: it greets, pushes new-message events and
// answers JSON-RPC requests sent as text messages.
func (s *Server) serveWebsocket(w http.ResponseWriter, r *http.Request) {
	// ServeHTTP has checked Origin and Host (own origin or -rpcallowedorigin).
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		s.log.Debug("rpc: websocket accept", "err", err)
		return
	}
	if !s.ws.add(conn) {
		conn.Close(websocket.StatusGoingAway, "server stopping")
		return
	}
	defer s.ws.remove(conn)
	conn.SetReadLimit(s.cfg.MaxBodyBytes)
	sub := s.cfg.Feed.subscribe()
	defer s.cfg.Feed.unsubscribe(sub)

	ctx, cancel := context.WithCancel(context.WithoutCancel(s.viaContext(r)))
	defer cancel()
	if err := wsWrite(ctx, conn, []byte(wsGreeting)); err != nil {
		return
	}
	readDone := make(chan error, 1)
	go func() { readDone <- s.wsReadLoop(ctx, conn) }()
	for {
		select {
		case msg := <-sub.ch:
			if err := wsWrite(ctx, conn, msg); err != nil {
				return
			}
		case <-sub.gone:
			conn.Close(websocket.StatusPolicyViolation, "client too slow")
			return
		case err := <-readDone:
			if err != nil && websocket.CloseStatus(err) == -1 && !errors.Is(err, context.Canceled) {
				s.log.Debug("rpc: websocket read", "err", err)
			}
			conn.CloseNow()
			return
		}
	}
}

func wsWrite(ctx context.Context, conn *websocket.Conn, msg []byte) error {
	ctx, cancel := context.WithTimeout(ctx, wsWriteTimeout)
	defer cancel()
	return conn.Write(ctx, websocket.MessageText, msg)
}

// wsReadLoop answers JSON-RPC requests arriving on the socket.
func (s *Server) wsReadLoop(ctx context.Context, conn *websocket.Conn) error {
	for {
		typ, data, err := conn.Read(ctx)
		if err != nil {
			return err
		}
		if typ != websocket.MessageText {
			continue
		}
		if !s.acquire(ctx) {
			return ctx.Err()
		}
		reply := s.wsReply(ctx, data)
		s.release()
		if err := wsWrite(ctx, conn, reply); err != nil {
			return err
		}
	}
}

// wsReply runs one websocket message as twisterd's on_message_server does.
func (s *Server) wsReply(ctx context.Context, data []byte) []byte {
	trimmed := trimJSON(data)
	if len(trimmed) == 0 || !tjson.Valid(trimmed, tjson.RFC8259) {
		return errorReply(&Error{Code: CodeParse, Message: "Parse error"}, nil)
	}
	switch tjson.KindOf(trimmed) {
	case tjson.KindObject:
		return append(s.execOne(ctx, trimmed), '\n')
	case tjson.KindArray:
		n, _ := tjson.Len(trimmed, tjson.RFC8259)
		if e := s.batchLimit(n); e != nil {
			return errorReply(e, nil)
		}
		elems, err := tjson.Elements(trimmed, tjson.RFC8259)
		if err != nil {
			return errorReply(&Error{Code: CodeParse, Message: "Parse error"}, nil)
		}
		return s.execBatch(ctx, elems)
	}
	return errorReply(&Error{Code: CodeParse, Message: "Top-level object parse error"}, nil)
}
