// Package mirrors reads the registry mirror configuration of a cluster's
// container runtime: for an upstream registry host, the ordered endpoints
// the nodes pull its images from, and whether the upstream itself is tried
// after them. The semantics are containerd's hosts.toml: mirrors in order,
// then the upstream unless fallback is off.
//
// Two sources give one Table: a YAML file (Parse, Load), the shape of the
// webhook's --registry-mirrors flag and the chart's registryMirrors value,
// and containerd's own hosts directory, DIR/<host>/hosts.toml (LoadDir).
// Both are bounded (hosts, endpoints per host, bytes read) and strict: an
// unknown key, or a setting slimgate cannot honour as the node does, is an
// error, never silently dropped.
package mirrors
