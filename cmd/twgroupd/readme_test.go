package main

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readmeCLIBlock is the first ```sh block of README.md's "The CLI in five
// lines" section: what a new user copies while `make run` runs.
func readmeCLIBlock(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	_, section, ok := strings.Cut(text, "\n## The CLI in five lines\n")
	if !ok {
		t.Fatal(`README.md has no "## The CLI in five lines" section`)
	}
	if next := strings.Index(section, "\n## "); next >= 0 {
		section = section[:next]
	}
	_, block, ok := strings.Cut(section, "\n```sh\n")
	if !ok {
		t.Fatal("README.md's CLI section has no ```sh block")
	}
	block, _, ok = strings.Cut(block, "\n```")
	if !ok {
		t.Fatal("README.md's CLI block is not closed")
	}
	return block + "\n"
}

// devnetRun is a `twgroupd devnet` process, as `make run` starts it.
type devnetRun struct {
	cmd   *exec.Cmd
	lines chan string
	out   *bytes.Buffer // everything printed so far (read after exit)
	done  chan error
}

func startDevnet(t *testing.T, env []string, args ...string) *devnetRun {
	t.Helper()
	cmd := exec.Command(binPath, append([]string{"devnet"}, args...)...)
	cmd.Env = env
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &devnetRun{cmd: cmd, lines: make(chan string, 1024), out: &bytes.Buffer{}, done: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			d.out.WriteString(sc.Text() + "\n")
			select {
			case d.lines <- sc.Text():
			default:
			}
		}
		close(d.lines)
	}()
	go func() {
		err := cmd.Wait()
		pw.Close()
		d.done <- err
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-d.done:
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
			}
		}
	})
	return d
}

// waitLine returns the first line matching re.
func (d *devnetRun) waitLine(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.After(3 * time.Minute)
	for {
		select {
		case l, ok := <-d.lines:
			if !ok {
				t.Fatalf("devnet ended without printing %v:\n%s", re, d.out.String())
			}
			if re.MatchString(l) {
				return l
			}
		case <-deadline:
			t.Fatalf("devnet printed no %v in time", re)
		}
	}
}

// stop interrupts the devnet as Ctrl-C does and waits for a clean exit.
func (d *devnetRun) stop(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGINT)
	d.wait(t)
}

func (d *devnetRun) wait(t *testing.T) {
	t.Helper()
	select {
	case err := <-d.done:
		for range d.lines {
		}
		if err != nil {
			t.Fatalf("devnet exited with %v:\n%s", err, d.out.String())
		}
	case <-time.After(time.Minute):
		d.cmd.Process.Kill()
		t.Fatal("devnet did not stop")
	}
}

func runShell(t *testing.T, env []string, script string) string {
	t.Helper()
	sh := exec.Command("sh", "-e", "-c", script)
	sh.Env = env
	var out, errb bytes.Buffer
	sh.Stdout, sh.Stderr = &out, &errb
	if err := sh.Run(); err != nil {
		t.Fatalf("sh: %v\nscript:\n%s\nstdout:\n%s\nstderr:\n%s", err, script, out.String(), errb.String())
	}
	return out.String()
}

var pasteLine = regexp.MustCompile(`^tw\(\) \{ .* -datadir=.*node1 "\$@"; \}$`)

// TestReadmeCLIBlock runs README.md's CLI section verbatim, after the line
// the devnet tells the user to paste, against a running devnet; then runs
// the devnet again on the same --dir (it resumes: same alice, same key),
// and checks that a temporary devnet dir goes away at exit unless --keep.
func TestReadmeCLIBlock(t *testing.T) {
	block := readmeCLIBlock(t)
	tmp := t.TempDir()
	env := []string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH"), "TMPDIR=" + tmp}
	dir := filepath.Join(t.TempDir(), "net")

	d := startDevnet(t, env, "--dir", dir)
	paste := d.waitLine(t, pasteLine)
	out := runShell(t, env, paste+"\n"+block)
	if !strings.Contains(out, `"text" : "hi all"`) || !regexp.MustCompile(`"\*[a-z]{8}" : \[`).MatchString(out) {
		t.Fatalf("the README block printed no group thread with \"hi all\":\n%s", out)
	}
	wif := runShell(t, env, paste+"\ntw dumpprivkey alice\n")
	d.stop(t)

	// The same --dir again: the same network.
	d = startDevnet(t, env, "--dir", dir)
	if got := d.waitLine(t, pasteLine); got != paste {
		t.Fatalf("resumed devnet prints %q, first run %q", got, paste)
	}
	if again := runShell(t, env, paste+"\ntw dumpprivkey alice\n"); again != wif {
		t.Fatal("alice's key changed across a resumed devnet")
	}
	d.stop(t)
	for _, want := range []string{"resumed node1", "user alice is in the wallet from an earlier run", "bob received the DM"} {
		if !strings.Contains(d.out.String(), want) {
			t.Fatalf("resumed devnet output lacks %q:\n%s", want, d.out.String())
		}
	}

	// Without --dir: a temporary dir, removed at exit unless --keep.
	d = startDevnet(t, env, "--exit")
	d.wait(t)
	if left, _ := filepath.Glob(filepath.Join(tmp, "twgroupd-devnet-*")); len(left) != 0 {
		t.Fatalf("temporary devnet dirs left: %v", left)
	}
	d = startDevnet(t, env, "--exit", "--keep")
	d.wait(t)
	if left, _ := filepath.Glob(filepath.Join(tmp, "twgroupd-devnet-*")); len(left) != 1 {
		t.Fatalf("--keep: devnet dirs %v, want one", left)
	}
}
