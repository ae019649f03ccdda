package netfault

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestNode: a node has its own addresses, runs commands in its namespace,
// and reaches the host over its link.
func TestNode(t *testing.T) {
	t.Parallel()
	n := NewNode(t)
	if !Network().Contains(n.HostAddr()) || !Network().Contains(n.NodeAddr()) || n.HostAddr() == n.NodeAddr() {
		t.Fatalf("addresses %s, %s outside %s or equal", n.HostAddr(), n.NodeAddr(), Network())
	}
	out, err := n.Command("ip", "-o", "-4", "addr", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip addr in the node: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), n.NodeAddr().String()+"/30") || strings.Contains(string(out), n.HostAddr().String()+"/30") {
		t.Errorf("the command did not run in the node's namespace:\n%s", out)
	}
	ln := listen(t, n.HostAddr())
	c := dial(t, n, ln.Addr().String(), 10*time.Second)
	h := accept(t, ln)
	roundTrip(t, c, h, "hello")
	roundTrip(t, h, c, "hello back")
}

// TestCutIsSilent checks what Cut promises, on both sides: nothing sent
// arrives, no side hears an error (no RST, no ICMP, no local EPERM), the
// kernel keeps retransmitting into the void, new connections time out,
// and after Restore the same connections deliver what was held back.
func TestCutIsSilent(t *testing.T) {
	t.Parallel()
	n := NewNode(t)
	hostLn := listen(t, n.HostAddr())
	nodeLn, err := n.Listen("tcp", netip.AddrPortFrom(n.NodeAddr(), 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer nodeLn.Close()
	fromNode := dial(t, n, hostLn.Addr().String(), 10*time.Second)
	atHost := accept(t, hostLn)
	roundTrip(t, fromNode, atHost, "before")

	if err := n.Cut(); err != nil {
		t.Fatal(err)
	}
	if err := n.Cut(); err != nil { // twice is once
		t.Fatal(err)
	}
	for _, side := range []struct {
		name string
		conn net.Conn
	}{{"node", fromNode}, {"host", atHost}} {
		if _, err := side.conn.Write([]byte(side.name + " during cut")); err != nil {
			t.Errorf("%s: write during the cut: %v, want it accepted silently", side.name, err)
		}
	}
	for _, side := range []struct {
		name string
		conn net.Conn
	}{{"node", fromNode}, {"host", atHost}} {
		_ = side.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, err := side.conn.Read(make([]byte, 64)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s: read during the cut: %d bytes, %v; want nothing until the deadline", side.name, n, err)
		}
		info := tcpInfo(t, side.conn)
		if info.State != unix.BPF_TCP_ESTABLISHED || info.Unacked == 0 || info.Total_retrans == 0 {
			t.Errorf("%s: TCP state %d, %d unacked, %d retransmitted; want an established connection retransmitting unanswered data",
				side.name, info.State, info.Unacked, info.Total_retrans)
		}
		if soErr := sockError(t, side.conn); soErr != 0 {
			t.Errorf("%s: the socket recorded error %v", side.name, soErr)
		}
	}
	// New connections, both ways: no answer at all, not a refusal.
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if c, err := n.Dial(ctx, "tcp", hostLn.Addr().String()); !isTimeout(err) {
		t.Errorf("node to host during the cut: %v, %v; want a timeout", c, err)
	}
	if c, err := (&net.Dialer{}).DialContext(ctx, "tcp", nodeLn.Addr().String()); !isTimeout(err) {
		t.Errorf("host to node during the cut: %v, %v; want a timeout", c, err)
	}

	if err := n.Restore(); err != nil {
		t.Fatal(err)
	}
	if err := n.Restore(); err != nil {
		t.Fatal(err)
	}
	// TCP retransmits what the cut swallowed, on the same connections.
	expect(t, atHost, "node during cut", 30*time.Second)
	expect(t, fromNode, "host during cut", 30*time.Second)
	c := dial(t, n, hostLn.Addr().String(), 10*time.Second)
	roundTrip(t, c, accept(t, hostLn), "after")
}

// TestCloseRemovesEverything: Close kills what runs on the node and leaves
// no namespace, interface, firewall rule or claim behind.
func TestCloseRemovesEverything(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n, err := New(ctx)
	if errors.Is(err, ErrUnavailable) {
		skipOrFail(t, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Cut(); err != nil {
		t.Fatal(err)
	}
	sleeper := n.Command("sleep", "600")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- sleeper.Wait() }()
	ns, _ := nsInode(n.slot.netnsPath())
	waitUntil(t, "the process to enter the node", 10*time.Second, func() bool {
		target, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", sleeper.Process.Pid))
		return target == fmt.Sprintf("net:[%d]", ns)
	})
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		sleeper.Process.Kill()
		t.Error("a process on the node outlived Close")
	}
	assertGone(t, n.slot.index)
	if err := n.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := n.Cut(); err == nil {
		t.Error("Cut on a closed node succeeded")
	}
}

// TestNodesNeverCollide: nodes made at once by this process and by two
// other test processes get distinct slots; cutting one cuts no other. The
// other processes are then SIGKILLed, leaving their nodes (cut, with a
// process running on them) for the sweep, which must remove everything
// and leave the live nodes alone. Not parallel: another test's node could
// take a dead helper's slot before the sweep does.
func TestNodesNeverCollide(t *testing.T) {
	if err := available(context.Background()); err != nil {
		skipOrFail(t, err)
	}
	const perProcess = 3
	var helpers []*exec.Cmd
	var mu sync.Mutex
	var slots []int
	var wg sync.WaitGroup
	for range 2 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), "NETFAULT_HELPER_NODES="+strconv.Itoa(perProcess))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cmd.StdinPipe(); err != nil { // held open: the helper waits for it to close
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		helpers = append(helpers, cmd)
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		wg.Go(func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if rest, ok := strings.CutPrefix(sc.Text(), "slot "); ok {
					i, _ := strconv.Atoi(rest)
					mu.Lock()
					slots = append(slots, i)
					mu.Unlock()
				}
			}
		})
	}
	ours := make([]*Node, perProcess)
	errs := make([]error, perProcess)
	var mine sync.WaitGroup
	for i := range ours {
		mine.Go(func() { ours[i], errs[i] = New(context.Background()) })
	}
	mine.Wait()
	for i, n := range ours {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		t.Cleanup(func() {
			if err := n.Close(); err != nil {
				t.Error(err)
			}
		})
	}
	waitUntil(t, "the helpers' nodes", time.Minute, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(slots) == 2*perProcess
	})
	for _, n := range ours {
		slots = append(slots, n.slot.index)
	}
	sorted := slices.Clone(slots)
	slices.Sort(sorted)
	if len(slices.Compact(sorted)) != len(slots) {
		t.Fatalf("slots collide: %v", slots)
	}

	// Cutting one node leaves the others' links alone.
	if err := ours[0].Cut(); err != nil {
		t.Fatal(err)
	}
	for _, n := range ours[1:] {
		ln := listen(t, n.HostAddr())
		c := dial(t, n, ln.Addr().String(), 5*time.Second)
		roundTrip(t, c, accept(t, ln), "still up")
	}

	// The helpers die without cleaning up.
	var leftPids []int
	for _, h := range helpers {
		h.Process.Signal(syscall.SIGKILL)
		h.Wait()
	}
	wg.Wait()
	theirs := slices.DeleteFunc(slices.Clone(slots), func(i int) bool {
		return slices.ContainsFunc(ours, func(n *Node) bool { return n.slot.index == i })
	})
	for _, i := range theirs {
		if _, err := os.Stat(slot{index: i}.netnsPath()); err != nil {
			t.Fatalf("slot %d: the dead helper's namespace is already gone: %v", i, err)
		}
		out, _ := exec.Command(tools.ip, "netns", "pids", slot{index: i}.netns()).Output()
		for _, f := range strings.Fields(string(out)) {
			pid, _ := strconv.Atoi(f)
			leftPids = append(leftPids, pid)
		}
	}
	if len(leftPids) == 0 {
		t.Fatal("the helpers left no process on their nodes")
	}

	sweepLeftovers(context.Background())
	for _, i := range theirs {
		assertGone(t, i)
	}
	for _, pid := range leftPids {
		waitUntil(t, fmt.Sprintf("process %d on a dead helper's node to die", pid), 10*time.Second, func() bool { return !alive(pid) })
	}
	for _, n := range ours {
		if _, err := os.Stat(n.slot.netnsPath()); err != nil {
			t.Errorf("the sweep removed a live node %s: %v", n.Name(), err)
		}
	}
}

