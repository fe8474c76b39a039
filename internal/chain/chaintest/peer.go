package chaintest

import (
	"bufio"
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twgroupd/twgroupd/internal/chainwire"
)

// Mode is how a Peer behaves after the handshake.
type Mode int

const (
	// Serve answers getheaders, getblocks, getdata and ping as twisterd.
	Serve Mode = iota
	// Stall reads everything and answers nothing.
	Stall
	// Oversize sends a message header announcing a 64 MiB payload.
	Oversize
	// StallBlocks answers headers but never getdata.
	StallBlocks
)

// Peer is a twisterd stand-in on 127.0.0.1 serving a chain of blocks
// (Blocks[0] the genesis), for sync tests. It speaks the recorded wire:
// version 70003 "/twisterd:0.9.40/", 85-byte headers, up to 2000 per answer.
type Peer struct {
	t  testing.TB
	ln net.Listener

	mu       sync.Mutex
	mode     Mode
	blocks   []*chainwire.Block
	byHash   map[chainwire.Hash]int
	served   map[chainwire.Hash]int
	conns    map[net.Conn]*bufio.Writer
	accepted int
}

// NewPeer listens on 127.0.0.1 and serves blocks until the test ends.
func NewPeer(t testing.TB, blocks []*chainwire.Block, mode Mode) *Peer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return newPeer(t, ln, blocks, mode)
}

// NewPeerOn is NewPeer on a given address; nil if it cannot listen there.
func NewPeerOn(t testing.TB, addr string, blocks []*chainwire.Block, mode Mode) *Peer {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil
	}
	return newPeer(t, ln, blocks, mode)
}

func newPeer(t testing.TB, ln net.Listener, blocks []*chainwire.Block, mode Mode) *Peer {
	p := &Peer{t: t, ln: ln, mode: mode, served: map[chainwire.Hash]int{}, conns: map[net.Conn]*bufio.Writer{}}
	p.SetBlocks(blocks)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.accepted++
			p.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.serve(c)
			}()
		}
	}()
	return p
}

// Addr is host:port.
func (p *Peer) Addr() string { return p.ln.Addr().String() }

// SetBlocks switches the served chain and announces its tip with an inv to
// the connected clients (as twisterd relays a new best block).
func (p *Peer) SetBlocks(blocks []*chainwire.Block) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blocks = blocks
	p.byHash = make(map[chainwire.Hash]int, len(blocks))
	for i, b := range blocks {
		p.byHash[b.Header.Hash()] = i
	}
	inv := &chainwire.MsgInv{Items: []chainwire.InvVect{{Type: chainwire.InvBlock, Hash: blocks[len(blocks)-1].Header.Hash()}}}
	for c, w := range p.conns {
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if chainwire.WriteMessage(w, inv) == nil {
			w.Flush()
		}
	}
}

// Served is how many times the block with hash h was sent.
func (p *Peer) Served(h chainwire.Hash) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.served[h]
}

// TotalServed is the number of block messages sent.
func (p *Peer) TotalServed() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, v := range p.served {
		n += v
	}
	return n
}

// Accepted is the number of connections accepted.
func (p *Peer) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

func (p *Peer) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	send := func(m chainwire.Message) bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if err := chainwire.WriteMessage(w, m); err != nil {
			return false
		}
		return w.Flush() == nil
	}
	handshaken := false
	for {
		m, err := chainwire.ReadMessage(r, 0)
		if err != nil {
			return
		}
		p.mu.Lock()
		mode, blocks := p.mode, p.blocks
		p.mu.Unlock()
		switch m := m.(type) {
		case *chainwire.MsgVersion:
			v := &chainwire.MsgVersion{Version: chainwire.ProtocolVersion, Services: 1, Timestamp: time.Now().Unix(),
				AddrRecv: chainwire.NetAddr{Services: 1}, Nonce: m.Nonce + 1, UserAgent: "/twisterd:0.9.40/",
				StartHeight: int32(len(blocks) - 1), Relay: true, HasRelay: true}
			if !send(v) || !send(&chainwire.MsgVerack{}) {
				return
			}
		case *chainwire.MsgVerack:
			handshaken = true
			p.mu.Lock()
			p.conns[c] = w
			p.mu.Unlock()
			defer func() {
				p.mu.Lock()
				delete(p.conns, c)
				p.mu.Unlock()
			}()
			if mode == Oversize {
				var hdr [chainwire.HeaderSize]byte
				copy(hdr[:], chainwire.Magic[:])
				copy(hdr[4:], "block")
				binary.LittleEndian.PutUint32(hdr[16:], 64<<20)
				p.mu.Lock()
				w.Write(hdr[:])
				w.Flush()
				p.mu.Unlock()
			}
		default:
			if !handshaken || mode == Stall || mode == Oversize {
				continue
			}
			if _, ok := m.(*chainwire.MsgGetData); ok && mode == StallBlocks {
				continue
			}
			if !p.answer(m, blocks, send) {
				return
			}
		}
	}
}

func (p *Peer) answer(m chainwire.Message, blocks []*chainwire.Block, send func(chainwire.Message) bool) bool {
	// start is the height after the first locator hash on our chain.
	start := func(l chainwire.Locator) int {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, h := range l.Hashes {
			if i, ok := p.byHash[h]; ok && i < len(blocks) && blocks[i].Header.Hash() == h {
				return i + 1
			}
		}
		return 1
	}
	switch m := m.(type) {
	case *chainwire.MsgPing:
		return send(&chainwire.MsgPong{Nonce: m.Nonce})
	case *chainwire.MsgGetHeaders:
		var hs []chainwire.BlockHeader
		for i := start(m.Locator); i < len(blocks) && len(hs) < chainwire.MaxHeaders; i++ {
			hs = append(hs, blocks[i].Header)
			if blocks[i].Header.Hash() == m.Stop {
				break
			}
		}
		return send(&chainwire.MsgHeaders{Headers: hs})
	case *chainwire.MsgGetBlocks:
		var items []chainwire.InvVect
		for i := start(m.Locator); i < len(blocks) && len(items) < 500; i++ {
			items = append(items, chainwire.InvVect{Type: chainwire.InvBlock, Hash: blocks[i].Header.Hash()})
		}
		return send(&chainwire.MsgInv{Items: items})
	case *chainwire.MsgGetData:
		var missing []chainwire.InvVect
		for _, it := range m.Items {
			p.mu.Lock()
			i, ok := p.byHash[it.Hash]
			var blk *chainwire.Block
			if ok && it.Type == chainwire.InvBlock {
				p.served[it.Hash]++
				blk = p.blocks[i]
			}
			p.mu.Unlock()
			if blk == nil {
				missing = append(missing, it)
				continue
			}
			if !send(&chainwire.MsgBlock{Block: blk}) {
				return false
			}
		}
		if len(missing) > 0 {
			return send(&chainwire.MsgNotFound{Items: missing})
		}
	}
	return true
}
