package mirrors

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"sigs.k8s.io/yaml"

	"slimgate.dev/slimgate/internal/capped"
)

// Bounds of a configuration: hostile or mistaken input stays small.
const (
	// MaxHosts is the most upstream hosts a configuration may name.
	MaxHosts = 64
	// MaxEndpoints is the most mirror endpoints of one upstream host.
	MaxEndpoints = 8
	// MaxFileBytes caps a configuration file (the YAML file, or one
	// hosts.toml).
	MaxFileBytes = 256 << 10
)

// DefaultHost is the key of the entry that applies to every upstream
// host without one of its own (containerd's "_default" folder).
const DefaultHost = "_default"

// Endpoint is one place an upstream host's images are read from.
type Endpoint struct {
	// Scheme is "https" or "http", as the configuration wrote it. Plain
	// HTTP is still only spoken to hosts the egress rules list as
	// insecure (see package egress).
	Scheme string
	// Host is host[:port], lower case.
	Host string
	// Prefix is a path put before the repository ("dockerhub" turns
	// library/nginx into dockerhub/library/nginx), as a mirror configured
	// with the URL https://host/v2/dockerhub (containerd's override_path)
	// serves it; empty for none.
	Prefix string
	// Resolve is whether the endpoint may say what a tag names. An
	// endpoint that may not (containerd's capabilities without "resolve")
	// is only asked for digests.
	Resolve bool
}

// String is the endpoint as a URL.
func (e Endpoint) String() string {
	if e.Prefix == "" {
		return e.Scheme + "://" + e.Host
	}
	return e.Scheme + "://" + e.Host + "/v2/" + e.Prefix
}

// Repository is repo (a repository path such as "library/nginx") as this
// endpoint names it.
func (e Endpoint) Repository(repo string) string {
	if e.Prefix == "" {
		return repo
	}
	return e.Prefix + "/" + repo
}

// Mirror is how one upstream host's images are read.
type Mirror struct {
	// Endpoints are tried in order.
	Endpoints []Endpoint
	// Fallback: the upstream host is tried after every endpoint failed.
	Fallback bool
}

// Table maps upstream registry hosts to their mirrors. The zero Table
// (and a nil one) has none.
type Table struct {
	hosts map[string]Mirror
}

// For returns the mirror of an upstream registry host, as
// name.Registry.RegistryStr names it (Docker Hub is "index.docker.io"),
// or the DefaultHost entry when the host has none.
func (t *Table) For(host string) (Mirror, bool) {
	if t == nil {
		return Mirror{}, false
	}
	if m, ok := t.hosts[strings.ToLower(host)]; ok {
		return m, true
	}
	m, ok := t.hosts[DefaultHost]
	return m, ok
}

// Len is the number of upstream hosts with mirrors.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.hosts)
}

// EndpointHosts lists the hosts of every endpoint, sorted and without
// duplicates: the hosts the configuration names, which get their own
// value of the registry metric label.
func (t *Table) EndpointHosts() []string {
	if t == nil {
		return nil
	}
	var hosts []string
	for _, m := range t.hosts {
		for _, e := range m.Endpoints {
			hosts = append(hosts, e.Host)
		}
	}
	slices.Sort(hosts)
	return slices.Compact(hosts)
}

// entry is one upstream host of the YAML form.
type entry struct {
	Endpoints []string `json:"endpoints"`
	// Fallback defaults to true, as containerd always tries the upstream
	// last unless told otherwise.
	Fallback *bool `json:"fallback,omitempty"`
}

// Parse reads the YAML (or JSON) form: upstream host to its endpoints,
//
//	docker.io:
//	  endpoints: ["https://mirror.example:5000"]
//	  fallback: true
//
// Endpoints are URLs: scheme http or https, a host[:port], and no path,
// "/v2", or "/v2/PREFIX" for a mirror that serves the upstream's
// repositories under PREFIX.
func Parse(data []byte) (*Table, error) {
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("the mirror configuration is %d bytes, more than the %d allowed", len(data), MaxFileBytes)
	}
	var raw map[string]entry
	if err := yaml.UnmarshalStrict(data, &raw); err != nil {
		return nil, fmt.Errorf("reading the mirror configuration: %w", err)
	}
	if len(raw) > MaxHosts {
		return nil, fmt.Errorf("the mirror configuration names %d hosts, more than the %d allowed", len(raw), MaxHosts)
	}
	return collect(slices.Sorted(maps.Keys(raw)), func(host string) (string, Mirror, error) {
		e := raw[host]
		m := Mirror{Fallback: e.Fallback == nil || *e.Fallback}
		var err error
		if m.Endpoints, err = endpoints(e.Endpoints); err != nil {
			return "", Mirror{}, fmt.Errorf("%s: %w", host, err)
		}
		return host, m, nil
	})
}

