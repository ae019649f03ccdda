// Package netfault makes real network faults for tests: a Node (a network
// namespace joined to the host by a veth pair) whose link can be cut so that
// every packet vanishes silently in both directions, and an in-process TCP
// Relay that can stall or black-hole the connections through it.
//
// Nodes need root, ip (iproute2) and iptables. Under CI=true a test that
// cannot have a node fails; elsewhere it skips with the reason.
//
// Each node takes a slot: a /30 of Network(), names derived from the slot's
// number, and a lock file in /run/migrun-netfault that it holds (flock) for
// its life. The kernel drops the lock when its owner dies, however it dies,
// so the slot is free again; whoever takes a slot first removes what a dead
// owner left in it (processes, namespace, veth, iptables rules), and the
// first node of every process sweeps all slots so.
package netfault

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ErrUnavailable: this machine cannot make nodes (not root, ip or iptables
// missing, no permission to create namespaces or firewall rules).
var ErrUnavailable = errors.New("network faults unavailable")

// Node is a machine of its own on the network, as far as TCP can tell: a
// network namespace whose only link is a veth pair to the host. A process
// started with Command reaches the host at HostAddr; the host reaches it at
// NodeAddr.
type Node struct {
	slot slot
	lock *os.File // the slot's claim, held until Close

	mu     sync.Mutex // guards cut and closed, and orders Cut, Restore and Close
	cut    bool
	closed bool
}

// New creates a node; Close removes it. The error wraps ErrUnavailable
// when the machine cannot make nodes at all.
func New(ctx context.Context) (*Node, error) {
	if err := available(ctx); err != nil {
		return nil, err
	}
	sweepOnce(ctx)
	s, lock, err := claimFree(ctx)
	if err != nil {
		return nil, err
	}
	n := &Node{slot: s, lock: lock}
	if err := n.create(ctx); err != nil {
		cerr := s.clean(context.WithoutCancel(ctx))
		release(lock)
		return nil, errors.Join(err, cerr)
	}
	return n, nil
}

// NewNode creates a node for a test, removed at its end. Without root, ip
// or iptables the test skips, or fails under CI=true.
func NewNode(tb testing.TB) *Node {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := New(ctx)
	if errors.Is(err, ErrUnavailable) {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("netfault: %v", err)
		}
		tb.Skipf("netfault: %v", err)
	}
	if err != nil {
		tb.Fatalf("netfault: %v", err)
	}
	tb.Cleanup(func() {
		if err := n.Close(); err != nil {
			tb.Errorf("netfault: remove node %s: %v", n.Name(), err)
		}
	})
	return n
}

// Name is the network namespace's name, as `ip netns` knows it.
func (n *Node) Name() string { return n.slot.netns() }

// HostAddr is the host's end of the link: what a server on the host listens
// on (testdb.Options.Listen) and a process on the node connects to.
func (n *Node) HostAddr() netip.Addr { return n.slot.hostAddr() }

// NodeAddr is the node's end of the link.
func (n *Node) NodeAddr() netip.Addr { return n.slot.nodeAddr() }

// Command is exec.Command for a program run on the node. `ip netns exec`
// switches namespaces and then executes the program in its own place, so
// the started process (cmd.Process) is the program itself: signals sent to
// it reach it, not a wrapper.
func (n *Node) Command(name string, arg ...string) *exec.Cmd {
	return exec.Command(tools.ip, append([]string{"netns", "exec", n.Name(), name}, arg...)...)
}

// Do runs f on an OS thread switched into the node's network namespace:
// sockets that f opens itself (net.Dial, net.Listen with literal
// addresses) belong to the node for their whole life. Goroutines f starts
// run outside. If the thread cannot switch back it is thrown away.
func (n *Node) Do(f func() error) error {
	target, err := os.Open(n.slot.netnsPath())
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", n.Name(), err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Not unlocked on failure: the runtime then ends the thread with the
		// goroutine instead of handing it, in the wrong namespace, to others.
		home, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			errc <- fmt.Errorf("open this thread's namespace: %w", err)
			return
		}
		defer home.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", n.Name(), err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leave namespace %s: %w", n.Name(), err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Dial connects from the node, like net.Dialer.DialContext.
func (n *Node) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// Listen listens on the node, like net.Listen.
func (n *Node) Listen(network, address string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() error {
		var err error
		l, err = net.Listen(network, address)
		return err
	})
	return l, err
}

// Cut makes the link drop every packet, both ways, without a word: no RST,
// no ICMP error, no error to either side's sockets. Each side drops what
// arrives on its end (iptables INPUT DROP on the host's veth and on the
// node's), so what a side sends leaves it normally and vanishes on the way,
// as when a node is lost or a network partitioned. Dropping a side's own
// output instead is not silent: the kernel tells the sender (a UDP sendto
// fails with EPERM; TCP happens to swallow it, its SYN just times out).
// TestCutIsSilent checks, on both sides of a cut: writes succeed, reads
// get nothing, TCP keeps retransmitting with no socket error recorded,
// new connections time out (no refusal, no unreachable), and after Restore
// the same connections deliver what was held back. ARP still works: the
// peer stays on the link, only IP is dropped.
func (n *Node) Cut() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errors.New("netfault: Cut on a closed node")
	}
	if n.cut {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := run(ctx, tools.iptables, n.slot.dropRule("-I", n.slot.hostIf())...); err != nil {
		return err
	}
	n.cut = true // from here on Restore has something to undo
	if _, err := n.inNode(ctx, tools.iptables, n.slot.dropRule("-I", n.slot.nodeIf())...); err != nil {
		return err
	}
	return nil
}

