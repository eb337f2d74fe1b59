package policy

import "testing"

// TestStepLifecycle checks that a toolchain fetched into a folder the step
// deletes again leaves nothing behind, and that one moved, copied or
// installed out of that folder, or never deleted, still ships.
func TestStepLifecycle(t *testing.T) {
	run := func(script string) string { return "RUN /bin/sh -c " + script + " # buildkit" }
	const goURL = "https://go.dev/dl/go1.22.5.linux-amd64.tar.gz"
	tests := []struct {
		name  string
		lines []string
		want  []string
	}{
		// Left behind: nothing.
		{name: "rustup into a /tmp folder deleted at the end", lines: []string{run(`set -eux; apt-get update; apt-get install -y --no-install-recommends gcc libc6-dev make wget; ` +
			`url='https://static.rust-lang.org/rustup/archive/1.28.2/x86_64-unknown-linux-gnu/rustup-init'; mkdir -p /tmp/rs; wget -O /tmp/rs/rustup-init "$url"; chmod +x /tmp/rs/rustup-init; ` +
			`export RUSTUP_HOME='/tmp/rs/rustup' CARGO_HOME='/tmp/rs/cargo'; export PATH="$CARGO_HOME/bin:$PATH"; /tmp/rs/rustup-init -y --no-modify-path --profile minimal; rustc --version; ` +
			`./configure --enable-yjit; make -j4; make install; rm -rf /tmp/rs; apt-get purge -y --auto-remove gcc libc6-dev make wget`)}},
		{name: "rustup piped to sh with its homes in a mktemp folder", lines: []string{run(`d="$(mktemp -d)"; export RUSTUP_HOME="$d/rustup" CARGO_HOME="$d/cargo"; ` +
			`curl -sSf https://sh.rustup.rs | sh -s -- -y; "$d/cargo/bin/cargo" build --release; cp target/release/app /usr/local/bin/; rm -rf "$d"`)}},
		{name: "go unpacked into an unquoted mktemp folder, used and deleted", lines: []string{run(`dir=$(mktemp -d); cd "$dir"; curl -fsSLO ` + goURL +
			`; tar -xzf go1.22.5.linux-amd64.tar.gz; ./go/bin/go build -o /usr/local/bin/app /src; cd /; rm -rf "$dir"`)}},
		{name: "go in /tmp, contents deleted with a glob", lines: []string{run(`cd /tmp && wget -q ` + goURL + ` && tar -xzf go1.22.5.linux-amd64.tar.gz && /tmp/go/bin/go version && rm -rf /tmp/*`)}},
		{name: "make kept after the compiler is purged", lines: []string{run(`apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev make zlib1g-dev && ` +
			`savedPackages="make zlib1g-dev" && ./Configure -des && make -j4 && make install && apt-mark auto '.*' > /dev/null && apt-mark manual $savedPackages && apt-get purge -y --auto-remove`)}},

		// Left behind: the toolchain.
		{name: "rustup homes outside the deleted folder", lines: []string{run(`mkdir -p /tmp/rs; wget -O /tmp/rs/rustup-init https://static.rust-lang.org/rustup/dist/x86_64-unknown-linux-gnu/rustup-init; ` +
			`chmod +x /tmp/rs/rustup-init; RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo /tmp/rs/rustup-init -y; rm -rf /tmp/rs`)}, want: []string{RuleToolchainRust}},
		{name: "rustup homes unknown", lines: []string{run(`wget -O /tmp/rustup-init https://static.rust-lang.org/rustup/dist/x86_64-unknown-linux-gnu/rustup-init; chmod +x /tmp/rustup-init; /tmp/rustup-init -y; rm /tmp/rustup-init`)},
			want: []string{RuleToolchainRust}},
		{name: "go unpacked in /tmp but moved out", lines: []string{run(`cd /tmp && wget -q ` + goURL + ` && tar -xzf go1.22.5.linux-amd64.tar.gz && mv /tmp/go /usr/local/go && rm -rf /tmp/*`)},
			want: []string{RuleToolchainGo}},
		{name: "archive deleted, its unpacked folder kept", lines: []string{run(`curl -fsSL -o /tmp/go.tgz ` + goURL + ` && tar -C /usr/local -xzf /tmp/go.tgz && rm /tmp/go.tgz`)},
			want: []string{RuleToolchainGo}},
		{name: "unpacked into /tmp and never deleted", lines: []string{run(`cd /tmp && wget -q ` + goURL + ` && tar -xzf go1.22.5.linux-amd64.tar.gz && rm go1.22.5.linux-amd64.tar.gz`)},
			want: []string{RuleToolchainGo}},
		{name: "installed from inside the unpacked folder", lines: []string{run(`cd /tmp && curl -fsSLO ` + goURL + ` && tar -xzf go1.22.5.linux-amd64.tar.gz && cd go/src && ./make.bash && make install && cd / && rm -rf /tmp/*`)},
			want: []string{RuleBuildMake, RuleToolchainGo}},
		{name: "a deleted file of another name covers nothing", lines: []string{run(`cd /tmp && wget -q ` + goURL + ` && tar -xzf go1.22.5.linux-amd64.tar.gz && rm -rf /tmp/*.rds`)},
			want: []string{RuleToolchainGo}},
		{name: "piped into tar in a kept folder", lines: []string{run(`curl -fsSL ` + goURL + ` | tar -C /usr/local -xz`)}, want: []string{RuleToolchainGo}},
		{name: "a variable the reader does not know", lines: []string{run(`curl -fsSL -o "$DEST/go.tgz" ` + goURL + ` && rm -rf /tmp/x`)}, want: []string{RuleToolchainGo}},
		{name: "make kept with the compiler", lines: []string{run(`apt-get install -y gcc make && make && apt-get purge -y zlib1g-dev`)},
			want: []string{RuleBuildMake, RuleToolchainCC}},
	}
	def := Default()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := Evaluate(&def.Spec, historyFacts(t, nil, tc.lines...))
			checkRules(t, res, tc.want)
		})
	}
}

