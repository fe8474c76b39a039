// Package sdnotify sends systemd service notifications (sd_notify(3)):
// READY=1 once the daemon serves, STOPPING=1 when it begins shutting down.
//
// It owns the datagram to $NOTIFY_SOCKET and nothing else; it has no
// dependency beyond the standard library. Outside systemd (no
// $NOTIFY_SOCKET) every call is a no-op.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// States understood by systemd for Type=notify units.
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
)

// EnvSocket is the environment variable systemd sets for Type=notify units.
const EnvSocket = "NOTIFY_SOCKET"

// Notifier sends to one notification socket. The zero value (and a nil
// *Notifier) sends nothing.
type Notifier struct {
	addr string
}

// FromEnv returns a Notifier for $NOTIFY_SOCKET. It does not unset the
// variable, so child processes (none today) would see it too.
func FromEnv() *Notifier {
	return New(os.Getenv(EnvSocket))
}

// New returns a Notifier for the socket path addr; a leading '@' names an
// abstract socket, as systemd writes it. addr "" gives a no-op Notifier.
func New(addr string) *Notifier {
	return &Notifier{addr: addr}
}

// Enabled reports whether notifications go anywhere.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != "" }

// Notify sends state (for example Ready, or "STATUS=...\nREADY=1") as one
// datagram. It returns nil without sending when not Enabled.
func (n *Notifier) Notify(state string) error {
	if !n.Enabled() {
		return nil
	}
	addr := n.addr
	if strings.HasPrefix(addr, "@") {
		addr = "\x00" + addr[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: dial %s: %w", n.addr, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: send to %s: %w", n.addr, err)
	}
	return nil
}
