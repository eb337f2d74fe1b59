package mirrors

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"

	"slimgate.dev/slimgate/internal/capped"
)

// hostSettings are the settings of one host of a hosts.toml, and of its
// server (the file's top level). Those slimgate cannot honour as the node
// does are refused (unsupported); DialTimeout is accepted and ignored:
// slimgate's own, shorter timeouts apply.
type hostSettings struct {
	Capabilities []string       `toml:"capabilities"`
	SkipVerify   *bool          `toml:"skip_verify"`
	CA           any            `toml:"ca"`
	Client       any            `toml:"client"`
	Header       map[string]any `toml:"header"`
	OverridePath bool           `toml:"override_path"`
	DialTimeout  string         `toml:"dial_timeout"`
}

// hostsFile is a hosts.toml.
type hostsFile struct {
	hostSettings
	Server string                  `toml:"server"`
	Host   map[string]hostSettings `toml:"host"`
}

// LoadDir reads a containerd hosts folder, as the nodes' config_path
// names it: DIR/<host>/hosts.toml for each upstream host ("host_port_" or
// "host:port" for a host with a port, "_default" for every other host).
// Folders without a hosts.toml, or whose hosts.toml names no host but the
// upstream, have no mirror, as in containerd; names
// starting with ".." (a mounted ConfigMap's own) are skipped.
//
// In a hosts.toml the [host."URL"] tables are the endpoints, in file
// order; an endpoint whose capabilities lack "pull" is left out, one
// lacking "resolve" is asked for digests only. The upstream is the
// fallback unless "server" names another host, which then is the last
// endpoint. TLS material (ca, client, skip_verify = true) and headers are
// refused: slimgate would not reach the mirror as the node does.
func LoadDir(dir string) (*Table, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	if len(entries) > 4*MaxHosts {
		return nil, fmt.Errorf("%s holds %d entries, more than a hosts folder of %d hosts needs", dir, len(entries), MaxHosts)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if fi, err := os.Stat(filepath.Join(dir, e.Name())); err == nil && fi.IsDir() && !strings.HasPrefix(e.Name(), "..") {
			names = append(names, e.Name())
		}
	}
	return collect(names, func(folder string) (string, Mirror, error) {
		file := filepath.Join(dir, folder, "hosts.toml")
		data, err := capped.ReadFile(file, MaxFileBytes)
		if errors.Is(err, os.ErrNotExist) {
			return "", Mirror{}, nil
		}
		if err != nil {
			return "", Mirror{}, err
		}
		upstream := hostOfFolder(folder)
		m, err := parseHostsFile(upstream, data)
		switch {
		case err != nil:
			return "", Mirror{}, fmt.Errorf("%s: %w", file, err)
		case len(m.Endpoints) == 0 && m.Fallback:
			return "", Mirror{}, nil // the upstream alone: no mirror
		}
		return upstream, m, nil
	})
}

// hostOfFolder is the upstream host a folder of the hosts folder names:
// containerd writes host:port as "host_port_".
func hostOfFolder(name string) string {
	rest, ok := strings.CutSuffix(name, "_")
	i := strings.LastIndexByte(rest, '_')
	if !ok || i <= 0 {
		return name
	}
	if _, err := strconv.ParseUint(rest[i+1:], 10, 16); err != nil {
		return name
	}
	return rest[:i] + ":" + rest[i+1:]
}

// parseHostsFile reads one hosts.toml for the upstream host.
func parseHostsFile(upstream string, data []byte) (Mirror, error) {
	var f hostsFile
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		var strict *toml.StrictMissingError
		if errors.As(err, &strict) {
			keys := make([]string, 0, len(strict.Errors))
			for _, e := range strict.Errors {
				keys = append(keys, strings.Join(e.Key(), "."))
			}
			return Mirror{}, fmt.Errorf("unknown keys %q", keys)
		}
		return Mirror{}, err
	}
	order, err := hostOrder(data)
	if err != nil {
		return Mirror{}, err
	}
	if len(order) != len(f.Host) {
		return Mirror{}, errors.New(`write each host as a [host."URL"] table`)
	}
	if len(order) > MaxEndpoints {
		return Mirror{}, fmt.Errorf("%d hosts, more than the %d allowed", len(order), MaxEndpoints)
	}
	m := Mirror{Fallback: true}
	for _, h := range order {
		e, use, err := hostEndpoint(h, f.Host[h])
		if err != nil {
			return Mirror{}, fmt.Errorf("host %q: %w", h, err)
		}
		if use && !slices.Contains(m.Endpoints, e) {
			m.Endpoints = append(m.Endpoints, e)
		}
	}
	if f.Server != "" {
		e, use, err := hostEndpoint(f.Server, f.hostSettings)
		if err != nil {
			return Mirror{}, fmt.Errorf("server: %w", err)
		}
		if !isUpstream(upstream, e) {
			// Another server replaces the upstream.
			m.Fallback = false
			if use {
				m.Endpoints = append(m.Endpoints, e)
			}
		}
	} else if err := supported(f.hostSettings); err != nil {
		return Mirror{}, err
	}
	return m, nil
}

// hostEndpoint reads one host of a hosts.toml: its endpoint, and whether
// it may be pulled from at all.
func hostEndpoint(url string, s hostSettings) (Endpoint, bool, error) {
	if err := supported(s); err != nil {
		return Endpoint{}, false, err
	}
	if !strings.Contains(url, "://") {
		url = "https://" + url
	}
	e, err := parseEndpoint(url, s.OverridePath)
	if err != nil {
		return Endpoint{}, false, err
	}
	if len(s.Capabilities) == 0 {
		return e, true, nil
	}
	pull := false
	e.Resolve = false
	for _, c := range s.Capabilities {
		switch strings.ToLower(c) {
		case "pull":
			pull = true
		case "resolve":
			e.Resolve = true
		case "push":
		default:
			return Endpoint{}, false, fmt.Errorf("unknown capability %q", c)
		}
	}
	return e, pull, nil
}

// supported refuses the settings slimgate cannot honour.
func supported(s hostSettings) error {
	switch {
	case s.CA != nil, s.Client != nil, s.SkipVerify != nil && *s.SkipVerify:
		return errors.New("ca, client and skip_verify are not supported: slimgate verifies mirrors with the system's certificate authorities (add a private CA to the webhook's trust store)")
	case len(s.Header) > 0:
		return errors.New("header is not supported")
	}
	return nil
}

// isUpstream reports whether a server endpoint is the upstream registry
// itself (for Docker Hub also registry-1.docker.io, containerd's name
// for it).
func isUpstream(upstream string, e Endpoint) bool {
	if e.Prefix != "" {
		return false
	}
	want, err := upstreamKey(upstream)
	if err != nil {
		return false
	}
	got, err := upstreamKey(e.Host)
	return err == nil && (got == want || want == "index.docker.io" && got == "registry-1.docker.io")
}

// hostOrder lists the host tables of a hosts.toml in the order the file
// writes them: the order containerd tries them in.
func hostOrder(data []byte) ([]string, error) {
	var order []string
	var p unstable.Parser
	p.Reset(data)
	for p.NextExpression() {
		expr := p.Expression()
		if expr.Kind != unstable.Table {
			continue
		}
		it := expr.Key()
		if !it.Next() || string(it.Node().Data) != "host" || !it.Next() {
			continue
		}
		// [host."URL".header] and the like are parts of [host."URL"].
		if h := string(it.Node().Data); !slices.Contains(order, h) {
			order = append(order, h)
		}
	}
	return order, p.Error()
}
