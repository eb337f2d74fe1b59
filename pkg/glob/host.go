package glob

import (
	"fmt"
	"net"
	"strings"
)

// Host is a compiled registry host pattern: a glob for the host name or
// address and, when the pattern names one, a glob for the port
// ("*", "ghcr.io", "*.example.com", "registry.local:5000", "[fd00::1]:5000").
// Case is ignored; a pattern without a port matches any port.
type Host struct {
	host, port Pattern
	anyPort    bool
}

// CompileHost checks a host pattern and prepares it for matching. Square
// brackets are only the brackets of an IPv6 address, never glob syntax.
func CompileHost(pattern string) (Host, error) {
	p := strings.ToLower(strings.TrimSpace(pattern))
	if p == "" {
		return Host{}, fmt.Errorf("%w: empty host pattern", ErrSyntax)
	}
	name, port, hasPort := splitHostPort(p)
	h, err := Compile(name)
	if err != nil {
		return Host{}, fmt.Errorf("host: %w", err)
	}
	out := Host{host: h, anyPort: !hasPort}
	if hasPort {
		if out.port, err = Compile(port); err != nil {
			return Host{}, fmt.Errorf("port: %w", err)
		}
	}
	return out, nil
}

// Match reports whether a registry host (host, host:port or [v6]:port)
// matches the pattern.
func (h Host) Match(hostport string) bool {
	name, port, hasPort := splitHostPort(strings.ToLower(hostport))
	if !h.anyPort && (!hasPort || !h.port.Match(port)) {
		return false
	}
	return h.host.Match(name)
}

// MatchHost compiles pattern and matches host against it; a malformed
// pattern matches nothing.
func MatchHost(pattern, host string) bool {
	h, err := CompileHost(pattern)
	return err == nil && h.Match(host)
}

// splitHostPort splits host:port, or strips an address's brackets when
// there is no port.
func splitHostPort(s string) (host, port string, hasPort bool) {
	if h, p, err := net.SplitHostPort(s); err == nil {
		return h, p, true
	}
	return strings.Trim(s, "[]"), "", false
}
