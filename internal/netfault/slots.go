package netfault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// defaultNetwork is where nodes take their /30s unless MIGRUN_NETFAULT_NET
// names another IPv4 network. A slot whose /30 overlaps an address of the
// host's is skipped.
const defaultNetwork = "10.211.0.0/16"

// Network is the IPv4 network nodes' addresses come from:
// MIGRUN_NETFAULT_NET, or 10.211.0.0/16.
func Network() netip.Prefix {
	if v := os.Getenv("MIGRUN_NETFAULT_NET"); v != "" {
		if p, err := netip.ParsePrefix(v); err == nil && p.Addr().Is4() && p.Bits() >= 8 && p.Bits() <= 30 {
			return p.Masked()
		}
		slog.Warn("netfault: MIGRUN_NETFAULT_NET is not an IPv4 network of /8 to /30; using the default", "value", v, "default", defaultNetwork)
	}
	return netip.MustParsePrefix(defaultNetwork)
}

// Names a slot's things carry, with its number: the namespace, the host's
// and the node's end of the veth pair (at most 15 bytes), the iptables
// comment, and the claim file in stateDir.
const (
	netnsPrefix = "migrun-nf-"
	ifPrefix    = "mnf"
	tagPrefix   = "migrun-netfault-"
	claimPrefix = "slot-"
	claimSuffix = ".lock"
)

// stateDir holds the claims. It must be the same for every process on the
// machine, so it is fixed; /run is a tmpfs, emptied at boot with the
// namespaces it describes.
var stateDir = "/run/migrun-netfault"

// slot is one node's share of names and addresses.
type slot struct {
	index  int
	prefix netip.Prefix // the /30
}

func (s slot) netns() string        { return netnsPrefix + strconv.Itoa(s.index) }
func (s slot) netnsPath() string    { return "/run/netns/" + s.netns() }
func (s slot) hostIf() string       { return ifPrefix + strconv.Itoa(s.index) + "h" }
func (s slot) nodeIf() string       { return ifPrefix + strconv.Itoa(s.index) + "n" }
func (s slot) tag() string          { return tagPrefix + strconv.Itoa(s.index) }
func (s slot) hostAddr() netip.Addr { return s.prefix.Addr().Next() }
func (s slot) nodeAddr() netip.Addr { return s.prefix.Addr().Next().Next() }

func claimPath(index int) string {
	return filepath.Join(stateDir, claimPrefix+strconv.Itoa(index)+claimSuffix)
}

// dropRule is the iptables arguments that add ("-I") or delete ("-D") the
// rule dropping what arrives on interface dev.
func (s slot) dropRule(op, dev string) []string {
	args := []string{"-w", op, "INPUT"}
	if op == "-I" {
		args = append(args, "1")
	}
	return append(args, "-i", dev, "-m", "comment", "--comment", s.tag(), "-j", "DROP")
}

// slotAt is slot index of network, if network has that many.
func slotAt(network netip.Prefix, index int) (slot, bool) {
	size := (1 << (32 - network.Bits())) / 4
	if index < 0 || index >= size {
		return slot{}, false
	}
	base := network.Addr().As4()
	n := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	n += uint32(index) * 4
	addr := netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
	return slot{index: index, prefix: netip.PrefixFrom(addr, 30)}, true
}

// claimFree claims the first free slot whose addresses collide with
// nothing on the host, after removing what a dead owner left in it.
func claimFree(ctx context.Context) (slot, *os.File, error) {
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return slot{}, nil, fmt.Errorf("netfault: %w", err)
	}
	network := Network()
	taken := hostPrefixes()
	for i := 0; ; i++ {
		s, ok := slotAt(network, i)
		if !ok {
			return slot{}, nil, fmt.Errorf("netfault: no free slot in %s", network)
		}
		if overlaps(s.prefix, taken) {
			continue
		}
		lock, ok, err := tryClaim(i)
		if err != nil {
			return slot{}, nil, err
		}
		if !ok {
			continue
		}
		if err := s.clean(ctx); err != nil {
			release(lock)
			return slot{}, nil, fmt.Errorf("netfault: clear slot %d: %w", i, err)
		}
		return s, lock, nil
	}
}

