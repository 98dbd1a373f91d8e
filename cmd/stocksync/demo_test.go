package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/stocksync/stocksync/internal/testutil"
)

// TestMakeDemoCtrlCStopsWhatItStartedAndExitsZero runs `make demo` on a terminal, as a
// person would, with STOCKSYNC_RUN_DIR and ports of its own, and presses Ctrl-C once the
// demo says so: make exits 0 without an error, the demo's files are under the run dir,
// and nothing the demo started runs on, the private MariaDB it started included.
func TestMakeDemoCtrlCStopsWhatItStartedAndExitsZero(t *testing.T) {
	runDir := t.TempDir()
	port := func() string { return strings.TrimPrefix(testutil.FreeAddr(t), "127.0.0.1:") }
	mariadbPort, httpPort, brokerPort := port(), port(), port()
	env := append(os.Environ(), "STOCKSYNC_RUN_DIR="+runDir, "STOCKSYNC_MARIADB_PORT="+mariadbPort,
		"STOCKSYNC_DEMO_HTTP_PORT="+httpPort, "STOCKSYNC_DEMO_BROKER_PORT="+brokerPort)
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	// Whatever the outcome, nothing of this run stays: the MariaDB by its pid file, any
	// other process by its command line, which names the run dir (the MariaDB's data dir,
	// the binary that serve and tail run).
	leftovers := func() []string { return processesMentioning(t, runDir) }
	t.Cleanup(func() {
		stop := exec.Command(filepath.Join(root, "scripts", "mariadb.sh"), "stop")
		stop.Env = env
		stop.Run()
		for _, p := range leftovers() {
			pid, _ := strconv.Atoi(strings.Fields(p)[0])
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})

	demo := exec.Command("make", "-C", root, "demo", "BIN="+filepath.Join(runDir, "stocksync"))
	demo.Env = env
	terminal := startOnTerminal(t, demo)
	var output lockedBuffer
	exited := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := terminal.Read(buf)
			output.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	go func() { demo.Wait(); close(exited) }()
	testutil.Eventually(t, 3*time.Minute, "the demo to say Ctrl-C stops it", func() bool {
		select {
		case <-exited:
			t.Fatalf("make demo exited before it was stopped:\n%s", output.String())
		default:
		}
		return strings.Contains(output.String(), "Ctrl-C to stop.")
	})
	if _, err := os.Stat(filepath.Join(runDir, "demo", "serve.log")); err != nil {
		t.Errorf("the demo's files are not under STOCKSYNC_RUN_DIR: %v", err)
	}

	terminal.Write([]byte{3}) // Ctrl-C
	select {
	case <-exited:
	case <-time.After(time.Minute):
		t.Fatalf("make demo still runs a minute after Ctrl-C:\n%s", output.String())
	}
	if code := demo.ProcessState.ExitCode(); code != 0 || strings.Contains(output.String(), "Error") {
		t.Errorf("make demo exited %d after Ctrl-C (%s), want 0 without an error:\n%s", code, demo.ProcessState, output.String())
	}
	if left := leftovers(); len(left) > 0 {
		t.Errorf("still running after Ctrl-C:\n%s", strings.Join(left, "\n"))
	}
}

// startOnTerminal starts cmd on a new pseudo-terminal of which it is the session leader,
// as a shell runs a command in a terminal, and returns the terminal's master side: what
// cmd writes is read from it, and a Ctrl-C written to it sends SIGINT to the terminal's
// foreground process group.
func startOnTerminal(t *testing.T, cmd *exec.Cmd) *os.File {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("opening a pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	var unlock int32
	var number uint32
	if err := ioctl(master, syscall.TIOCSPTLCK, unsafe.Pointer(&unlock)); err != nil {
		t.Fatalf("unlocking the pseudo-terminal: %v", err)
	}
	if err := ioctl(master, syscall.TIOCGPTN, unsafe.Pointer(&number)); err != nil {
		t.Fatalf("naming the pseudo-terminal: %v", err)
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", number), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("opening the pseudo-terminal's slave side: %v", err)
	}
	defer slave.Close()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", cmd, err)
	}
	return master
}

func ioctl(f *os.File, request uintptr, arg unsafe.Pointer) error {
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), request, uintptr(arg)); errno != 0 {
		return errno
	}
	return nil
}

// processesMentioning lists the processes whose command line contains word, each as "PID
// command line".
func processesMentioning(t *testing.T, word string) []string {
	t.Helper()
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var found []string
	for _, path := range cmdlines {
		raw, err := os.ReadFile(path)
		if err != nil || len(raw) == 0 {
			continue
		}
		cmdline := strings.TrimSpace(strings.ReplaceAll(string(raw), "\x00", " "))
		if strings.Contains(cmdline, word) {
			found = append(found, filepath.Base(filepath.Dir(path))+" "+cmdline)
		}
	}
	return found
}