// TestHelperProcess is not a test: TestNodesNeverCollide runs it in other
// processes to make nodes, cut them, start a process on each, and wait to
// be killed.
func TestHelperProcess(t *testing.T) {
	count, _ := strconv.Atoi(os.Getenv("NETFAULT_HELPER_NODES"))
	if count == 0 {
		t.Skip("helper process only")
	}
	var wg sync.WaitGroup
	for range count {
		wg.Go(func() {
			n, err := New(context.Background())
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			if err := n.Cut(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			if err := n.Command("sleep", "600").Start(); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			fmt.Printf("slot %d\n", n.slot.index)
		})
	}
	wg.Wait()
	io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

func TestSlotAt(t *testing.T) {
	network := netip.MustParsePrefix("10.211.0.0/16")
	for _, tc := range []struct {
		index      int
		host, node string
		ok         bool
	}{
		{0, "10.211.0.1", "10.211.0.2", true},
		{1, "10.211.0.5", "10.211.0.6", true},
		{64, "10.211.1.1", "10.211.1.2", true},
		{16383, "10.211.255.253", "10.211.255.254", true},
		{16384, "", "", false},
		{-1, "", "", false},
	} {
		s, ok := slotAt(network, tc.index)
		if ok != tc.ok || ok && (s.hostAddr().String() != tc.host || s.nodeAddr().String() != tc.node) {
			t.Errorf("slot %d: %s, %s, %v; want %s, %s, %v", tc.index, s.hostAddr(), s.nodeAddr(), ok, tc.host, tc.node, tc.ok)
		}
		if ok && len(s.hostIf()) > 15 {
			t.Errorf("slot %d: interface name %q is longer than the kernel allows", tc.index, s.hostIf())
		}
	}
}

// --- helpers ----------------------------------------------------------------

func skipOrFail(t *testing.T, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(err)
	}
	t.Skip(err)
}

// assertGone checks that nothing of slot i is left.
func assertGone(t *testing.T, i int) {
	t.Helper()
	s := slot{index: i}
	// Another test binary (integration's fault tests run beside this
	// package) may claim the slot the moment it is freed: then its
	// namespace and rules are that owner's, and there is nothing to check.
	if f, err := os.Open(claimPath(i)); err == nil {
		held := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil
		f.Close()
		if held {
			t.Logf("slot %d was claimed again by another process; not checking it", i)
			return
		}
	}
	if _, err := os.Stat(s.netnsPath()); err == nil {
		t.Errorf("namespace %s is left", s.netns())
	}
	if _, err := net.InterfaceByName(s.hostIf()); err == nil {
		t.Errorf("interface %s is left", s.hostIf())
	}
	out, err := exec.Command(tools.iptables, "-w", "-S").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables -S: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if commentOf(strings.Fields(line)) == s.tag() {
			t.Errorf("firewall rule left: %s", line)
		}
	}
	if _, err := os.Stat(claimPath(i)); err == nil {
		t.Errorf("claim file %s is left", claimPath(i))
	}
}