// hostPrefixes are the networks of the host's addresses, other than the
// nodes' own links (whose slots are claimed, or reaped by the claim).
func hostPrefixes() []netip.Prefix {
	ifaces, _ := net.Interfaces()
	var out []netip.Prefix
	for _, iface := range ifaces {
		if isNodeIf(iface.Name) {
			continue
		}
		addrs, _ := iface.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				if p, err := netip.ParsePrefix(ipn.String()); err == nil && p.Addr().Is4() {
					out = append(out, p.Masked())
				}
			}
		}
	}
	return out
}

func overlaps(p netip.Prefix, others []netip.Prefix) bool {
	for _, o := range others {
		if p.Overlaps(o) {
			return true
		}
	}
	return false
}

var nodeIfName = regexp.MustCompile(`^` + ifPrefix + `([0-9]+)[hn]$`)

func isNodeIf(name string) bool { return nodeIfName.MatchString(name) }

// tryClaim takes slot index's claim: an exclusive flock on its file, which
// the kernel drops when this process dies. ok is false when a live process
// holds it. The claim is only good on the file still at the path: another
// process may have released (removed) it between our open and our flock.
func tryClaim(index int) (f *os.File, ok bool, err error) {
	path := claimPath(index)
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, false, fmt.Errorf("netfault: claim slot %d: %w", index, err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, false, nil
			}
			return nil, false, fmt.Errorf("netfault: claim slot %d: %w", index, err)
		}
		var held, now unix.Stat_t
		if unix.Fstat(int(f.Fd()), &held) == nil && unix.Stat(path, &now) == nil && held.Ino == now.Ino && held.Dev == now.Dev {
			// For people looking at the directory.
			_ = f.Truncate(0)
			_, _ = f.WriteAt([]byte(fmt.Sprintf("pid %d\n", os.Getpid())), 0)
			return f, true, nil
		}
		f.Close()
	}
}

// release gives a claim up: the file goes first, while still locked, so no
// one can lock this file again and believe it holds the slot.
func release(f *os.File) {
	_ = os.Remove(f.Name())
	f.Close()
}

// clean removes whatever is in slot s: processes left in its namespace,
// the namespace, the veth pair, and the host's iptables rules with its tag.
// Nothing there is not an error.
func (s slot) clean(ctx context.Context) error {
	var errs []error
	ns, hasNS := nsInode(s.netnsPath())
	if hasNS {
		errs = append(errs, killIn(ns))
	}
	errs = append(errs, deleteTagged(ctx, s.tag(), nil))
	if _, err := net.InterfaceByName(s.hostIf()); err == nil {
		if _, err := run(ctx, tools.ip, "link", "del", "dev", s.hostIf()); err != nil {
			errs = append(errs, err)
		}
	}
	if hasNS {
		if _, err := run(ctx, tools.ip, "netns", "delete", s.netns()); err != nil {
			errs = append(errs, err)
		}
		// The namespace lives on, unnamed, while a process is in it: one
		// that was entering it (ip netns exec between open and setns)
		// when the others were killed must go too.
		errs = append(errs, killIn(ns))
	}
	return errors.Join(errs...)
}

// nsInode is the inode of the namespace bound at path.
func nsInode(path string) (uint64, bool) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, false
	}
	return st.Ino, true
}

