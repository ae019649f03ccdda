package deploy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// releasePlatforms are the platforms every release ships: the image's too
// (workflow_test.go), so `COPY --from` works on amd64 and arm64 nodes.
var releasePlatforms = []string{"linux/amd64", "linux/arm64"}

// elfMachines and fileArch: how debug/elf and file(1) name each architecture.
var (
	elfMachines = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	fileArch    = map[string]string{"amd64": "x86-64", "arm64": "ARM aarch64"}
	qemuOf      = map[string]string{"amd64": "qemu-x86_64", "arm64": "qemu-aarch64"}
)

// TestRelease runs `make release` as the release workflow does, into a
// temporary directory, and checks every binary it ships: built for its
// platform, static, cgo off, -trimpath, from cmd/migrun (what `go version
// -m` prints, and file(1)); the version stamped (`migrun version`, run
// natively or under qemu-user); and SHA256SUMS.
func TestRelease(t *testing.T) {
	t.Parallel()
	platforms := strings.Fields(makeVariables(t, "../Makefile")["RELEASE_PLATFORMS"])
	for _, p := range releasePlatforms {
		if !slices.Contains(platforms, p) {
			t.Errorf("the Makefile's RELEASE_PLATFORMS %q lacks %s", platforms, p)
		}
	}

	dist := t.TempDir()
	const version = "v0.0.0-release-test"
	cmd := exec.Command("make", "--no-print-directory", "release", "DIST="+dist, "VERSION="+version)
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make release: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("darwin/amd64 and darwin/arm64 skipped")) {
		t.Errorf("make release does not say that it skips darwin, and why:\n%s", out)
	}

	var want []string
	for _, p := range platforms {
		want = append(want, "migrun-"+strings.ReplaceAll(p, "/", "-"))
	}
	entries, err := os.ReadDir(dist)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if wantAll := append(slices.Clone(want), "SHA256SUMS"); !sameSet(got, wantAll) {
		t.Errorf("make release wrote %q, want %q", got, wantAll)
	}
	checkSums(t, dist, want)

	for _, p := range platforms {
		goos, goarch, _ := strings.Cut(p, "/")
		bin := filepath.Join(dist, "migrun-"+goos+"-"+goarch)
		t.Run(p, func(t *testing.T) {
			checkELF(t, bin, goarch)
			checkBuildInfo(t, bin, goos, goarch)
			checkFile(t, bin, goarch)
			checkVersion(t, bin, goarch, version)
		})
	}
}

// TestReleaseRefusesDirtyVersion: a version naming uncommitted changes is
// never released.
func TestReleaseRefusesDirtyVersion(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("make", "--no-print-directory", "release", "DIST="+t.TempDir(), "VERSION=v1.2.3-4-gabcdef0-dirty")
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	if err == nil || !bytes.Contains(out, []byte("uncommitted changes")) {
		t.Errorf("make release with a -dirty version: %v, want a refusal:\n%s", err, out)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// checkSums: SHA256SUMS lists each binary once, in `sha256sum -c` form,
// with its true checksum.
func checkSums(t *testing.T, dist string, bins []string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Errorf("SHA256SUMS: %q is not `<sha256>  <file>`", sc.Text())
			continue
		}
		listed = append(listed, name)
		content, err := os.ReadFile(filepath.Join(dist, name))
		if err != nil {
			t.Errorf("SHA256SUMS lists %s: %v", name, err)
			continue
		}
		if h := sha256.Sum256(content); hex.EncodeToString(h[:]) != sum {
			t.Errorf("SHA256SUMS: %s has sha256 %x, listed as %s", name, h, sum)
		}
	}
	if !sameSet(listed, bins) {
		t.Errorf("SHA256SUMS lists %q, want %q", listed, bins)
	}
}

// checkELF: an executable for goarch with no program interpreter and no
// dynamic section: static, so it runs in distroless and any Rails image.
func checkELF(t *testing.T, bin, goarch string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != elfMachines[goarch] || f.Type != elf.ET_EXEC {
		t.Errorf("%s: ELF %s %s, want an executable for %s", bin, f.Type, f.Machine, elfMachines[goarch])
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s: has %s: dynamically linked", bin, p.Type)
		}
	}
}

// checkBuildInfo reads what `go version -m` prints.
func checkBuildInfo(t *testing.T, bin, goos, goarch string) {
	t.Helper()
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if info.Path != "github.com/migrun/migrun/cmd/migrun" {
		t.Errorf("%s: built from %s, want github.com/migrun/migrun/cmd/migrun", bin, info.Path)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	for k, v := range map[string]string{"GOOS": goos, "GOARCH": goarch, "CGO_ENABLED": "0", "-trimpath": "true"} {
		if settings[k] != v {
			t.Errorf("%s: go version -m says %s=%q, want %q", bin, k, settings[k], v)
		}
	}
}

// checkFile: what file(1) says, as a person checking a download would see it.
func checkFile(t *testing.T, bin, goarch string) {
	t.Helper()
	out := string(run(t, "", tool(t, "file", "apt-get install file"), "-b", bin))
	for _, want := range []string{"ELF 64-bit LSB executable", fileArch[goarch], "statically linked"} {
		if !strings.Contains(out, want) {
			t.Errorf("file %s: %q, want it to say %q", filepath.Base(bin), out, want)
		}
	}
}

// checkVersion runs `migrun version`: natively, or for another
// architecture under qemu-user. Since -trimpath keeps -ldflags out of the
// build info, running it is how the -X main.version stamp is seen.
func checkVersion(t *testing.T, bin, goarch, version string) {
	t.Helper()
	argv := []string{bin, "version"}
	if goarch != runtime.GOARCH {
		argv = append([]string{tool(t, qemuOf[goarch], "apt-get install qemu-user")}, argv...)
	}
	out := strings.TrimSpace(string(run(t, "", argv[0], argv[1:]...)))
	if out != "migrun "+version {
		t.Errorf("%s version: %q, want %q", filepath.Base(bin), out, "migrun "+version)
	}
}