func listen(t *testing.T, addr netip.Addr) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func dial(t *testing.T, n *Node, addr string, timeout time.Duration) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := n.Dial(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, n, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func accept(t *testing.T, ln net.Listener) net.Conn {
	t.Helper()
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func roundTrip(t *testing.T, from, to net.Conn, msg string) {
	t.Helper()
	if _, err := from.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	expect(t, to, msg, 10*time.Second)
}

func expect(t *testing.T, c net.Conn, want string, timeout time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("read %q, %v; want %q", got, err, want)
	}
	_ = c.SetReadDeadline(time.Time{})
}

func isTimeout(err error) bool {
	var ne net.Error
	return err != nil && (errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout())
}

func rawConn(t *testing.T, c net.Conn) syscall.RawConn {
	t.Helper()
	sc, ok := c.(syscall.Conn)
	if !ok {
		t.Fatalf("%T has no file descriptor", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

func tcpInfo(t *testing.T, c net.Conn) *unix.TCPInfo {
	t.Helper()
	var info *unix.TCPInfo
	var err error
	if cerr := rawConn(t, c).Control(func(fd uintptr) {
		info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); cerr != nil || err != nil {
		t.Fatalf("TCP_INFO: %v %v", cerr, err)
	}
	return info
}

func sockError(t *testing.T, c net.Conn) syscall.Errno {
	t.Helper()
	var soErr int
	var err error
	if cerr := rawConn(t, c).Control(func(fd uintptr) {
		soErr, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
	}); cerr != nil || err != nil {
		t.Fatalf("SO_ERROR: %v %v", cerr, err)
	}
	return syscall.Errno(soErr)
}

func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive says whether pid runs and is not a zombie.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(stat), ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}