// killIn SIGKILLs every process in network namespace ns (by inode) and
// waits a little for them to be gone.
func killIn(ns uint64) error {
	link := fmt.Sprintf("net:[%d]", ns)
	var errs []error
	for range 50 {
		procs, _ := filepath.Glob("/proc/[0-9]*")
		var left []int
		for _, p := range procs {
			pid, err := strconv.Atoi(filepath.Base(p))
			if err != nil || pid == os.Getpid() {
				continue
			}
			if target, err := os.Readlink(p + "/ns/net"); err == nil && target == link && !zombie(pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			return nil
		}
		for _, pid := range left {
			if err := kill(pid); err != nil {
				errs = append(errs, fmt.Errorf("kill %d: %w", pid, err))
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.Join(append(errs, fmt.Errorf("processes in namespace %s survive SIGKILL", link))...)
}

// zombie says whether pid has exited and waits to be reaped (or is gone).
func zombie(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(stat), ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

// deleteTagged deletes every iptables rule whose comment is tag, through
// iptables (nil: the host's).
func deleteTagged(ctx context.Context, tag string, iptables func(ctx context.Context, args ...string) (string, error)) error {
	if iptables == nil {
		iptables = func(ctx context.Context, args ...string) (string, error) { return run(ctx, tools.iptables, args...) }
	}
	out, err := iptables(ctx, "-w", "-S")
	if err != nil {
		return err
	}
	var errs []error
	for _, line := range strings.Split(out, "\n") {
		args := strings.Fields(line)
		if len(args) < 2 || args[0] != "-A" || commentOf(args) != tag {
			continue
		}
		args[0] = "-D"
		if _, err := iptables(ctx, append([]string{"-w"}, args...)...); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// commentOf is the comment in a rule of `iptables -S`, unquoted.
func commentOf(args []string) string {
	for i, a := range args {
		if a == "--comment" && i+1 < len(args) {
			return strings.Trim(args[i+1], `"`)
		}
	}
	return ""
}

var sweep sync.Once

// sweepOnce removes, once per process, what dead owners left in any slot.
func sweepOnce(ctx context.Context) {
	sweep.Do(func() { sweepLeftovers(ctx) })
}

// sweepLeftovers finds every slot that has a claim file, a namespace, an
// interface or a host iptables rule, and cleans those nobody holds. A
// test binary killed by go test's -timeout or a SIGKILL runs no cleanup;
// without this its nodes would stay until reboot.
func sweepLeftovers(ctx context.Context) {
	for _, index := range leftoverSlots(ctx) {
		lock, ok, err := tryClaim(index)
		if err != nil || !ok {
			continue // a live owner's, or a problem the claim will meet again
		}
		s := slot{index: index} // clean needs the names only
		if err := s.clean(ctx); err != nil {
			slog.Warn("netfault: remove a node left by a dead process", "slot", index, "err", err)
			lock.Close() // unlocked, the claim file stays: the next sweep tries again
			continue
		}
		release(lock)
	}
}

// leftoverSlots lists the slots that have anything on this machine.
func leftoverSlots(ctx context.Context) []int {
	found := map[int]bool{}
	add := func(digits string) {
		if i, err := strconv.Atoi(digits); err == nil && i >= 0 {
			found[i] = true
		}
	}
	files, _ := filepath.Glob(filepath.Join(stateDir, claimPrefix+"*"+claimSuffix))
	for _, f := range files {
		add(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), claimPrefix), claimSuffix))
	}
	names, _ := filepath.Glob("/run/netns/" + netnsPrefix + "*")
	for _, n := range names {
		add(strings.TrimPrefix(filepath.Base(n), netnsPrefix))
	}
	ifaces, _ := net.Interfaces()
	for _, iface := range ifaces {
		if m := nodeIfName.FindStringSubmatch(iface.Name); m != nil {
			add(m[1])
		}
	}
	if out, err := run(ctx, tools.iptables, "-w", "-S"); err == nil {
		for _, line := range strings.Split(out, "\n") {
			if c := commentOf(strings.Fields(line)); strings.HasPrefix(c, tagPrefix) {
				add(strings.TrimPrefix(c, tagPrefix))
			}
		}
	}
	out := make([]int, 0, len(found))
	for i := range found {
		out = append(out, i)
	}
	return out
}
