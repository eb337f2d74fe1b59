package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"syscall"

	"slimgate.dev/slimgate/pkg/glob"
)

// Rules is the egress guard applied to one request. Its host patterns are
// in pkg/glob's host dialect, the one the policy validates, and matched by
// glob.MatchHost only.
type Rules struct {
	// Enabled turns the guard on; the CLI leaves it off unless asked.
	Enabled bool
	// AllowRegistries lists registry host patterns that may be contacted;
	// empty or "*" means any.
	AllowRegistries []string
	// AllowPrivateNetworks permits loopback, private, link-local,
	// unique-local and unspecified addresses.
	AllowPrivateNetworks bool
	// Insecure lists registries spoken to over plain HTTP.
	Insecure []string
}

// ErrRefused matches every error raised by the guard.
var ErrRefused = errors.New("refused by the egress guard")

// refusal is a refusal with a message that names what was refused.
type refusal struct{ msg string }

func (e *refusal) Error() string        { return e.msg + "; refused by the egress guard" }
func (e *refusal) Is(target error) bool { return target == ErrRefused }

func refused(format string, args ...any) error {
	return &refusal{msg: fmt.Sprintf(format, args...)}
}

// Guarded reports whether non-public addresses are refused: the guard is
// on and private networks are not allowed.
func (r Rules) Guarded() bool { return r.Enabled && !r.AllowPrivateNetworks }

// IsInsecure reports whether host (host or host:port) is listed for plain
// HTTP.
func (r Rules) IsInsecure(host string) bool {
	return slices.ContainsFunc(r.Insecure, func(p string) bool { return glob.MatchHost(p, host) })
}

// CheckPlainHTTP refuses plain HTTP to a host (host or host:port) the
// rules do not list as insecure, whatever asked for it: a request's URL or
// a registry mirror configured with an http:// endpoint.
func (r Rules) CheckPlainHTTP(host string) error {
	if !r.IsInsecure(host) {
		return refused("plain HTTP to %s is not allowed (not listed as an insecure registry)", host)
	}
	return nil
}

// CheckRegistry refuses a registry host before any connection is tried:
// one the rules do not allow, and, when Guarded, one CheckHost refuses.
// Hosts in exempt ("ip:port") pass the address check.
func (r Rules) CheckRegistry(host string, exempt []string) error {
	if r.Enabled && len(r.AllowRegistries) > 0 && !slices.ContainsFunc(r.AllowRegistries, func(p string) bool { return glob.MatchHost(p, host) }) {
		return refused("registry %s is not in the allowed registries %v", host, r.AllowRegistries)
	}
	if r.Guarded() {
		return CheckHost(host, exempt)
	}
	return nil
}

// hostOnly strips the port and IPv6 brackets from host[:port].
func hostOnly(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return strings.Trim(host, "[]")
}

// CheckHost refuses a host (host or host:port) that is itself a
// non-public IP literal or a loopback name, with a clear message, before
// any connection is tried; a redirect target is checked the same way.
// Hosts in exempt ("ip:port") are let through.
func CheckHost(host string, exempt []string) error {
	if slices.Contains(exempt, host) {
		return nil
	}
	bare := hostOnly(host)
	if ip, err := netip.ParseAddr(bare); err == nil {
		if class := addressClass(ip); class != "" {
			return refused("registry %s is %s address", host, class)
		}
	}
	if strings.EqualFold(bare, "localhost") || strings.HasSuffix(strings.ToLower(bare), ".localhost") {
		return refused("registry %s is a loopback name", host)
	}
	return nil
}

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
			return refused("address %s is %s address", ip, class)
		}
		return refused("registry %s resolves to %s address (%s)", host, class, ip)
	}
	return nil
}

// dialHostKey carries the host name being dialled to Control, for error
// messages only.
type dialHostKey struct{}

// WithDialHost returns ctx carrying host, the name being dialled, so that
// Control's refusals name it. Transport does this for every request.
func WithDialHost(ctx context.Context, host string) context.Context {
	return context.WithValue(ctx, dialHostKey{}, host)
}

// Control is a net.Dialer ControlContext function that refuses to connect
// to non-public addresses. It sees the address actually dialled, after DNS
// resolution, so a name that re-resolves to a private address (DNS
// rebinding) is caught as well as a redirect to one. Addresses in exempt
// (exact "ip:port") are let through.
func Control(exempt []string) func(ctx context.Context, network, address string, _ syscall.RawConn) error {
	return func(ctx context.Context, _, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return refused("cannot parse dialled address %q", address)
		}
		if slices.Contains(exempt, ap.String()) {
			return nil
		}
		host, _ := ctx.Value(dialHostKey{}).(string)
		return checkAddress(host, ap.Addr())
	}
}

// Transport returns a RoundTripper that refuses plain HTTP to any host the
// rules do not list as insecure (ggcr would otherwise fall back to HTTP on
// its own for localhost and RFC 1918 hosts) and passes the host name on to
// Control (WithDialHost) before calling inner.
func Transport(inner http.RoundTripper, rules Rules) http.RoundTripper {
	return &schemeGuard{inner: inner, rules: rules}
}

type schemeGuard struct {
	inner http.RoundTripper
	rules Rules
}

func (g *schemeGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" {
		if err := g.rules.CheckPlainHTTP(req.URL.Host); err != nil {
			return nil, err
		}
	}
	return g.inner.RoundTrip(req.WithContext(WithDialHost(req.Context(), req.URL.Hostname())))
}
