package runner

import (
	"bytes"
	"strings"
	"testing"
)

// wantCapture is what a capture of headMax and tailMax must hold after all
// was written to it, however the writes were split.
func wantCapture(all []byte, headMax, tailMax int) (string, int64) {
	if len(all) <= headMax+tailMax {
		return string(all), 0
	}
	omitted := int64(len(all) - headMax - tailMax)
	return string(all[:headMax]) + omittedMarker(omitted) + string(all[len(all)-tailMax:]), omitted
}

func TestCapture(t *testing.T) {
	tests := []struct {
		name        string
		head, tail  int
		writes      []string
		want        string
		wantOmitted int64
	}{
		{name: "nothing written", head: 4, tail: 4, want: ""},
		{name: "fits in the head", head: 4, tail: 4, writes: []string{"abc"}, want: "abc"},
		{name: "fills head and tail exactly", head: 4, tail: 4, writes: []string{"abcdefgh"}, want: "abcdefgh"},
		{
			name: "one byte too many", head: 4, tail: 4, writes: []string{"abcdefghi"},
			want: "abcd\n[... migrun: 1 bytes omitted ...]\nfghi", wantOmitted: 1,
		},
		{
			name: "small writes wrap the ring", head: 4, tail: 4,
			writes: []string{"ab", "cd", "ef", "gh", "ij", "kl", "m"},
			want:   "abcd\n[... migrun: 5 bytes omitted ...]\njklm", wantOmitted: 5,
		},
		{
			name: "a write longer than the tail replaces it", head: 4, tail: 4,
			writes: []string{"abcdef", "0123456789"},
			want:   "abcd\n[... migrun: 8 bytes omitted ...]\n6789", wantOmitted: 8,
		},
		{
			name: "write straddling the head", head: 4, tail: 2, writes: []string{"ab", "cdefgh"},
			want: "abcd\n[... migrun: 2 bytes omitted ...]\ngh", wantOmitted: 2,
		},
		{
			name: "no tail", head: 4, tail: 0, writes: []string{"abc", "def"},
			want: "abcd\n[... migrun: 2 bytes omitted ...]\n", wantOmitted: 2,
		},
		{
			name: "no head", head: 0, tail: 3, writes: []string{"abc", "def"},
			want: "\n[... migrun: 3 bytes omitted ...]\ndef", wantOmitted: 3,
		},
		{
			name: "nothing kept", head: 0, tail: 0, writes: []string{"xyz"},
			want: "\n[... migrun: 3 bytes omitted ...]\n", wantOmitted: 3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCapture(tt.head, tt.tail)
			for _, w := range tt.writes {
				if n, err := c.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v; want %d, nil", w, n, err, len(w))
				}
			}
			got, omitted := c.result()
			if got != tt.want || omitted != tt.wantOmitted {
				t.Errorf("result() = %q, %d; want %q, %d", got, omitted, tt.want, tt.wantOmitted)
			}
		})
	}
}

func TestCaptureMemoryIsBounded(t *testing.T) {
	const headMax, tailMax = 1000, 700
	c := newCapture(headMax, tailMax)
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	var total int64
	for i := range 64 { // 4 MiB in uneven pieces
		piece := chunk[:len(chunk)-i*997]
		c.Write(piece)
		total += int64(len(piece))
	}
	if cap(c.head) > headMax || len(c.ring) > tailMax {
		t.Errorf("capture holds head cap %d, ring %d; want at most %d, %d", cap(c.head), len(c.ring), headMax, tailMax)
	}
	out, omitted := c.result()
	if want := total - headMax - tailMax; omitted != want {
		t.Errorf("omitted = %d; want %d", omitted, want)
	}
	if want := headMax + len(omittedMarker(omitted)) + tailMax; len(out) != want {
		t.Errorf("len(output) = %d; want %d", len(out), want)
	}
}

// FuzzCapture checks that whatever the bounds and however the output is cut
// into writes, the capture holds the head, marker and tail of the whole.
func FuzzCapture(f *testing.F) {
	f.Add(uint8(3), uint8(5), []byte("hello, migration world"), []byte{1, 4, 0, 9})
	f.Fuzz(func(t *testing.T, head, tail uint8, data, cuts []byte) {
		headMax, tailMax := int(head%33), int(tail%33)
		c := newCapture(headMax, tailMax)
		rest := data
		for _, cut := range cuts {
			n := min(int(cut)%40, len(rest))
			c.Write(rest[:n])
			rest = rest[n:]
		}
		c.Write(rest)

		got, omitted := c.result()
		want, wantOmitted := wantCapture(data, headMax, tailMax)
		if got != want || omitted != wantOmitted {
			t.Errorf("head %d tail %d cuts %v data %q:\n got %q, %d\nwant %q, %d",
				headMax, tailMax, cuts, data, got, omitted, want, wantOmitted)
		}
		if len(got) > headMax+tailMax && !strings.Contains(got, "bytes omitted") {
			t.Errorf("output longer than its bounds without a marker: %q", got)
		}
	})
}
