package policy

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/image"
)

// historyFacts builds facts for an image whose every history line added
// one layer of 1 MB, with the given environment.
func historyFacts(t testing.TB, env []string, lines ...string) *image.Facts {
	t.Helper()
	cfg := &v1.ConfigFile{OS: "linux", Architecture: "amd64", Config: v1.Config{Env: env}}
	m := &v1.Manifest{SchemaVersion: 2}
	for i, l := range lines {
		empty := strings.HasPrefix(l, "ENV ") || strings.Contains(l, "#(nop)  ENV ") || strings.HasPrefix(l, "CMD ")
		cfg.History = append(cfg.History, v1.History{CreatedBy: l, EmptyLayer: empty})
		if !empty {
			m.Layers = append(m.Layers, v1.Descriptor{Size: 1_000_000, Digest: v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%064x", i+1)}})
		}
	}
	f, err := image.FromParts(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.Reference = "example.test/app:1"
	return f
}

func ruleIDs(res Result) []string {
	var ids []string
	for _, f := range res.Findings {
		ids = append(ids, f.Rule)
	}
	slices.Sort(ids)
	return ids
}

// checkRules reports a difference between the rules a result found and
// want, in any order, with the findings' messages.
func checkRules(t testing.TB, res Result, want []string) {
	t.Helper()
	want = slices.Clone(want)
	slices.Sort(want)
	if diff := cmp.Diff(want, ruleIDs(res)); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
		for _, f := range res.Findings {
			t.Logf("%s: %s", f.Rule, f.Message)
		}
	}
}

// Real history lines, shortened only where they repeat.
const (
	temurinJDK       = `RUN /bin/sh -c set -eux;     ARCH="$(dpkg --print-architecture)";     case "${ARCH}" in        amd64)          ESUM='56f7';          BINARY_URL='https://github.com/adoptium/temurin21-binaries/releases/download/jdk-21.0.4%2B7/OpenJDK21U-jdk_x64_linux_hotspot_21.0.4_7.tar.gz';          ;;     esac;     savedAptMark="$(apt-mark showmanual)";     apt-get update;     apt-get install -y --no-install-recommends wget gnupg;     wget --progress=dot:giga -O /tmp/openjdk.tar.gz ${BINARY_URL};     mkdir -p "$JAVA_HOME";     tar --extract         --file /tmp/openjdk.tar.gz         --directory "$JAVA_HOME"         --strip-components 1         --no-same-owner     ;     apt-mark auto '.*' > /dev/null;     apt-mark manual $savedAptMark > /dev/null;     apt-get purge -y --auto-remove -o APT::AutoRemove::RecommendsImportant=false;     rm -rf /var/lib/apt/lists/*;     java -Xshare:dump; # buildkit`
	temurinJRE       = `RUN /bin/sh -c set -eux;     ARCH="$(dpkg --print-architecture)";     case "${ARCH}" in        amd64)          ESUM='8e1c';          BINARY_URL='https://github.com/adoptium/temurin21-binaries/releases/download/jdk-21.0.4%2B7/OpenJDK21U-jre_x64_linux_hotspot_21.0.4_7.tar.gz';          ;;     esac;     savedAptMark="$(apt-mark showmanual)";     apt-get update;     apt-get install -y --no-install-recommends wget gnupg;     wget --progress=dot:giga -O /tmp/openjdk.tar.gz ${BINARY_URL};     apt-mark auto '.*' > /dev/null;     apt-mark manual $savedAptMark > /dev/null;     apt-get purge -y --auto-remove -o APT::AutoRemove::RecommendsImportant=false;     rm -rf /var/lib/apt/lists/*;     java -Xshare:dump; # buildkit`
	temurinJDKVerify = `RUN /bin/sh -c set -eux;     echo "Verifying install ...";     fileEncoding="$(echo 'System.out.println(System.getProperty("file.encoding"))' | jshell -s -)"; [ "$fileEncoding" = 'UTF-8' ]; rm -rf ~/.java;     echo "javac --version"; javac --version;     echo "java --version"; java --version;     echo "Complete." # buildkit`
	temurinJREVerify = `RUN /bin/sh -c set -eux;     echo "Verifying install ...";     echo "java --version"; java --version;     echo "Complete." # buildkit`
	buildpackDeps    = "RUN /bin/sh -c set -ex; \tapt-get update; \tapt-get install -y --no-install-recommends \t\tautoconf \t\tautomake \t\tbzip2 \t\tdpkg-dev \t\tfile \t\tg++ \t\tgcc \t\timagemagick \t\tlibbz2-dev \t\tlibc6-dev \t\tlibtool \t\tmake \t\tpatch \t\tunzip \t\txz-utils \t\tzlib1g-dev \t; \tapt-get dist-clean # buildkit"
	httpdLegacy      = "/bin/sh -c set -x \t&& buildDeps=' \t\tbzip2 \t\tca-certificates \t\tgcc \t\tlibpcre++-dev \t\tlibssl-dev \t\tmake \t\twget \t' \t&& apt-get update \t&& apt-get install -y --no-install-recommends $buildDeps \t&& rm -r /var/lib/apt/lists/* \t\t&& wget -O httpd.tar.bz2 \"$HTTPD_BZ2_URL\" \t&& cd src \t\t&& ./configure \t\t--prefix=\"$HTTPD_PREFIX\" \t\t--enable-mods-shared=reallyall \t&& make -j\"$(nproc)\" \t&& make install \t\t&& cd .. \t&& rm -r src \t\t&& apt-get purge -y --auto-remove $buildDeps"
	redisSlim        = "RUN /bin/sh -c set -eux; \t\tsavedAptMark=\"$(apt-mark showmanual)\"; \tapt-get update; \tapt-get install -y --no-install-recommends \t\tca-certificates \t\twget \t\t\t\tdpkg-dev \t\tgcc \t\tlibc6-dev \t\tlibssl-dev \t\tmake \t; \t\twget -O redis.tar.gz \"$REDIS_DOWNLOAD_URL\"; \tmkdir -p /usr/src/redis; \ttar -xzf redis.tar.gz -C /usr/src/redis --strip-components=1; \tmake -C /usr/src/redis -j \"$(nproc)\" all; \tmake -C /usr/src/redis install; \trm -r /usr/src/redis; \t\tapt-mark auto '.*' > /dev/null; \t[ -z \"$savedAptMark\" ] || apt-mark manual $savedAptMark > /dev/null; \tfind /usr/local -type f -executable -exec ldd '{}' ';' \t\t| awk '/=>/ { so = $(NF-1); if (index(so, \"/usr/local/\") == 1) { next }; gsub(\"^/(usr/)?\", \"\", so); print so }' \t\t| sort -u \t\t| xargs -r dpkg-query --search \t\t| cut -d: -f1 \t\t| sort -u \t\t| xargs -r apt-mark manual \t; \tapt-get purge -y --auto-remove -o APT::AutoRemove::RecommendsImportant=false; \trm -rf /var/lib/apt/lists/*; \t\tredis-cli --version; \tredis-server --version # buildkit"
	alpineBuildDeps  = "RUN /bin/sh -c set -eux; \tapk add --no-cache --virtual .build-deps \t\tcoreutils \t\tdpkg-dev dpkg \t\tgcc \t\tlinux-headers \t\tmake \t\tmusl-dev \t\topenssl-dev \t; \twget -O redis.tar.gz \"$REDIS_DOWNLOAD_URL\"; \tmake -C /usr/src/redis -j \"$(nproc)\" all; \tmake -C /usr/src/redis install; \trunDeps=\"$( \t\tscanelf --needed --nobanner --format '%n#p' --recursive /usr/local \t\t\t| tr ',' '\\n' \t\t\t| sort -u \t\t\t| awk 'system(\"[ -e /usr/local/lib/\" $1 \" ]\") == 0 { next } { print \"so:\" $1 }' \t)\"; \tapk add --no-network --virtual .redis-rundeps $runDeps; \tapk del --no-network .build-deps; \tredis-server --version # buildkit"
)

func TestDetectors(t *testing.T) {
	tests := []struct {
		name  string
		env   []string
		lines []string
		want  []string
	}{
		// toolchain.jdk
		{name: "temurin JDK download", lines: []string{temurinJDK}, want: []string{RuleToolchainJDK}},
		{name: "temurin JRE download is not a JDK", lines: []string{temurinJRE}},
		{name: "javac --version means a JDK", lines: []string{temurinJDKVerify}, want: []string{RuleToolchainJDK}},
		{name: "java --version alone is a JRE", lines: []string{temurinJREVerify}},
		{name: "openjdk-17-jdk-headless package", lines: []string{"RUN /bin/sh -c apt-get update && apt-get install -y --no-install-recommends openjdk-17-jdk-headless && rm -rf /var/lib/apt/lists/* # buildkit"}, want: []string{RuleToolchainJDK}},
		{name: "openjdk-17-jre-headless package", lines: []string{"RUN /bin/sh -c apt-get update && apt-get install -y --no-install-recommends openjdk-17-jre-headless && rm -rf /var/lib/apt/lists/* # buildkit"}},
		{name: "rhel devel package", lines: []string{"/bin/sh -c microdnf install -y java-17-openjdk-devel && microdnf clean all"}, want: []string{RuleToolchainJDK}},
		{name: "rhel headless package", lines: []string{"/bin/sh -c microdnf install -y java-17-openjdk-headless && microdnf clean all"}},
		{name: "JAVA_VERSION alone is not a JDK", env: []string{"JAVA_VERSION=jdk-21.0.4+7", "JAVA_HOME=/opt/java/openjdk"}, lines: []string{"ENV JAVA_VERSION=jdk-21.0.4+7"}},
		{name: "jshell as default command only corroborates", lines: []string{`/bin/sh -c #(nop)  CMD ["jshell"]`}},
		{name: "jshell as default command with a vendor JDK package", lines: []string{
			"RUN /bin/sh -c apt-get update && apt-get -y --no-install-recommends install sapmachine-17-jdk=17.0.2 && rm -rf /var/lib/apt/lists/* # buildkit",
			`/bin/sh -c #(nop)  CMD ["jshell"]`}, want: []string{RuleToolchainJDK}},

		// toolchain.dotnet-sdk
		{name: "dotnet sdk env", env: []string{"DOTNET_VERSION=8.0.8", "DOTNET_SDK_VERSION=8.0.400"}, lines: []string{"ENV DOTNET_SDK_VERSION=8.0.400", "COPY /dotnet /usr/share/dotnet # buildkit"}, want: []string{RuleToolchainDotnetSDK}},
		{name: "aspnet runtime env", env: []string{"DOTNET_VERSION=8.0.8", "ASPNET_VERSION=8.0.8"}, lines: []string{"ENV ASPNET_VERSION=8.0.8", "COPY /dotnet /usr/share/dotnet # buildkit"}},
		{name: "dotnet-install.sh runtime only", lines: []string{"RUN /bin/sh -c curl -sSL https://dot.net/v1/dotnet-install.sh | bash /dev/stdin --channel 8.0 --runtime aspnetcore # buildkit"}},
		{name: "dotnet-install.sh sdk", lines: []string{"RUN /bin/sh -c curl -sSL https://dot.net/v1/dotnet-install.sh | bash /dev/stdin --channel 8.0 # buildkit"}, want: []string{RuleToolchainDotnetSDK}},

		// toolchain.cc
		{name: "buildpack-deps compilers stay", lines: []string{buildpackDeps}, want: []string{RuleToolchainCC}},
		{name: "httpd installs and purges buildDeps", lines: []string{httpdLegacy}},
		{name: "redis savedAptMark idiom", lines: []string{redisSlim}},
		{name: "alpine .build-deps deleted", lines: []string{alpineBuildDeps}},
		{name: "removed in a later step still ships, as bloat", lines: []string{
			"RUN /bin/sh -c apk add --no-cache --virtual .build-deps gcc musl-dev # buildkit",
			"RUN /bin/sh -c apk del .build-deps # buildkit"}, want: []string{RuleBloatRemovedLater}},
		{name: "runtime libs named like gcc", lines: []string{"RUN /bin/sh -c apt-get update && apt-get install -y --no-install-recommends gcc-12-base libgcc-s1 libstdc++6 && rm -rf /var/lib/apt/lists/* # buildkit"}},
		{name: "cmake and makedepend are not make", lines: []string{"RUN /bin/sh -c apt-get install -y cmake xutils-dev makedepend libmake-dev # buildkit"}},
		{name: "versioned gcc and yum gcc-c++", lines: []string{"/bin/sh -c yum install -y gcc-c++-8.5.0 gcc-12 && yum clean all"}, want: []string{RuleToolchainCC}},
		{name: "build-essential across a continuation", lines: []string{"RUN /bin/sh -c apt-get update && \\\n    apt-get install -y \\\n      build-essential \\\n && rm -rf /var/lib/apt/lists/* # buildkit"}, want: []string{RuleToolchainCC}},
		{name: "PHPIZE_DEPS expanded from env, kept", env: []string{"PHPIZE_DEPS=autoconf dpkg-dev file g++ gcc libc-dev make pkg-config re2c"},
			lines: []string{"RUN /bin/sh -c set -eux; \tapt-get update; \tapt-get install -y --no-install-recommends \t\t$PHPIZE_DEPS \t\tca-certificates \t\tcurl \t; \trm -rf /var/lib/apt/lists/* # buildkit"}, want: []string{RuleToolchainCC}},

		// build.make, build.cc
		{name: "make in a separate step", lines: []string{buildpackDeps, "RUN /bin/sh -c ./configure && make -j4 && make install # buildkit"}, want: []string{RuleBuildMake, RuleToolchainCC}},
		{name: "cmake --build is not make", lines: []string{"RUN /bin/sh -c cmake -S . -B build && cmake --build build # buildkit"}},
		{name: "make inside an echo string", lines: []string{`RUN /bin/sh -c echo "run make && make install to build" > /README # buildkit`}},
		{name: "gcc invocation", lines: []string{"RUN /bin/sh -c gcc -O2 -o /usr/local/bin/hello hello.c # buildkit"}, want: []string{RuleBuildCC}},

		// toolchain.go, build.go
		{name: "golang env", env: []string{"GOLANG_VERSION=1.22.5", "PATH=/usr/local/go/bin:/usr/bin"}, lines: []string{"ENV GOLANG_VERSION=1.22.5", "COPY /target/ / # buildkit"}, want: []string{RuleToolchainGo}},
		{name: "go tarball download", lines: []string{"RUN /bin/sh -c curl -fsSL https://go.dev/dl/go1.22.5.linux-amd64.tar.gz | tar -C /usr/local -xz # buildkit"}, want: []string{RuleToolchainGo}},
		{name: "go build in image", lines: []string{"RUN /bin/sh -c CGO_ENABLED=0 go build -trimpath -o /app ./cmd/app # buildkit"}, want: []string{RuleBuildGo}},
		{name: "go build with build args prefix", lines: []string{"|2 TARGETOS=linux TARGETARCH=amd64 /bin/sh -c GOOS=$TARGETOS GOARCH=$TARGETARCH go build -o /app ."}, want: []string{RuleBuildGo}},
		{name: "go build in su -c", lines: []string{`RUN /bin/sh -c su app -c "cd /src && go build ./..." # buildkit`}, want: []string{RuleBuildGo}},
		{name: "go version is no build", lines: []string{"RUN /bin/sh -c go version # buildkit"}},
		{name: "multi-stage copies binary and source", lines: []string{
			"ADD alpine-minirootfs-3.20.0-x86_64.tar.gz / # buildkit",
			"COPY /app/server . # buildkit", "COPY main.go . # buildkit"}},
		{name: "apk go package kept", lines: []string{"RUN /bin/sh -c apk add --no-cache go git # buildkit"}, want: []string{RuleToolchainGo}},
		{name: "apk go build-dep removed", lines: []string{"RUN /bin/sh -c apk add --no-cache --virtual .gosu-deps go git && go build -o /usr/local/bin/gosu . && apk del .gosu-deps # buildkit"}},

		// node
		{name: "node alpine runtime", env: []string{"NODE_VERSION=20.15.0", "NODE_ENV=production"}, lines: []string{
			"ENV NODE_VERSION=20.15.0", "COPY package.json package-lock.json ./ # buildkit", "RUN /bin/sh -c npm ci --omit=dev # buildkit", "COPY . . # buildkit"}},
		{name: "node single-stage build", env: []string{"NODE_VERSION=20.15.0"}, lines: []string{
			"ENV NODE_VERSION=20.15.0", "RUN /bin/sh -c npm ci # buildkit", "COPY . . # buildkit", "RUN /bin/sh -c npm run build # buildkit"},
			want: []string{RuleBuildNpm, RuleToolchainNodeBuild}},
		{name: "yarn build", lines: []string{"RUN /bin/sh -c yarn install --frozen-lockfile # buildkit", "RUN /bin/sh -c yarn build # buildkit"},
			want: []string{RuleBuildYarn, RuleToolchainNodeBuild}},
		{name: "npm --version is no build", lines: []string{"RUN /bin/sh -c node --version && npm --version && yarn --version # buildkit"}},

		// JVM and other builds
		{name: "mvn package", lines: []string{"RUN /bin/sh -c mvn -B -q clean package -DskipTests # buildkit"}, want: []string{RuleBuildMaven}},
		{name: "mvn --version", lines: []string{"RUN /bin/sh -c mvn --version # buildkit"}},
		{name: "gradlew bootJar", lines: []string{"RUN /bin/sh -c ./gradlew :app:bootJar --no-daemon # buildkit"}, want: []string{RuleBuildGradle}},
		{name: "javac compiling", lines: []string{"RUN /bin/sh -c javac -d out src/Main.java # buildkit"}, want: []string{RuleBuildJavac, RuleToolchainJDK}},
		{name: "cargo build", env: []string{"RUSTUP_HOME=/usr/local/rustup", "CARGO_HOME=/usr/local/cargo"},
			lines: []string{"RUN /bin/sh -c cargo build --release --locked # buildkit"}, want: []string{RuleBuildCargo, RuleToolchainRust}},
		{name: "dotnet publish", lines: []string{"RUN /bin/sh -c dotnet publish -c Release -o /app # buildkit"}, want: []string{RuleBuildDotnet}},
		{name: "maven and gradle downloads", lines: []string{
			"RUN /bin/sh -c curl -fsSL https://archive.apache.org/dist/maven/maven-3/3.9.8/binaries/apache-maven-3.9.8-bin.tar.gz | tar -xz -C /opt # buildkit",
			"RUN /bin/sh -c wget https://services.gradle.org/distributions/gradle-8.8-bin.zip && unzip gradle-8.8-bin.zip # buildkit"},
			want: []string{RuleToolchainGradle, RuleToolchainMaven}},

		// history shapes that are not findings
		{name: "no history", env: []string{"PATH=/usr/bin"}},
		{name: "bazel history", lines: []string{"bazel build ...", "bazel build ..."}},
	}
	def := Default()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := Evaluate(&def.Spec, historyFacts(t, tc.env, tc.lines...))
			checkRules(t, res, tc.want)
			wantVerdict := VerdictAllow
			if len(tc.want) > 0 {
				wantVerdict = VerdictDeny
			}
			if res.Verdict != wantVerdict {
				t.Errorf("verdict %s, want %s", res.Verdict, wantVerdict)
			}
		})
	}
}

