package report

import (
	"strings"
	"testing"
)

func TestLinkTemplate(t *testing.T) {
	r := Result{Environment: "production", App: "shop", Revision: "feature/x y&z=1#frag?q", Host: "migrate-7f9c", Namespace: "web"}
	tests := []struct {
		tmpl    LinkTemplate
		want    string // the expanded link
		wantErr string
	}{
		{tmpl: "", want: ""},
		{tmpl: "https://argocd.example.com/applications/{app}?revision={revision}",
			want: "https://argocd.example.com/applications/shop?revision=feature%2Fx%20y%26z%3D1%23frag%3Fq"},
		{tmpl: "https://logs.example.com/{namespace}/{host}?env={environment}&x=%7Bliteral%7D",
			want: "https://logs.example.com/web/migrate-7f9c?env=production&x=%7Bliteral%7D"},
		{tmpl: "http://{namespace}.example.com/", want: "http://web.example.com/"},
		{tmpl: "https://argocd.example.com/{app}/{app}", want: "https://argocd.example.com/shop/shop"},
		{tmpl: "https://x/{application}", wantErr: "unknown placeholder {application}"},
		{tmpl: "https://x/{App}", wantErr: "unknown placeholder {App}"},
		{tmpl: "https://x/{app", wantErr: "{ without its }"},
		{tmpl: "https://x/{{app}}", wantErr: "{ without its }"},
		{tmpl: "https://x/app}", wantErr: "} without its {"},
		{tmpl: "https://x/{}", wantErr: "unknown placeholder {}"},
		{tmpl: "https://x/a b", wantErr: `holds ' '`},
		{tmpl: "https://x/<a>", wantErr: `holds '<'`},
		{tmpl: "https://x/a|b", wantErr: `holds '|'`},
		{tmpl: "https://x/a\nb", wantErr: `holds '\n'`},
		{tmpl: "https://x/é", wantErr: `holds 'é'`},
		{tmpl: "https://x/%zz", wantErr: "not a URL"},
		{tmpl: "argocd.example.com/{app}", wantErr: "must start with https://"},
		{tmpl: "javascript:alert(1)", wantErr: "must start with https://"},
		{tmpl: "https:///{app}", wantErr: "no host"},
		{tmpl: LinkTemplate("https://x/" + strings.Repeat("a", MaxLink)), wantErr: "more than"},
	}
	for _, tt := range tests {
		err := tt.tmpl.Validate()
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%.60q: Validate() = %v, want %q", tt.tmpl, err, tt.wantErr)
			continue
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%.60q: error on more than one line: %q", tt.tmpl, err)
		}
		if got := tt.tmpl.Expand(r); got != tt.want {
			t.Errorf("%.60q: Expand() = %q, want %q", tt.tmpl, got, tt.want)
		}
	}
}

// TestLinkTooLong: values that would make the link longer than MaxLink
// leave it out rather than cut it.
func TestLinkTooLong(t *testing.T) {
	tmpl := LinkTemplate("https://logs.example.com/?host={host}")
	if got := tmpl.Expand(Result{Host: strings.Repeat("<", MaxLink)}); got != "" {
		t.Errorf("Expand() = %.80q..., want no link", got)
	}
}

func FuzzLinkTemplate(f *testing.F) {
	f.Add("https://argocd.example.com/applications/{app}?revision={revision}", "feature/x y")
	f.Add("https://x/{host}{namespace}#{environment}", "<!channel>|&")
	f.Fuzz(func(t *testing.T, tmpl, value string) {
		lt := LinkTemplate(tmpl)
		link := lt.Expand(Result{Environment: value, App: value, Revision: value, Host: value, Namespace: value})
		if lt.Validate() != nil {
			if link != "" {
				t.Fatalf("an invalid template expanded to %q", link)
			}
			return
		}
		for _, c := range link {
			if !urlChar(c) {
				t.Fatalf("link %q holds %q", link, c)
			}
		}
		if len(link) > MaxLink {
			t.Fatalf("link of %d bytes", len(link))
		}
	})
}
