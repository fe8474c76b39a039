package devnet

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Process is one child process (a `twgroupd serve`) with its output
// appended to a log file, in its own process group so a terminal's Ctrl-C
// reaches only the devnet, which stops it in order.
type Process struct {
	Cmd  *exec.Cmd
	Done chan struct{} // closed once the process has exited
	err  error         // its Wait error, valid once Done is closed
}

// StartProcess starts binary with args, its stdout and stderr appended to
// logPath (0600).
func StartProcess(binary, logPath string, args ...string) (*Process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("devnet: %w", err)
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("devnet: start %s: %w", binary, err)
	}
	p := &Process{Cmd: cmd, Done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.Done)
	}()
	return p, nil
}

// Err is the process's exit error; call it after Done is closed.
func (p *Process) Err() error { return p.err }

// PID is the process id.
func (p *Process) PID() int { return p.Cmd.Process.Pid }

// Stop sends SIGTERM and, if the process has not exited after grace,
// SIGKILL; it returns once the process has exited.
func (p *Process) Stop(grace time.Duration) {
	select {
	case <-p.Done:
		return
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.Done:
	case <-time.After(grace):
		p.Kill()
	}
}

// Kill sends SIGKILL and waits for the exit.
func (p *Process) Kill() {
	_ = p.Cmd.Process.Kill()
	<-p.Done
}