func TestMissingHistoryIsANote(t *testing.T) {
	def := Default()
	for _, lines := range [][]string{nil, {"bazel build ...", "bazel build ..."}} {
		res := Evaluate(&def.Spec, historyFacts(t, []string{"PATH=/usr/bin"}, lines...))
		if res.Verdict != VerdictAllow || len(res.Notes) == 0 {
			t.Errorf("history %q: verdict %s, notes %q; want allow with a note", lines, res.Verdict, res.Notes)
		}
	}
}

func TestEvidence(t *testing.T) {
	def := Default()
	res := Evaluate(&def.Spec, historyFacts(t, nil, "ADD rootfs.tar.gz / # buildkit", temurinJDK, temurinJDKVerify))
	if len(res.Findings) != 1 {
		t.Fatalf("findings %+v, want one toolchain.jdk", res.Findings)
	}
	f := res.Findings[0]
	if f.Evidence.HistoryIndex == nil || *f.Evidence.HistoryIndex != 1 {
		t.Errorf("evidence points at %v, want the download step 1", f.Evidence.HistoryIndex)
	}
	if !strings.Contains(f.Evidence.Line, "OpenJDK21U-jdk_") || len(f.Evidence.Line) > 170 {
		t.Errorf("line %q (%d chars) should show the match in about 160 chars", f.Evidence.Line, len(f.Evidence.Line))
	}
	if f.Evidence.LayerBytes != 1_000_000 {
		t.Errorf("layer bytes %d, want 1000000", f.Evidence.LayerBytes)
	}
	if len(f.Related) != 1 || f.Related[0].HistoryIndex == nil || *f.Related[0].HistoryIndex != 2 {
		t.Errorf("related %+v, want the javac --version step 2", f.Related)
	}
	if !strings.Contains(f.Remedy, "-jre") {
		t.Errorf("remedy %q should point at a JRE", f.Remedy)
	}
	if strings.Contains(f.Message, "\n") || len(f.Message) > 200 {
		t.Errorf("message %q is not one short line", f.Message)
	}
}