// Restore undoes Cut: packets flow again.
func (n *Node) Restore() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errors.New("netfault: Restore on a closed node")
	}
	return n.restore()
}

func (n *Node) restore() error {
	if !n.cut {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Delete by tag, not by spec: a Cut that failed half-way left only some.
	if err := deleteTagged(ctx, n.slot.tag(), n.ruleLister()); err != nil {
		return err
	}
	if err := deleteTagged(ctx, n.slot.tag(), nil); err != nil {
		return err
	}
	n.cut = false
	return nil
}

// ruleLister runs iptables in the node.
func (n *Node) ruleLister() func(ctx context.Context, args ...string) (string, error) {
	return func(ctx context.Context, args ...string) (string, error) {
		return n.inNode(ctx, tools.iptables, args...)
	}
}

// Close kills whatever still runs on the node and removes the node: its
// namespace, veth pair and firewall rules. It is safe to call twice.
func (n *Node) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := n.slot.clean(ctx)
	if err != nil {
		// Keep the claim: its lock goes with this process, and the next
		// process tries again.
		return err
	}
	release(n.lock)
	return nil
}

// String names the node and its addresses, for logs.
func (n *Node) String() string {
	return fmt.Sprintf("node %s (%s, host %s)", n.Name(), n.NodeAddr(), n.HostAddr())
}

func (n *Node) inNode(ctx context.Context, name string, args ...string) (string, error) {
	return run(ctx, tools.ip, append([]string{"netns", "exec", n.Name(), name}, args...)...)
}

// create makes the namespace and the link. IPv6 gets no addresses on the
// link (addrgenmode none), so the IPv4 rules of Cut silence everything.
func (n *Node) create(ctx context.Context) error {
	s := n.slot
	host, node := s.hostIf(), s.nodeIf()
	steps := [][]string{
		{"netns", "add", s.netns()},
		{"link", "add", host, "type", "veth", "peer", "name", node, "netns", s.netns()},
		{"link", "set", "dev", host, "addrgenmode", "none"},
		{"addr", "add", netip.PrefixFrom(s.hostAddr(), 30).String(), "dev", host},
		{"link", "set", "dev", host, "up"},
		{"-n", s.netns(), "link", "set", "dev", node, "addrgenmode", "none"},
		{"-n", s.netns(), "addr", "add", netip.PrefixFrom(s.nodeAddr(), 30).String(), "dev", node},
		{"-n", s.netns(), "link", "set", "dev", node, "up"},
		{"-n", s.netns(), "link", "set", "dev", "lo", "up"},
	}
	for _, args := range steps {
		if _, err := run(ctx, tools.ip, args...); err != nil {
			return err
		}
	}
	// iptables in a fresh namespace is what Cut needs: fail now, not there.
	if _, err := n.inNode(ctx, tools.iptables, "-w", "-S", "INPUT"); err != nil {
		return err
	}
	return nil
}

// --- tools ----------------------------------------------------------------

var tools struct {
	once         sync.Once
	err          error
	ip, iptables string
}

// available checks, once per process, that nodes can be made here.
func available(ctx context.Context) error {
	tools.once.Do(func() {
		if os.Geteuid() != 0 {
			tools.err = fmt.Errorf("%w: needs root (network namespaces, veth pairs, iptables)", ErrUnavailable)
			return
		}
		var err error
		if tools.ip, err = lookTool("ip"); err != nil {
			tools.err = fmt.Errorf("%w: ip is not installed (apt-get install iproute2): %w", ErrUnavailable, err)
			return
		}
		if tools.iptables, err = lookTool("iptables"); err != nil {
			tools.err = fmt.Errorf("%w: iptables is not installed (apt-get install iptables): %w", ErrUnavailable, err)
			return
		}
		if _, err := run(ctx, tools.iptables, "-w", "-S", "INPUT"); err != nil {
			tools.err = err
		}
	})
	return tools.err
}

// lookTool finds a tool in PATH or in the sbin directories a non-login
// root shell may lack.
func lookTool(name string) (string, error) {
	path, err := exec.LookPath(name)
	if err == nil {
		return path, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := dir + "/" + name
		if st, serr := os.Stat(p); serr == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", err
}

// run runs a tool; its output is in the error, which wraps ErrUnavailable
// when the kernel or the tool refused for want of privileges or support.
func run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err == nil {
		return string(out), nil
	}
	msg := strings.TrimSpace(string(out))
	err = fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
	for _, sign := range []string{"Operation not permitted", "Permission denied", "you must be root",
		"can't initialize", "Could not fetch rule set", "Protocol not supported"} {
		if strings.Contains(msg, sign) {
			return "", fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	return "", err
}

// kill sends SIGKILL to pid, ignoring a process already gone.
func kill(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}
