package egress

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

func TestCheckRegistry(t *testing.T) {
	guard := Rules{Enabled: true}
	allowList := Rules{Enabled: true, AllowRegistries: []string{"ghcr.io", "*.example.com"}}
	for _, tc := range []struct {
		rules   Rules
		host    string
		exempt  []string
		message string // in the refusal; "" for none
	}{
		{rules: Rules{AllowRegistries: []string{"ghcr.io"}}, host: "127.0.0.1:5000"}, // guard off
		{rules: allowList, host: "quay.io", message: "registry quay.io is not in the allowed registries [ghcr.io *.example.com]"},
		{rules: allowList, host: "reg.example.com:5000"},
		{rules: Rules{Enabled: true, AllowRegistries: []string{"*"}}, host: "quay.io"},
		{rules: guard, host: "169.254.169.254", message: "registry 169.254.169.254 is a link-local address"},
		{rules: guard, host: "[::1]:5000", message: "registry [::1]:5000 is a loopback address"},
		{rules: guard, host: "localhost:5000", message: "registry localhost:5000 is a loopback name"},
		{rules: guard, host: "REG.LOCALHOST", message: "is a loopback name"},
		{rules: guard, host: "127.0.0.1:5000", exempt: []string{"127.0.0.1:5000"}},
		{rules: guard, host: "127.0.0.1:5001", exempt: []string{"127.0.0.1:5000"}, message: "is a loopback address"},
		{rules: Rules{Enabled: true, AllowPrivateNetworks: true}, host: "10.1.2.3"},
	} {
		err := tc.rules.CheckRegistry(tc.host, tc.exempt)
		switch {
		case tc.message == "" && err != nil:
			t.Errorf("%s %+v: refused: %v", tc.host, tc.rules, err)
		case tc.message != "" && (err == nil || !strings.Contains(err.Error(), tc.message) || !errors.Is(err, ErrRefused)):
			t.Errorf("%s %+v: error %v, want a refusal saying %q", tc.host, tc.rules, err, tc.message)
		}
	}
}

func TestIsInsecure(t *testing.T) {
	rules := Rules{Insecure: []string{"reg.local:5000", "*.internal"}}
	for host, want := range map[string]bool{
		"reg.local:5000": true, "reg.local:5001": false, "reg.local": false,
		"cache.internal": true, "cache.internal:80": true, "ghcr.io": false,
	} {
		if got := rules.IsInsecure(host); got != want {
			t.Errorf("IsInsecure(%q) = %t, want %t", host, got, want)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestTransportRefusesPlainHTTP(t *testing.T) {
	var dialHost string
	calls := 0
	inner := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		calls++
		dialHost, _ = r.Context().Value(dialHostKey{}).(string)
		return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}, nil
	})
	rt := Transport(inner, Rules{Insecure: []string{"reg.local:5000"}})
	for _, tc := range []struct {
		url, wantHost string // wantHost "": refused
	}{
		{"https://ghcr.io/v2/", "ghcr.io"},
		{"http://reg.local:5000/v2/", "reg.local"},
		{"http://ghcr.io/v2/", ""},
		{"http://reg.local:5001/v2/", ""},
	} {
		calls, dialHost = 0, ""
		req, err := http.NewRequest(http.MethodGet, tc.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := rt.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
		if tc.wantHost == "" {
			if !errors.Is(err, ErrRefused) || calls != 0 || !strings.Contains(err.Error(), "plain HTTP to "+req.URL.Host+" is not allowed") {
				t.Errorf("%s: error %v after %d calls, want a refusal before any", tc.url, err, calls)
			}
			continue
		}
		if err != nil || calls != 1 || dialHost != tc.wantHost {
			t.Errorf("%s: error %v, %d calls, dial host %q; want one call with %q", tc.url, err, calls, dialHost, tc.wantHost)
		}
	}
}

func TestAddressClass(t *testing.T) {
	for _, tc := range []struct {
		ip, want string
	}{
		{"8.8.8.8", ""},
		{"2606:4700::1111", ""},
		{"127.0.0.1", "a loopback"},
		{"127.255.0.9", "a loopback"},
		{"::1", "a loopback"},
		{"::ffff:127.0.0.1", "a loopback"},
		{"169.254.169.254", "a link-local"},
		{"fe80::1", "a link-local"},
		{"10.0.0.1", "a private"},
		{"172.16.5.4", "a private"},
		{"172.32.0.1", ""},
		{"192.168.1.1", "a private"},
		{"100.64.0.1", "a shared (CGNAT)"},
		{"100.128.0.1", ""},
		{"fc00::1", "a unique-local"},
		{"fd12:3456::1", "a unique-local"},
		{"0.0.0.0", "an unspecified"},
		{"::", "an unspecified"},
		{"224.0.0.1", "a link-local"},
		{"239.1.1.1", "a multicast"},
		{"ff02::1", "a link-local"},
		{"ff05::2", "a multicast"},
		{"255.255.255.255", "a broadcast"},
		{"0.1.2.3", "a 'this network'"},
	} {
		if got := addressClass(netip.MustParseAddr(tc.ip)); got != tc.want {
			t.Errorf("addressClass(%s) = %q, want %q", tc.ip, got, tc.want)
		}
	}
}

func TestGuardedControlChecksTheDialledAddress(t *testing.T) {
	control := Control([]string{"127.0.0.1:5000"})
	ctx := WithDialHost(context.Background(), "registry.example.com")
	for _, tc := range []struct {
		address string
		refused bool
	}{
		{"127.0.0.1:5000", false},
		{"127.0.0.1:5001", true},
		{"[fe80::1]:443", true},
		{"93.184.216.34:443", false},
		{"10.0.0.8:443", true},
	} {
		err := control(ctx, "tcp", tc.address, nil)
		if (err != nil) != tc.refused || (err != nil && !errors.Is(err, ErrRefused)) {
			t.Errorf("%s: err = %v, want refused %t", tc.address, err, tc.refused)
		}
		if err != nil && !strings.Contains(err.Error(), "registry registry.example.com resolves to") {
			t.Errorf("%s: message %q does not name the registry", tc.address, err)
		}
	}
}