// modeCases is what each mode makes of a violation: the finding's action
// and the verdict.
var modeCases = []struct {
	mode    v1alpha1.Mode
	action  Action
	verdict Verdict
}{
	{v1alpha1.ModeEnforce, ActionDeny, VerdictDeny},
	{v1alpha1.ModeWarn, ActionWarn, VerdictAllow},
	{v1alpha1.ModeAudit, ActionAudit, VerdictAllow},
}

func TestModes(t *testing.T) {
	_, f := loadFixture(t, "testdata/images/golang-1.24.4-bookworm.json")
	for _, tc := range modeCases {
		spec := Default().Spec
		spec.Mode = tc.mode
		res := Evaluate(&spec, f)
		if res.Verdict != tc.verdict || len(res.Findings) == 0 {
			t.Errorf("%s: verdict %s with %d findings, want %s", tc.mode, res.Verdict, len(res.Findings), tc.verdict)
		}
		for _, fd := range res.Findings {
			if fd.Action != tc.action {
				t.Errorf("%s: %s action %s, want %s", tc.mode, fd.Rule, fd.Action, tc.action)
			}
		}
	}
}

func TestRuleSelection(t *testing.T) {
	_, f := loadFixture(t, "testdata/images/golang-1.24.4-bookworm.json")
	tests := []struct {
		name        string
		deny, allow []string
		want        []string
	}{
		{name: "default", want: []string{RuleToolchainCC, RuleToolchainGo}},
		{name: "deny one", deny: []string{RuleToolchainGo}, want: []string{RuleToolchainGo}},
		{name: "allow one", allow: []string{RuleToolchainCC}, want: []string{RuleToolchainGo}},
		{name: "glob allow", deny: []string{"toolchain.*"}, allow: []string{"toolchain.*"}},
		{name: "build only", deny: []string{"build.*"}},
	}
	for _, tc := range tests {
		spec := Default().Spec
		spec.Toolchains = v1alpha1.ToolchainRules{Deny: tc.deny, Allow: tc.allow}
		if diff := cmp.Diff(tc.want, ruleIDs(Evaluate(&spec, f))); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestSizeBudget(t *testing.T) {
	_, f := loadFixture(t, "testdata/images/golang-1.24.4-bookworm.json")
	spec, err := Load([]byte("apiVersion: slimgate.dev/v1alpha1\nkind: SlimImagePolicy\nspec:\n  toolchains: {allow: [\"toolchain.*\"]}\n  sizeBudget: {maxCompressed: 300M, maxLayers: 5}\n"))
	if err != nil {
		t.Fatal(err)
	}
	res := Evaluate(&spec.Spec, f)
	want := []Finding{
		{Rule: RuleSizeCompressed, Evidence: Evidence{Measured: 308246971, Limit: 300_000_000}},
		{Rule: RuleSizeLayers, Evidence: Evidence{Measured: 7, Limit: 5}},
	}
	got := make([]Finding, 0, len(res.Findings))
	for _, fd := range res.Findings {
		got = append(got, Finding{Rule: fd.Rule, Evidence: fd.Evidence})
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("size findings (-want +got):\n%s", diff)
	}
	if res.Verdict != VerdictDeny {
		t.Errorf("verdict %s, want deny", res.Verdict)
	}
	spec.Spec.Toolchains.Allow = append(spec.Spec.Toolchains.Allow, "size.*")
	if res := Evaluate(&spec.Spec, f); len(res.Findings) != 0 {
		t.Errorf("allow size.* still finds %v", ruleIDs(res))
	}
}

// TestBloat checks the attribution against sizes worked out by hand from
// the golang:1.24.4-bookworm manifest: the compiler layer (history #3,
// 92355229 bytes) and the Go toolchain layer (history #8, 78981811 bytes)
// of 308246971 bytes in all.
func TestBloat(t *testing.T) {
	_, f := loadFixture(t, "testdata/images/golang-1.24.4-bookworm.json")
	res := Evaluate(nil, f)
	const toolchain, total = 92355229 + 78981811, 308246971
	want := &Bloat{ToolchainBytes: toolchain, TotalBytes: total, Percent: 100 * float64(toolchain) / total, Known: true}
	if diff := cmp.Diff(want, res.Bloat); diff != "" {
		t.Errorf("bloat (-want +got):\n%s", diff)
	}
	if got, want := res.Bloat.String(), "toolchain layers: 171 MB of 308 MB (56%)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if !strings.Contains(res.Summary(), "toolchain.go") {
		t.Errorf("summary %q lacks the rule", res.Summary())
	}

	// With one layer fewer the history no longer pairs: no guessing.
	f.Layers = f.Layers[:len(f.Layers)-1]
	cfgLess := *f
	for i := range cfgLess.History {
		cfgLess.History[i].Layer = image.NoLayer
	}
	cfgLess.HistoryMapped = false
	res = Evaluate(nil, &cfgLess)
	if res.Bloat == nil || res.Bloat.Known || res.Bloat.ToolchainBytes != 0 {
		t.Errorf("unmapped history: bloat %+v, want Known=false", res.Bloat)
	}
}

// TestInspectionFailed: an invalid image is a finding whatever
// onInspectionError says, with the mode's action; an availability failure
// is a finding only with onInspectionError Deny, else a note.
func TestInspectionFailed(t *testing.T) {
	modes := []v1alpha1.Mode{v1alpha1.ModeEnforce, v1alpha1.ModeWarn, v1alpha1.ModeAudit}
	for _, invalid := range []bool{true, false} {
		for _, onError := range []v1alpha1.InspectionErrorAction{v1alpha1.InspectionErrorAllow, v1alpha1.InspectionErrorDeny} {
			for _, mode := range modes {
				name := fmt.Sprintf("invalid=%v/%s/%s", invalid, onError, mode)
				spec := v1alpha1.SlimImagePolicySpec{Mode: mode, OnInspectionError: onError}
				res := InspectionFailed(&spec, "ghcr.io/org/app:1", Failure{Reason: "Timeout", Detail: "manifest not fetched in 3s", Invalid: invalid})
				wantFinding := invalid || onError == v1alpha1.InspectionErrorDeny
				wantVerdict := VerdictAllow
				if wantFinding && mode == v1alpha1.ModeEnforce {
					wantVerdict = VerdictDeny
				}
				if res.Verdict != wantVerdict {
					t.Errorf("%s: verdict %s, want %s", name, res.Verdict, wantVerdict)
				}
				if !wantFinding {
					if len(res.Findings) != 0 || len(res.Notes) != 1 || !strings.Contains(res.Notes[0], "Timeout") {
						t.Errorf("%s: %+v, want only a note naming the reason", name, res)
					}
					continue
				}
				rule := RuleInspectionFailed
				if invalid {
					rule = RuleInspectionInvalid
				}
				want := Finding{Rule: rule, Action: ActionFor(mode), Evidence: Evidence{Reason: "Timeout"}}
				if len(res.Findings) != 1 || len(res.Notes) != 0 {
					t.Fatalf("%s: findings %+v, notes %q; want one finding", name, res.Findings, res.Notes)
				}
				got := res.Findings[0]
				if diff := cmp.Diff(want, Finding{Rule: got.Rule, Action: got.Action, Evidence: got.Evidence}); diff != "" || got.Remedy == "" ||
					!strings.Contains(got.Message, "not inspected (Timeout): manifest not fetched in 3s") {
					t.Errorf("%s: finding %q (-want +got):\n%s", name, got.Message, diff)
				}
			}
		}
	}
}

func TestShorten(t *testing.T) {
	long := strings.Repeat("apt-get install foo; ", 30) + "go build -o /app . ;" + strings.Repeat(" echo done;", 30)
	got := shorten(long, "go build", 160)
	if !strings.Contains(got, "go build") || len(got) > 160 || !strings.HasPrefix(got, "…") || !strings.HasSuffix(got, "…") {
		t.Errorf("shorten = %q (%d)", got, len(got))
	}
	if got := shorten("a \t\t b", "", 160); got != "a b" {
		t.Errorf("whitespace not collapsed: %q", got)
	}
	if got := wordIndex("cmake make", "make"); got != 6 {
		t.Errorf("wordIndex found make inside cmake: %d", got)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{32: "32 B", 10752: "10.8 kB", 78981811: "79.0 MB", 612_000_000: "612 MB", 1_500_000_000: "1.5 GB"} {
		if got := HumanBytes(n); got != want {
			t.Errorf("HumanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestParseInstruction(t *testing.T) {
	tests := []struct {
		line string
		want instruction
	}{
		{`/bin/sh -c #(nop)  ENV GOLANG_VERSION=1.22.5`, instruction{keyword: "ENV", args: "GOLANG_VERSION=1.22.5"}},
		{`/bin/sh -c #(nop) COPY file:abc in /usr/local/bin/ `, instruction{keyword: "COPY", args: "file:abc in /usr/local/bin/"}},
		{`/bin/sh -c make install`, instruction{keyword: "RUN", args: "make install"}},
		{`RUN /bin/sh -c make install # buildkit`, instruction{keyword: "RUN", args: "make install"}},
		{`RUN /bin/bash -o pipefail -c make install # buildkit`, instruction{keyword: "RUN", args: "make install"}},
		{`|2 A=1 B=2 /bin/sh -c make`, instruction{keyword: "RUN", args: "make", buildArgs: map[string]string{"A": "1", "B": "2"}}},
		{`RUN |1 V=3 /bin/sh -c make # buildkit`, instruction{keyword: "RUN", args: "make", buildArgs: map[string]string{"V": "3"}}},
		{`COPY /app/bin . # buildkit`, instruction{keyword: "COPY", args: "/app/bin ."}},
		{`bazel build ...`, instruction{args: "bazel build ..."}},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, parseInstruction(tc.line), cmp.AllowUnexported(instruction{})); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tc.line, diff)
		}
	}
}

func BenchmarkEvaluate(b *testing.B) {
	_, f := loadFixture(b, "testdata/images/golang-1.24.4-bookworm.json")
	spec := Default().Spec
	b.ReportAllocs()
	for b.Loop() {
		Evaluate(&spec, f)
	}
}

func TestCorrettoBuildArg(t *testing.T) {
	def := Default()
	line := "|1 version=17.0.12.7-1 /bin/sh -c set -eux && curl -fL -o /etc/yum.repos.d/corretto.repo https://yum.corretto.aws/corretto.repo && yum install -y java-17-amazon-corretto-devel-$version && yum install -y fontconfig && yum clean all"
	res := Evaluate(&def.Spec, historyFacts(t, nil, line))
	if diff := cmp.Diff([]string{RuleToolchainJDK}, ruleIDs(res)); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
	res = Evaluate(&def.Spec, historyFacts(t, nil, "RUN /bin/sh -c apk add --no-cache amazon-corretto-17-jre # buildkit"))
	if len(res.Findings) != 0 {
		t.Errorf("corretto JRE flagged: %v", ruleIDs(res))
	}
}

// TestNodeBuildPrunedInStep checks that a node build is undone only by
// dropping the devDependencies in the step that installed them.
func TestNodeBuildPrunedInStep(t *testing.T) {
	def := Default()
	tests := []struct {
		script string
		want   bool
	}{
		{"npm ci && npm run build", true},
		{"npm ci && npm run build && npm prune --production", false},
		{"npm ci && npm run build && npm prune --omit=dev", false},
		{"npm ci && npm run build && rm -rf ./node_modules/", false},
		{"yarn install && yarn build && yarn install --production", false},
		// A cache folder inside node_modules is not the dependencies.
		{"npm ci && npm run build && rm -rf node_modules/.cache", true},
		// A package purge leaves the devDependencies in node_modules.
		{"apk add --no-cache --virtual .gyp python3 make g++ && npm ci && npm run build && apk del .gyp", true},
		// A prune before the install removes nothing the build used.
		{"rm -rf node_modules && npm ci && npm run build", true},
	}
	for _, tc := range tests {
		res := Evaluate(&def.Spec, historyFacts(t, nil, "COPY . . # buildkit", buildkit(tc.script)))
		if got := slices.Contains(ruleIDs(res), RuleToolchainNodeBuild); got != tc.want {
			t.Errorf("%q: %s found %v, want %v; findings %v", tc.script, RuleToolchainNodeBuild, got, tc.want, ruleIDs(res))
		}
	}
}
