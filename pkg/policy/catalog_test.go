package policy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"sigs.k8s.io/yaml"
)

// testdataConfig reads the image config of a testdata file ("images/x" or
// "corpus/y").
func testdataConfig(t testing.TB, file string) v1.ConfigFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", file+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var fx struct {
		Config v1.ConfigFile `json:"config"`
	}
	if err := json.Unmarshal(data, &fx); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return fx.Config
}

// line reads history entry index of a testdata file, checking it holds
// want: the catalog's examples are real history lines, not lines written
// for the test.
func line(t testing.TB, file string, index int, want string) string {
	t.Helper()
	h := testdataConfig(t, file).History
	if index >= len(h) || !strings.Contains(h[index].CreatedBy, want) {
		t.Fatalf("%s #%d does not hold %q", file, index, want)
	}
	return h[index].CreatedBy
}

// cfgEnv and cfgLabels read the env and labels of a testdata file: for
// images whose history says nothing (S2I builders, buildpacks stacks).
func cfgEnv(t testing.TB, file string) []string { return testdataConfig(t, file).Config.Env }

func cfgLabels(t testing.TB, file string) map[string]string {
	return testdataConfig(t, file).Config.Labels
}

// buildkit renders a Dockerfile RUN line as BuildKit records it.
func buildkit(script string) string { return "RUN /bin/sh -c " + script + " # buildkit" }

// signalCase is one example of a catalog entry: an image (history lines,
// env, labels) in which the entry must be found (fires) or not.
type signalCase struct {
	rule   string
	name   string
	env    []string
	labels map[string]string
	lines  []string
	fires  bool
}

// Corpus files the catalog's examples read often.
const (
	golangDocs    = "corpus/golang-docs-app-on-1.24.4-bookworm"
	springDevEnvs = "corpus/awesome-compose-spring-postgres-backend-dev-envs"
	welcomeFirst  = "corpus/welcome-to-docker-initial-node19-alpine"
	welcomeFixed  = "corpus/welcome-to-docker-node18-alpine"
	mongoJan      = "corpus/mongo-express-1.0.2-20-alpine3.19-2024-01"
	mongoMar      = "corpus/mongo-express-1.0.2-20-alpine3.19"
)

