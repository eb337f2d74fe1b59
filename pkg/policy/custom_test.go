package policy

import (
	"fmt"
	"strings"
	"testing"
)

// acmeSDK is a custom toolchain as a platform team would declare it.
const acmeSDK = header + `spec:
  toolchains:
    custom:
      - id: toolchain.acme-sdk
        title: ACME SDK
        description: the in-house ACME compiler image
        remedy: "build with acme-sdk:{version} AS builder, run on acme-runtime:{version}"
        version: {env: [ACME_VERSION], parts: 1, fallback: "4"}
        signals:
          packages:
            - pattern: 'acme-sdk-\d+'
          downloads:
            - pattern: 'acme-sdk-[\d.]+-linux\.tar\.gz'
          env:
            - key: ACME_SDK_HOME
          labels:
            - key: com.acme.image.kind
              value: '^sdk$'
`

// TestCustomToolchain: a toolchain declared in spec.toolchains.custom is
// found like a catalog entry, named by deny and allow, and reported with
// its own title, remedy and version.
func TestCustomToolchain(t *testing.T) {
	p, err := Load([]byte(acmeSDK))
	if err != nil {
		t.Fatal(err)
	}
	run := func(s string) string { return "RUN /bin/sh -c " + s + " # buildkit" }
	tests := []struct {
		name   string
		env    []string
		labels map[string]string
		lines  []string
		want   []string
	}{
		{name: "package", lines: []string{run("apt-get install -y acme-sdk-4")}, want: []string{"toolchain.acme-sdk"}},
		{name: "download", lines: []string{run("curl -fsSL https://dl.acme.example/acme-sdk-4.2.0-linux.tar.gz | tar -C /opt -xz")}, want: []string{"toolchain.acme-sdk"}},
		{name: "download into /tmp, deleted", lines: []string{run("cd /tmp && curl -fsSLO https://dl.acme.example/acme-sdk-4.2.0-linux.tar.gz && tar -xzf acme-sdk-4.2.0-linux.tar.gz && ./acme-sdk/bin/acmec -o /app main.acme && rm -rf /tmp/*")}},
		{name: "env", env: []string{"ACME_SDK_HOME=/opt/acme"}, want: []string{"toolchain.acme-sdk"}},
		{name: "label", labels: map[string]string{"com.acme.image.kind": "sdk"}, want: []string{"toolchain.acme-sdk"}},
		{name: "runtime package", lines: []string{run("apt-get install -y acme-runtime-4")}},
		{name: "runtime label", labels: map[string]string{"com.acme.image.kind": "runtime"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := historyFacts(t, append([]string{"ACME_VERSION=4.2.0"}, tc.env...), tc.lines...)
			f.Labels = tc.labels
			res := Evaluate(&p.Spec, f)
			checkRules(t, res, tc.want)
			for _, fd := range res.Findings {
				if !strings.HasPrefix(fd.Message, "ACME SDK: ") || fd.Remedy != "build with acme-sdk:4 AS builder, run on acme-runtime:4" {
					t.Errorf("message %q, remedy %q", fd.Message, fd.Remedy)
				}
			}
		})
	}

	// deny and allow name custom ids; the built-in catalog is unchanged.
	spec := p.Spec.DeepCopy()
	spec.Toolchains.Deny = []string{"toolchain.acme-sdk"}
	f := historyFacts(t, nil, run("apt-get install -y acme-sdk-4 golang-go"))
	checkRules(t, Evaluate(spec, f), []string{"toolchain.acme-sdk"})
	spec.Toolchains.Deny = nil
	spec.Toolchains.Allow = []string{"toolchain.acme-*"}
	checkRules(t, Evaluate(spec, f), []string{RuleToolchainGo})
	if errs := Validate(spec); len(errs) > 0 {
		t.Errorf("a glob naming a custom id: %v", errs)
	}
	if strings.Contains(fmt.Sprint(ruleIDsOf(Rules())), "acme") {
		t.Errorf("Rules() reports custom entries: %v", catalogIDs())
	}
}

// TestCustomToolchainInvalid: custom entries are loaded strictly and
// checked like the catalog, with the field path of every problem.
func TestCustomToolchainInvalid(t *testing.T) {
	entry := func(body string) string {
		return header + "spec:\n  toolchains:\n    custom:\n      - id: toolchain.acme\n        title: ACME\n        remedy: use the runtime\n" + body
	}
	tests := []struct {
		name, doc, want string
	}{
		{"unknown field", entry("        signals: {env: [{key: X}]}\n        weight: weak\n"), "weight"},
		{"unknown signal kind", entry("        signals: {files: [{path: /x}]}\n"), "files"},
		{"no signals", entry("        signals: {}\n"), "spec.toolchains.custom[0].signals: Required value"},
		{"a build id", header + "spec:\n  toolchains:\n    custom:\n      - {id: build.acme, title: A, remedy: r, signals: {env: [{key: X}]}}\n", "spec.toolchains.custom[0].id"},
		{"a catalog id", header + "spec:\n  toolchains:\n    custom:\n      - {id: toolchain.jdk, title: A, remedy: r, signals: {env: [{key: X}]}}\n", "Duplicate value: \"toolchain.jdk\""},
		{"pattern without a literal", entry("        signals: {downloads: [{pattern: '.*\\.zip|x'}]}\n"), "literal of at least 3"},
		{"requires an unknown rule", entry("        requires: [toolchain.nope]\n        signals: {env: [{key: X}]}\n"), "spec.toolchains.custom[0].requires[0]"},
		{"deny names an undeclared id", header + "spec:\n  toolchains:\n    deny: [toolchain.acme]\n", "spec.toolchains.deny[0]"},
		{"title too long", strings.Replace(entry("        signals: {env: [{key: X}]}\n"), "title: ACME", "title: "+strings.Repeat("A", 65), 1), "spec.toolchains.custom[0].title: Too long"},
	}
	for _, tc := range tests {
		_, err := Load([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	var many strings.Builder
	many.WriteString(header + "spec:\n  toolchains:\n    custom:\n")
	for i := range 33 {
		fmt.Fprintf(&many, "      - {id: toolchain.x%d, title: X, remedy: r, signals: {env: [{key: X%d}]}}\n", i, i)
	}
	if _, err := Load([]byte(many.String())); err == nil || !strings.Contains(err.Error(), "spec.toolchains.custom: Too many") {
		t.Errorf("33 custom entries: %v", err)
	}
}