// TestRemovedLater checks that a toolchain installed in one layer and
// removed in a later one is reported as bloat.removed-later, not as a
// toolchain present, and that a removal a later step cannot be credited
// with keeps the toolchain.
func TestRemovedLater(t *testing.T) {
	run := func(script string) string { return "RUN /bin/sh -c " + script + " # buildkit" }
	tests := []struct {
		name  string
		env   []string
		lines []string
		want  []string
	}{
		{name: "compiler purged by name in a later step", lines: []string{
			run("apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev"),
			run("apt-get purge -y --auto-remove gcc libc6-dev")}, want: []string{RuleBloatRemovedLater}},
		{name: "go folder copied in, deleted later; its ENV no longer counts", env: []string{"GOLANG_VERSION=1.22.5", "PATH=/usr/local/go/bin:/usr/bin:/bin"}, lines: []string{
			"ENV GOLANG_VERSION=1.22.5",
			"COPY /usr/local/go /usr/local/go # buildkit",
			run("rm -rf /usr/local/go")}, want: []string{RuleBloatRemovedLater}},
		{name: "go unpacked in one step, deleted in the next", lines: []string{
			run("curl -fsSL https://go.dev/dl/go1.22.5.linux-amd64.tar.gz | tar -C /usr/local -xz"),
			run("rm -rf /usr/local/go /tmp/*")}, want: []string{RuleBloatRemovedLater}},
		{name: "deleting a part of it removes nothing", lines: []string{
			run("curl -fsSL https://go.dev/dl/go1.22.5.linux-amd64.tar.gz | tar -C /usr/local -xz"),
			run("rm -rf /usr/local/go/pkg/tool")}, want: []string{RuleToolchainGo}},
		{name: "a later savedAptMark purge keeps the earlier compilers", lines: []string{
			run("apt-get update && apt-get install -y gcc make"),
			run(`savedAptMark="$(apt-mark showmanual)"; apt-get install -y libssl-dev; make; apt-mark auto '.*' > /dev/null; apt-mark manual $savedAptMark; apt-get purge -y --auto-remove`)},
			want: []string{RuleToolchainCC}},
		{name: "reinstalled after the removal: both", lines: []string{
			run("apk add --no-cache --virtual .build-deps gcc musl-dev"),
			run("apk del .build-deps"),
			run("apk add --no-cache build-base cmake")}, want: []string{RuleBloatRemovedLater, RuleToolchainCC}},
		{name: "a JDK package file installed by path", lines: []string{
			run("curl -fsSLO https://example.org/pool/openjdk-17-jdk-headless_17.0.2+8-1_amd64.deb && dpkg -i openjdk-17-jdk-headless_17.0.2+8-1_amd64.deb && rm -f *.deb")},
			want: []string{RuleToolchainJDK}},
		{name: "a JRE package file installed by path", lines: []string{
			run("curl -fsSLO https://example.org/pool/openjdk-17-jre-headless_17.0.2+8-1_amd64.deb && dpkg -i openjdk-17-jre-headless_17.0.2+8-1_amd64.deb && rm -f *.deb")}},
	}
	def := Default()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkRules(t, Evaluate(&def.Spec, historyFacts(t, tc.env, tc.lines...)), tc.want)
		})
	}
}
