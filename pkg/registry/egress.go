package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"syscall"
)

// errEgress marks an error raised by the egress guard, so it is reported
// as ReasonEgressRefused however deep in the HTTP stack it surfaced.
var errEgress = errors.New("refused by the egress guard")

// egressError is a refusal with a message that names what was refused.
type egressError struct{ msg string }

func (e *egressError) Error() string        { return e.msg + "; refused by the egress guard" }
func (e *egressError) Is(target error) bool { return target == errEgress }

// addressClass names the kind of a non-public address, or "" for a public
// unicast address.
func addressClass(ip netip.Addr) string {
	ip = ip.Unmap()
	switch {
	case !ip.IsValid():
		return "an invalid"
	case ip.IsLoopback():
		return "a loopback"
	case ip.IsUnspecified():
		return "an unspecified"
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		return "a link-local"
	case ip.IsMulticast(), ip.IsInterfaceLocalMulticast():
		return "a multicast"
	case ip.Is4() && cgnat.Contains(ip):
		return "a shared (CGNAT)"
	case ip.Is4() && ip.As4()[0] == 0:
		return "a 'this network'"
	case ip == broadcast4:
		return "a broadcast"
	case ip.Is6() && uniqueLocal.Contains(ip):
		return "a unique-local"
	case ip.IsPrivate():
		return "a private"
	}
	return ""
}

var (
	cgnat       = netip.MustParsePrefix("100.64.0.0/10")
	uniqueLocal = netip.MustParsePrefix("fc00::/7")
	broadcast4  = netip.MustParseAddr("255.255.255.255")
)

// checkAddress refuses a non-public address for host (the name that was
// asked for, used in the message).
func checkAddress(host string, ip netip.Addr) error {
	if class := addressClass(ip); class != "" {
		if host == "" || host == ip.String() {
			return &egressError{msg: fmt.Sprintf("address %s is %s address", ip, class)}
		}
		return &egressError{msg: fmt.Sprintf("registry %s resolves to %s address (%s)", host, class, ip)}
	}
	return nil
}

// guardedControl is a net.Dialer Control function that refuses to connect
// to non-public addresses. It sees the address actually dialled, after DNS
// resolution, so a name that re-resolves to a private address (DNS
// rebinding) is caught as well as a redirect to one.
// Addresses in exempt (exact "ip:port") are let through.
func guardedControl(exempt []string, hostOf func(ctx context.Context) string) func(ctx context.Context, network, address string, _ syscall.RawConn) error {
	return func(ctx context.Context, network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return &egressError{msg: fmt.Sprintf("cannot parse dialled address %q", address)}
		}
		if slices.Contains(exempt, ap.String()) {
			return nil
		}
		return checkAddress(hostOf(ctx), ap.Addr())
	}
}

// dialHostKey carries the host name being dialled to the Control function,
// for error messages only.
type dialHostKey struct{}

// matchHost reports whether a registry host (host or host:port) matches a
// pattern: "*", an exact host, an exact host:port, or "*.example.com"
// (any subdomain, any port). A pattern without a port matches any port.
// Matching ignores case.
func matchHost(pattern, host string) bool {
	pattern, host = strings.ToLower(strings.TrimSpace(pattern)), strings.ToLower(host)
	switch {
	case pattern == "":
		return false
	case pattern == "*" || pattern == host:
		return true
	}
	bare := hostOnly(host)
	if suffix, ok := strings.CutPrefix(pattern, "*."); ok {
		return strings.HasSuffix(bare, "."+suffix)
	}
	if _, _, err := net.SplitHostPort(pattern); err != nil {
		return strings.Trim(pattern, "[]") == bare
	}
	return false
}

// hostOnly strips the port and IPv6 brackets from host[:port].
func hostOnly(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return strings.Trim(host, "[]")
}

// registryAllowed applies AllowRegistries: empty means any registry.
func registryAllowed(rules EgressRules, host string) bool {
	if !rules.Enabled || len(rules.AllowRegistries) == 0 {
		return true
	}
	return slices.ContainsFunc(rules.AllowRegistries, func(p string) bool { return matchHost(p, host) })
}

// isInsecure reports whether host is listed for plain HTTP.
func isInsecure(rules EgressRules, host string) bool {
	return slices.ContainsFunc(rules.Insecure, func(p string) bool { return matchHost(p, host) })
}

// guardLiteralHost refuses a host that is itself a non-public IP literal
// or a loopback name, before any connection is tried, with a clear
// message. Hosts in exempt ("ip:port") are let through.
func guardLiteralHost(host string, exempt []string) error {
	if slices.Contains(exempt, host) {
		return nil
	}
	bare := hostOnly(host)
	if ip, err := netip.ParseAddr(bare); err == nil {
		if class := addressClass(ip); class != "" {
			return &egressError{msg: fmt.Sprintf("registry %s is %s address", host, class)}
		}
	}
	if strings.EqualFold(bare, "localhost") || strings.HasSuffix(strings.ToLower(bare), ".localhost") {
		return &egressError{msg: fmt.Sprintf("registry %s is a loopback name", host)}
	}
	return nil
}

// schemeGuard is the innermost RoundTripper: it refuses plain HTTP to any
// host not listed as insecure (ggcr would otherwise fall back to HTTP on
// its own for localhost and RFC 1918 hosts), and caps every response body
// so error and token bodies stay bounded whatever reads them.
type schemeGuard struct {
	inner    http.RoundTripper
	insecure func(host string) bool
	maxBody  int64
}

func (g *schemeGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" && !g.insecure(req.URL.Host) {
		return nil, &egressError{msg: fmt.Sprintf("plain HTTP to %s is not allowed (not listed as an insecure registry)", req.URL.Host)}
	}
	ctx := context.WithValue(req.Context(), dialHostKey{}, req.URL.Hostname())
	resp, err := g.inner.RoundTrip(req.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	resp.Body = &cappedBody{rc: resp.Body, left: g.maxBody}
	return resp, nil
}

// errBodyTooLarge is returned by a capped body read past its limit.
var errBodyTooLarge = errors.New("response body exceeds the size limit")

// cappedBody fails a read once more than left bytes were read, whatever the
// Content-Length said.
type cappedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, errBodyTooLarge
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n, errBodyTooLarge
	}
	return n, err
}

func (b *cappedBody) Close() error { return b.rc.Close() }