// collect builds a Table from the entries of a configuration, in order:
// mirror reads one (an empty upstream host: the entry has no mirror). The
// problems of every entry are reported together.
func collect(entries []string, mirror func(entry string) (string, Mirror, error)) (*Table, error) {
	t := &Table{hosts: map[string]Mirror{}}
	var errs []error
	for _, e := range entries {
		host, m, err := mirror(e)
		if err == nil && host != "" {
			if err = t.add(host, m); err != nil {
				err = fmt.Errorf("%s: %w", e, err)
			}
		}
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

// Load reads the YAML form from a file.
func Load(file string) (*Table, error) {
	data, err := capped.ReadFile(file, MaxFileBytes)
	if err != nil {
		return nil, err
	}
	t, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return t, nil
}

// LoadConfig reads the mirrors as the webhook's and the CLI's flags name
// them: the YAML form from file, or containerd's hosts folder dir; never
// both. Both empty: no mirrors (a nil Table).
func LoadConfig(file, dir string) (*Table, error) {
	switch {
	case file != "" && dir != "":
		return nil, errors.New("give the YAML file or the hosts folder, not both")
	case file != "":
		return Load(file)
	case dir != "":
		return LoadDir(dir)
	}
	return nil, nil
}

// add checks an upstream host and its mirror and adds them.
func (t *Table) add(host string, m Mirror) error {
	key, err := upstreamKey(host)
	if err != nil {
		return err
	}
	if _, dup := t.hosts[key]; dup {
		return fmt.Errorf("upstream host %s is configured twice", key)
	}
	if len(m.Endpoints) == 0 {
		return errors.New("no endpoints")
	}
	if len(t.hosts) >= MaxHosts {
		return fmt.Errorf("more than the %d hosts allowed", MaxHosts)
	}
	t.hosts[key] = m
	return nil
}

// upstreamKey checks an upstream host and names it as
// name.Registry.RegistryStr does ("docker.io" is "index.docker.io").
func upstreamKey(host string) (string, error) {
	h := strings.ToLower(strings.TrimSpace(host))
	if h == DefaultHost {
		return h, nil
	}
	if err := checkHost(h); err != nil {
		return "", fmt.Errorf("upstream host: %w", err)
	}
	reg, err := name.NewRegistry(h)
	if err != nil {
		return "", fmt.Errorf("upstream host %q: %w", host, err)
	}
	return reg.RegistryStr(), nil
}

// checkHost accepts host[:port] (names, IPv4, bracketed IPv6) only.
func checkHost(h string) error {
	if h == "" || len(h) > 255 {
		return fmt.Errorf("%q is not a host[:port]", h)
	}
	u, err := url.Parse("https://" + h)
	if err != nil || u.Host != h || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(h, "*?%") {
		return fmt.Errorf("%q is not a host[:port]", h)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 || strings.HasPrefix(p, "0") {
			return fmt.Errorf("%q has a bad port", h)
		}
	}
	return nil
}

// endpoints parses the endpoint URLs of one upstream host.
func endpoints(urls []string) ([]Endpoint, error) {
	if len(urls) > MaxEndpoints {
		return nil, fmt.Errorf("%d endpoints, more than the %d allowed", len(urls), MaxEndpoints)
	}
	out := make([]Endpoint, 0, len(urls))
	for _, s := range urls {
		e, err := parseEndpoint(s, true)
		if err != nil {
			return nil, err
		}
		if slices.Contains(out, e) {
			return nil, fmt.Errorf("endpoint %s is listed twice", e)
		}
		out = append(out, e)
	}
	return out, nil
}

// parseEndpoint reads an endpoint URL. overridePath says the path is the
// API root (containerd's override_path): "/v2/PREFIX" is then a prefix;
// without it only no path or "/v2" is accepted.
func parseEndpoint(s string, overridePath bool) (Endpoint, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return Endpoint{}, fmt.Errorf("endpoint %q: %w", s, err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return Endpoint{}, fmt.Errorf("endpoint %q: the scheme must be https or http", s)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return Endpoint{}, fmt.Errorf("endpoint %q: only scheme, host and path are allowed", s)
	}
	host := strings.ToLower(u.Host)
	if err := checkHost(host); err != nil {
		return Endpoint{}, fmt.Errorf("endpoint %q: %w", s, err)
	}
	e := Endpoint{Scheme: u.Scheme, Host: host, Resolve: true}
	p := strings.TrimSuffix(u.Path, "/")
	switch {
	case p == "" || p == "/v2":
	case overridePath && strings.HasPrefix(p, "/v2/"):
		e.Prefix = strings.TrimPrefix(p, "/v2/")
		if _, err := name.NewRepository(host+"/"+e.Prefix+"/x", name.StrictValidation); err != nil {
			return Endpoint{}, fmt.Errorf("endpoint %q: %q is not a repository prefix", s, e.Prefix)
		}
	default:
		return Endpoint{}, fmt.Errorf(`endpoint %q: the path must be empty, "/v2" or "/v2/PREFIX"`, s)
	}
	return e, nil
}