// catalogCases holds, for every entry of the catalog, at least one
// example that must fire it and one near miss that must not, each taken
// from a testdata image (line, cfgEnv, cfgLabels). A few more are
// Dockerfile lines as BuildKit renders them (buildkit) or env written
// here; TestCatalogSignals judges them too but does not count them as
// an entry's real examples.
func catalogCases(t testing.TB) []signalCase {
	return []signalCase{
		{rule: RuleToolchainGo, name: "golang image env and PATH", fires: true,
			env:   []string{"GOLANG_VERSION=1.24.4", "GOTOOLCHAIN=local", "GOPATH=/go", "PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			lines: []string{line(t, "images/golang-1.24.4-bookworm", 8, "COPY /target/ /")}},
		{rule: RuleToolchainGo, name: "GODEBUG of a Go binary is no toolchain",
			env: []string{"GODEBUG=x509ignoreCN=0,madvdontneed=1", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}},
		{rule: RuleToolchainGo, name: "a Go binary and its source copied from a builder stage",
			lines: []string{line(t, "images/k8s-debug-bridge-alpine-multistage", 4, "COPY /app/k8s-debug-bridge"), line(t, "images/k8s-debug-bridge-alpine-multistage", 5, "k8s-debug-bridge.go")}},

		{rule: RuleToolchainJDK, name: "temurin JDK tarball", fires: true,
			lines: []string{line(t, "corpus/eclipse-temurin-21.0.12.1-jdk-alpine", 7, "OpenJDK21U-jdk_")}},
		{rule: RuleToolchainJDK, name: "temurin JRE tarball",
			lines: []string{line(t, "corpus/eclipse-temurin-21.0.12.1-jre-alpine", 7, "OpenJDK21U-jre_")}},

		{rule: RuleToolchainMaven, name: "MAVEN_HOME and the maven folder copied", fires: true,
			lines: []string{line(t, "images/maven-3-eclipse-temurin-26", 20, "MAVEN_HOME"), line(t, "images/maven-3-eclipse-temurin-26", 21, "/usr/share/maven")}},
		{rule: RuleToolchainMaven, name: "a label naming the docker-maven project",
			lines: []string{line(t, "images/maven-3-eclipse-temurin-26", 17, "docker-maven")}},

		{rule: RuleToolchainGradle, name: "gradle distribution download", fires: true,
			lines: []string{line(t, "corpus/gradle-9.7.0-jdk25-ubuntu", 25, "Downloading Gradle")}},
		{rule: RuleToolchainGradle, name: "a gradle user and its cache volume",
			lines: []string{line(t, "corpus/gradle-9.7.0-jdk25-ubuntu", 19, "gradle"), line(t, "corpus/gradle-9.7.0-jdk25-ubuntu", 20, "/home/gradle/.gradle")}},

		{rule: RuleToolchainRust, name: "rustup-init into /usr/local", fires: true,
			lines: []string{line(t, "images/rust-1.98.0", 6, "rustup-init")}},
		{rule: RuleToolchainRust, name: "rustup into /tmp, deleted in the step (ruby:slim)",
			lines: []string{line(t, "corpus/ruby-4.0.7-slim-trixie", 7, "rm -rf /tmp/rust")}},

		{rule: RuleToolchainDotnetSDK, name: "DOTNET_SDK_VERSION", fires: true,
			lines: []string{line(t, "images/dotnet-sdk-10.0.400-noble", 8, "DOTNET_SDK_VERSION"), line(t, "images/dotnet-sdk-10.0.400-noble", 10, "COPY /dotnet")}},
		{rule: RuleToolchainDotnetSDK, name: "the aspnet runtime",
			lines: []string{line(t, "images/dotnet-aspnet-10.0.11-noble", 3, "DOTNET_VERSION"), line(t, "images/dotnet-aspnet-10.0.11-noble", 4, "COPY /dotnet")}},

		{rule: RuleToolchainCC, name: "buildpack-deps compilers", fires: true,
			lines: []string{line(t, "images/buildpack-deps-trixie", 3, "gcc")}},
		{rule: RuleToolchainCC, name: "python:slim builds and purges", lines: []string{line(t, "images/python-3.14.7", 8, "apt-mark auto")}},
		{rule: RuleToolchainCC, name: "perl:slim keeps make only", lines: []string{line(t, "corpus/perl-5.44.0-slim-trixie", 2, "savedPackages")}},

		{rule: RuleToolchainNodeBuild, name: "npm install then npm run build (welcome-to-docker, first version)", fires: true,
			lines: []string{line(t, welcomeFirst, 3, "npm install && npm install -g serve"), line(t, welcomeFirst, 4, "COPY . ./"), line(t, welcomeFirst, 5, "npm run build")}},
		{rule: RuleToolchainNodeBuild, name: "yarn install and yarn build, only git purged (mongo-express, January 2024)", fires: true,
			lines: []string{line(t, mongoJan, 2, "yarn build;")}},
		{rule: RuleToolchainNodeBuild, name: "install, build and rm node_modules in one step (welcome-to-docker)",
			lines: []string{line(t, welcomeFixed, 4, "rm -fr node_modules")}},
		{rule: RuleToolchainNodeBuild, name: "build, then the production prune in the step (mongo-express, March 2024)",
			lines: []string{line(t, mongoMar, 2, "yarn workspaces focus --production")}},
		{rule: RuleToolchainNodeBuild, name: "production install only (getting-started-app)",
			lines: []string{line(t, "corpus/getting-started-app-node18-alpine", 1, "COPY . ."), line(t, "corpus/getting-started-app-node18-alpine", 2, "yarn install --production")}},

		{rule: RuleToolchainComposer, name: "composer installer", fires: true,
			lines: []string{line(t, "images/composer-1.7.2-php7.2-alpine", 27, "installer")}},
		{rule: RuleToolchainComposer, name: "a php extension build in the composer image",
			lines: []string{line(t, "images/composer-1.7.2-php7.2-alpine", 23, "docker-php-ext-install zip")}},

		// Classes of misses: vendor packages, package files installed by
		// path, metapackages, builder images known by metadata.
		{rule: RuleToolchainGo, name: "go-toolset software collection", fires: true,
			lines: []string{line(t, "corpus/go-toolset-7-rhel7-s2i", 1, `INSTALL_PKGS="go-toolset-7"`)}},
		{rule: RuleToolchainJDK, name: "corretto -devel RPM files installed by path", fires: true,
			lines: []string{line(t, "corpus/amazoncorretto-21.0.12-al2023", 4, "${CORRETO_TEMP}/*.rpm")}},
		{rule: RuleToolchainJDK, name: "corretto headless RPM files installed by path",
			lines: []string{line(t, "corpus/amazoncorretto-21.0.12-al2023-headless", 4, "${CORRETO_TEMP}/*.rpm")}},
		{rule: RuleToolchainJDK, name: "Red Hat OpenJDK builder: jdk module", fires: true, env: cfgEnv(t, "corpus/ubi9-openjdk-17-1.21-s2i"), labels: cfgLabels(t, "corpus/ubi9-openjdk-17-1.21-s2i")},
		{rule: RuleToolchainJDK, name: "Red Hat OpenJDK runtime: jre module", env: cfgEnv(t, "corpus/ubi9-openjdk-17-runtime-1.16"), labels: cfgLabels(t, "corpus/ubi9-openjdk-17-runtime-1.16")},
		{rule: RuleToolchainMaven, name: "Red Hat OpenJDK builder builds with Maven", fires: true, env: cfgEnv(t, "corpus/ubi9-openjdk-17-1.21-s2i"), labels: cfgLabels(t, "corpus/ubi9-openjdk-17-1.21-s2i")},
		{rule: RuleToolchainMaven, name: "Red Hat OpenJDK runtime", env: cfgEnv(t, "corpus/ubi9-openjdk-17-runtime-1.16"), labels: cfgLabels(t, "corpus/ubi9-openjdk-17-runtime-1.16")},
		{rule: RuleToolchainCC, name: "r-base-dev pulls the compilers in", fires: true,
			lines: []string{line(t, "corpus/r-base-4.6.1-testing", 9, "r-base-dev=")}},
		{rule: RuleToolchainCC, name: "buildpacks build image with build-essential", fires: true, env: cfgEnv(t, "corpus/paketo-builder-base-bionic"), labels: cfgLabels(t, "corpus/paketo-builder-base-bionic")},

		{rule: "toolchain.fortran", name: "GCC built with the fortran front end", fires: true,
			lines: []string{line(t, "corpus/gcc-16.2.0-trixie", 8, "--enable-languages=c,c++,fortran,go")}},
		{rule: "toolchain.fortran", name: "r-base-dev pulls gfortran in", fires: true,
			lines: []string{line(t, "corpus/r-base-4.6.1-testing", 9, "r-base-dev=")}},
		{rule: "toolchain.fortran", name: "a C/C++ toolchain without Fortran",
			lines: []string{line(t, "images/buildpack-deps-trixie", 3, "gcc")}},
		{rule: "toolchain.haskell", name: "GHC unpacked and installed into /opt/ghc", fires: true,
			lines: []string{line(t, "corpus/haskell-9.14.1-bookworm", 11, "make install")}},
		{rule: "toolchain.haskell", name: "stack unpacked into /usr/local/bin", fires: true,
			lines: []string{line(t, "corpus/haskell-9.14.1-bookworm", 5, "-C /usr/local/bin")}},
		{rule: "toolchain.haskell", name: "CMD ghci alone", lines: []string{line(t, "corpus/haskell-9.14.1-bookworm", 13, "ghci")}},
		{rule: "toolchain.swift", name: "the whole release tarball unpacked", fires: true,
			lines: []string{line(t, "corpus/swift-6.3.3-noble", 14, "--directory / --strip-components=1")}},
		{rule: "toolchain.swift", name: "only the runtime libraries unpacked (swift:slim)",
			lines: []string{line(t, "corpus/swift-6.3.3-slim-noble", 13, "SWIFT_VERSION="), line(t, "corpus/swift-6.3.3-slim-noble", 14, "/usr/lib/swift/linux")}},
		{rule: "toolchain.dart", name: "dart SDK unzipped and moved into place", fires: true,
			lines: []string{line(t, "corpus/dart-3.12.2-trixie", 6, "dartsdk-linux-")}},
		{rule: "toolchain.dart", name: "the runtime files for a scratch stage",
			lines: []string{line(t, "corpus/dart-3.12.2-trixie", 2, "TRIPLET")}},
		{rule: "toolchain.mono", name: "mono-devel, fsharp, nuget", fires: true,
			lines: []string{line(t, "corpus/mono-6.12.0.182-buster", 5, "mono-devel")}},
		{rule: "toolchain.mono", name: "mono-runtime", lines: []string{line(t, "corpus/mono-6.12.0.182-buster", 4, "mono-runtime")}},
		{rule: "toolchain.clojure", name: "the Clojure CLI installer run", fires: true,
			lines: []string{line(t, "corpus/clojure-1.12.5-lein-tools-deps-bookworm", 13, "linux-install-")}},
		{rule: "toolchain.clojure", name: "LEIN_ROOT alone", lines: []string{line(t, "corpus/clojure-1.12.5-lein-tools-deps-bookworm", 9, "LEIN_ROOT")}},
		{rule: "toolchain.groovy", name: "groovy binary zip unpacked into GROOVY_HOME", fires: true,
			lines: []string{line(t, "corpus/groovy-5.1.1-jdk21-noble", 22, "apache-groovy-binary-")}},
		{rule: "toolchain.groovy", name: "a groovy user and its grapes folder",
			lines: []string{line(t, "corpus/groovy-5.1.1-jdk21-noble", 17, "groovy")}},
		{rule: "toolchain.erlang", name: "rebar3 next to the buildpack-deps compilers", fires: true,
			lines: []string{line(t, "corpus/erlang-29.0.3-trixie", 3, "gcc"), line(t, "corpus/erlang-29.0.3-trixie", 10, "install -v ./rebar3")}},
		{rule: "toolchain.erlang", name: "rebar3 with the compilers deleted (alpine)",
			lines: []string{line(t, "corpus/elixir-1.20.1-otp29-alpine", 2, "REBAR3_VERSION"), line(t, "corpus/elixir-1.20.1-otp29-alpine", 4, "apk del")}},
		{rule: "toolchain.scala", name: "sbt unpacked into /usr/share", fires: true,
			lines: []string{line(t, "corpus/sbt-1.6.2-scala-2.13.10-temurin", 13, "sbt-$SBT_VERSION.tgz")}},
		{rule: "toolchain.scala", name: "an sbtuser account", lines: []string{line(t, "corpus/sbt-1.6.2-scala-2.13.10-temurin", 16, "sbtuser")}},
		{rule: "toolchain.zig", name: "zig tarball unpacked and moved to /usr/local/bin", fires: true,
			lines: []string{line(t, "corpus/zig-0.13.0-debian12", 2, "ziglang.org")}},
		{rule: "toolchain.zig", name: "a version variable alone", lines: []string{line(t, "corpus/zig-0.13.0-debian12", 1, "ZIGVER")}},
		{rule: "toolchain.kotlin", name: "kotlin compiler unzipped and moved into KOTLIN_HOME", fires: true,
			lines: []string{line(t, "corpus/kotlin-1.3.61-jre8-alpine", 4, "kotlin-compiler-")}},
		{rule: "toolchain.kotlin", name: "a version label", lines: []string{line(t, "corpus/kotlin-1.3.61-jre8-alpine", 1, "KOTLIN_VERSION")}},
		{rule: "toolchain.bazel", name: "the bazel binary copied in", fires: true,
			lines: []string{line(t, "corpus/bazel-ubuntu20.04", 1, "/usr/local/bin/bazel")}},
		{rule: "toolchain.bazel", name: "bazel as entrypoint alone", lines: []string{line(t, "corpus/bazel-ubuntu20.04", 2, "ENTRYPOINT")}},
		{rule: "toolchain.crystal", name: "crystal tarball unpacked into /usr", fires: true,
			lines: []string{line(t, "corpus/crystal-alpine-runtime", 7, "/tmp/crystal.tar.gz")}},
		{rule: "toolchain.crystal", name: "a helper script copied to /tmp",
			lines: []string{line(t, "corpus/crystal-alpine-runtime", 2, "shallow-clone.sh")}},
		{rule: "toolchain.s2i-builder", name: "S2I Python builder labels", fires: true, env: cfgEnv(t, "corpus/rhel9-python-312-1-25-s2i"), labels: cfgLabels(t, "corpus/rhel9-python-312-1-25-s2i")},
		{rule: "toolchain.s2i-builder", name: "OpenShift console labels", env: cfgEnv(t, "corpus/openshift-ose-console-rhel9-4.16"), labels: cfgLabels(t, "corpus/openshift-ose-console-rhel9-4.16")},
		{rule: "toolchain.buildpacks-builder", name: "Paketo builder labels", fires: true, env: cfgEnv(t, "corpus/paketo-builder-base-bionic"), labels: cfgLabels(t, "corpus/paketo-builder-base-bionic")},
		{rule: "toolchain.buildpacks-builder", name: "Paketo run image labels", labels: cfgLabels(t, "corpus/paketo-jammy-base-run")},
		{rule: "toolchain.buildpacks-builder", name: "S2I builder that is also a buildpacks stack", env: cfgEnv(t, "corpus/rhel9-python-312-1-25-s2i"), labels: cfgLabels(t, "corpus/rhel9-python-312-1-25-s2i")},

		// Version managers, in Dockerfile lines of public repositories.
		{rule: RuleToolchainJDK, name: "SDKMAN installs a JDK", fires: true, lines: []string{buildkit(`bash -c "curl -s 'https://get.sdkman.io' | bash ` +
			`&& source $HOME/.sdkman/bin/sdkman-init.sh && yes | sdk install java 17.0.2-tem && rm -rf $HOME/.sdkman/archives/* && rm -rf $HOME/.sdkman/tmp/*"`)}},
		{rule: RuleToolchainJDK, name: "SDKMAN lists JDKs", lines: []string{buildkit(`bash -c "source $HOME/.sdkman/bin/sdkman-init.sh && sdk list java"`)}},
		{rule: RuleToolchainGo, name: "asdf installs Go", fires: true, lines: []string{buildkit(`PATH="$HOME/.asdf/bin:$HOME/.asdf/shims:$PATH" && ` +
			`asdf plugin-add golang https://github.com/kennyp/asdf-golang.git && asdf install golang 1.14.13 && asdf global golang 1.14.13`)}},
		{rule: RuleToolchainGo, name: "asdf installs Python", lines: []string{buildkit("asdf plugin-add python && asdf install python 3.7.3 && asdf global python 3.7.3")}},

		{rule: RuleBuildGo, name: "go build (golang image docs)", fires: true, lines: []string{line(t, golangDocs, 15, "go build -v")}},
		{rule: RuleBuildGo, name: "go mod download (golang image docs)", lines: []string{line(t, golangDocs, 13, "go mod download")}},
		{rule: RuleBuildMaven, name: "mvn install (awesome-compose dev-envs)", fires: true, lines: []string{line(t, springDevEnvs, 19, "mvn install")}},
		{rule: RuleBuildMaven, name: "mvn dependency:go-offline (awesome-compose dev-envs)", lines: []string{line(t, springDevEnvs, 17, "dependency:go-offline")}},
		{rule: RuleBuildMaven, name: "mvn install in a step that purges maven (clojure)",
			lines: []string{line(t, "corpus/clojure-1.12.5-lein-tools-deps-bookworm", 7, "apt-get purge -y --auto-remove maven")}},
		{rule: RuleBuildGradle, name: "gradle build (a single-stage Spring Boot demo)", fires: true,
			lines: []string{line(t, "corpus/gradle-controller-demo-on-9.7.0-jdk25", 31, "gradle build")}},
		{rule: RuleBuildGradle, name: "gradle --version when the gradle image is made",
			lines: []string{line(t, "corpus/gradle-9.7.0-jdk25-ubuntu", 27, "gradle --stacktrace --debug --version")}},
		{rule: RuleBuildCargo, name: "cargo install --path . (rust image docs)", fires: true, lines: []string{line(t, "corpus/rust-docs-app-on-1.98.0", 9, "cargo install --path .")}},
		{rule: RuleBuildCargo, name: "cargo --version of a rustup in /tmp (ruby:slim)", lines: []string{line(t, "corpus/ruby-4.0.7-slim-trixie", 7, "cargo --version")}},
		{rule: RuleBuildNpm, name: "npm run build (welcome-to-docker, first version)", fires: true, lines: []string{line(t, welcomeFirst, 5, "npm run build")}},
		{rule: RuleBuildNpm, name: "npm run build and rm node_modules in one step", lines: []string{line(t, welcomeFixed, 4, "npm run build")}},
		{rule: RuleBuildYarn, name: "yarn build, devDependencies kept (mongo-express, January 2024)", fires: true, lines: []string{line(t, mongoJan, 2, "yarn build;")}},
		{rule: RuleBuildYarn, name: "yarn build, then the production prune", lines: []string{line(t, mongoMar, 2, "yarn build;")}},
		{rule: RuleBuildDotnet, name: "dotnet publish (a single-stage example bot)", fires: true,
			lines: []string{line(t, "corpus/dsharpplus-voicelink-example-on-sdk-10.0.400-noble", 15, "dotnet publish")}},
		{rule: RuleBuildDotnet, name: "dotnet help when the SDK image is made", lines: []string{line(t, "images/dotnet-sdk-10.0.400-noble", 11, "dotnet help")}},
		{rule: RuleBuildMake, name: "make of the GC library, kept", fires: true,
			lines: []string{line(t, "corpus/crystal-alpine-runtime", 3, "make -j$(nproc)")}},
		{rule: RuleBuildMake, name: "make in a step that purges its compiler", lines: []string{line(t, "images/httpd-2.4.23", 11, "apt-get purge")}},
		{rule: RuleBuildCC, name: "gcc -o myapp main.c (gcc image docs)", fires: true, lines: []string{line(t, "corpus/gcc-docs-app-on-16.2.0-trixie", 13, "gcc -o myapp main.c")}},
		{rule: RuleBuildCC, name: "gcc installed, not run (buildpack-deps)", lines: []string{line(t, "images/buildpack-deps-trixie", 3, "gcc")}},
		{rule: RuleBuildJavac, name: "javac Main.java (openjdk image docs)", fires: true, lines: []string{line(t, "corpus/openjdk-docs-app-on-18-oraclelinux8", 11, "javac Main.java")}},
		{rule: RuleBuildJavac, name: "javac --version when the JDK image is made", lines: []string{line(t, "corpus/eclipse-temurin-21.0.12.1-jdk-alpine", 8, "javac --version")}},
	}
}

// testdataText indexes the history lines, env entries and labels
// (key=value) of every testdata image.
type testdataText map[string]bool

func readTestdataText(t testing.TB) testdataText {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	idx := testdataText{}
	for _, file := range files {
		rel, _ := filepath.Rel("testdata", file)
		cfg := testdataConfig(t, strings.TrimSuffix(rel, ".json"))
		for _, h := range cfg.History {
			idx["line:"+h.CreatedBy] = true
		}
		for _, kv := range cfg.Config.Env {
			idx["env:"+kv] = true
		}
		for k, v := range cfg.Config.Labels {
			idx["label:"+k+"="+v] = true
		}
	}
	return idx
}

// real reports whether every line, env entry and label of tc is in a
// testdata image.
func (idx testdataText) real(tc signalCase) bool {
	if len(tc.lines)+len(tc.env)+len(tc.labels) == 0 {
		return false
	}
	for _, l := range tc.lines {
		if !idx["line:"+l] {
			return false
		}
	}
	for _, kv := range tc.env {
		if !idx["env:"+kv] {
			return false
		}
	}
	for k, v := range tc.labels {
		if !idx["label:"+k+"="+v] {
			return false
		}
	}
	return true
}

// TestCatalogSignals judges every example of catalogCases, and checks
// that every entry of the catalog (catalog.yaml) has a positive and a
// near miss taken from a testdata image's history, env or labels.
func TestCatalogSignals(t *testing.T) {
	def := Default()
	idx := readTestdataText(t)
	pos, neg := map[string]int{}, map[string]int{}
	for _, tc := range catalogCases(t) {
		t.Run(tc.rule+"/"+tc.name, func(t *testing.T) {
			f := historyFacts(t, tc.env, tc.lines...)
			f.Labels = tc.labels
			res := Evaluate(&def.Spec, f)
			got := slices.Contains(ruleIDs(res), tc.rule)
			if got != tc.fires {
				t.Errorf("%s found: %v, want %v; findings %v", tc.rule, got, tc.fires, ruleIDs(res))
				for _, fd := range res.Findings {
					t.Logf("%s: %s", fd.Rule, fd.Message)
				}
			}
		})
		switch {
		case !idx.real(tc):
		case tc.fires:
			pos[tc.rule]++
		default:
			neg[tc.rule]++
		}
	}
	var cf catalogFile
	if err := yaml.UnmarshalStrict(catalogYAML, &cf); err != nil {
		t.Fatal(err)
	}
	if len(cf.Toolchains) == 0 {
		t.Fatal("the catalog has no entries")
	}
	for _, e := range cf.Toolchains {
		if pos[e.ID] == 0 || neg[e.ID] == 0 {
			t.Errorf("catalog entry %s has %d positive and %d near-miss examples from testdata images, want at least one of each",
				e.ID, pos[e.ID], neg[e.ID])
		}
	}
}

// TestCatalogLoading checks that the catalog is read strictly and that
// what would make evaluation slow or wrong is refused.
func TestCatalogLoading(t *testing.T) {
	if _, err := loadCatalog(catalogYAML); err != nil {
		t.Fatalf("embedded catalog: %v", err)
	}
	entry := func(body string) string {
		return "toolchains:\n  - id: toolchain.x\n    title: X\n    remedy: use y\n" + body
	}
	// fixed is a fixed section of a valid rule and one with these fields.
	fixed := func(fields string) string {
		return "fixed:\n  - {id: size.x, category: size, title: X, remedy: y}\n  - {" + fields + "}\ntoolchains: []\n"
	}
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown top-level field", "toolchain: []\n", "unknown field"},
		{"unknown entry field", entry("    signal: {}\n"), "unknown field"},
		{"unknown signal field", entry("    signals:\n      packages:\n        - name: gcc\n"), "unknown field"},
		{"pattern without a literal", entry("    signals:\n      downloads:\n        - pattern: '\\d+[a-z]?'\n"), "literal of at least 3"},
		{"alternative with a short literal", entry("    signals:\n      downloads:\n        - pattern: 'xyz-sdk|go'\n"), "literal of at least 3"},
		{"bad regexp", entry("    signals:\n      packages:\n        - pattern: 'gcc('\n"), "missing closing"},
		{"bad strength", entry("    signals:\n      env:\n        - key: X_HOME\n          strength: huge\n"), "strength"},
		{"bad id", "toolchains:\n  - id: Toolchain.X\n    title: X\n    remedy: y\n    signals: {env: [{key: X}]}\n", "toolchain.<name>"},
		{"duplicate id", "toolchains:\n  - {id: toolchain.x, title: X, remedy: y, signals: {env: [{key: X}]}}\n  - {id: toolchain.x, title: X, remedy: y, signals: {env: [{key: Y}]}}\n", "Duplicate"},
		{"requires an unknown rule", entry("    requires: [toolchain.nope]\n    signals: {env: [{key: X}]}\n"), "names no other rule"},
		{"relative path", entry("    signals:\n      paths:\n        - path: usr/local/x\n"), "absolute path"},
		{"unknown fixed rule field", fixed("id: size.y, category: size, title: Y, remedy: z, weight: 1"), "unknown field"},
		{"fixed rule of a toolchain category", fixed("id: size.y, category: toolchain, title: Y, remedy: z"), "fixed[1].category: Unsupported value"},
		{"fixed rule without a category", fixed("id: size.y, title: Y, remedy: z"), "fixed[1].category: Unsupported value"},
		{"fixed rule without an id", fixed("category: size, title: Y, remedy: z"), "fixed[1].id: Required value"},
		{"duplicate fixed rule", fixed("id: size.x, category: size, title: Y, remedy: z"), `fixed[1].id: Duplicate value: "size.x"`},
		{"fixed rule without a title", fixed("id: size.y, category: size, remedy: z"), "fixed[1].title: Required value"},
		{"fixed rule without a remedy", fixed("id: size.y, category: size, title: Y"), "fixed[1].remedy: Required value"},
		{"a toolchain with a fixed rule's id", "fixed:\n  - {id: toolchain.x, category: size, title: X, remedy: y}\n" + entry("    signals: {env: [{key: X}]}\n"), `toolchains[0].id: Duplicate value: "toolchain.x"`},
	}
	for _, tc := range tests {
		_, err := loadCatalog([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

// TestRequiredLiterals checks the literals the index searches for.
func TestRequiredLiterals(t *testing.T) {
	tests := []struct {
		pattern string
		want    []string
	}{
		{`(gcc|g\+\+|clang|clang\+\+)(-\d+(\.\d+)?)?`, []string{"clang", "clang++", "g++", "gcc"}},
		{`apache-maven-\d[\w.-]*-bin\.(tar\.gz|zip)`, []string{"apache-maven-"}},
		{`graalvm-(community-)?jdk-\d`, []string{"graalvm-community-jdk-", "graalvm-jdk-"}},
		{`rustup-init|sh\.rustup\.rs`, []string{"rustup-init", "sh.rustup.rs"}},
	}
	for _, tc := range tests {
		_, lits, err := compileSignalPattern(tc.pattern, false)
		if err != nil {
			t.Errorf("%s: %v", tc.pattern, err)
			continue
		}
		slices.Sort(lits)
		if !slices.Equal(lits, tc.want) {
			t.Errorf("%s: literals %q, want %q", tc.pattern, lits, tc.want)
		}
	}
}
