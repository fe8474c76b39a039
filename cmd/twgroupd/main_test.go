package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// binPath is the twgroupd binary built once for the subprocess tests.
var binPath string

func TestMain(m *testing.M) {
	flag.Parse()
	// Fuzzing runs no subprocess test; its workers re-enter TestMain, and a
	// build per worker would starve them.
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		os.Exit(m.Run())
	}
	if f := flag.Lookup("test.fuzzworker"); f != nil && f.Value.String() == "true" {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "twgroupd-cli-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "twgroupd")
	build := exec.Command("go", "build", "-o", binPath, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build twgroupd:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	status         int
}

// runBin runs the built binary with a clean environment (HOME in a temp
// dir, so no real ~/.twgroupd is read) and stdin.
func runBin(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	return runBinHome(t, t.TempDir(), stdin, args...)
}

// runBinHome is runBin with $HOME set to home (for the default datadir).
func runBinHome(t *testing.T, home, stdin string, args ...string) result {
	t.Helper()
	if binPath == "" {
		t.Fatal("twgroupd binary not built (fuzzing run)")
	}
	cmd := exec.Command(binPath, args...)
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH")}
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("twgroupd %q hung", args)
	}
	status := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		status = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errb.String(), status}
}
