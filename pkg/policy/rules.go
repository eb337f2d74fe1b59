package policy

import (
	"slices"
	"strings"

	"slimgate.dev/slimgate/api/v1alpha1"
	"slimgate.dev/slimgate/pkg/glob"
)

// Category groups the rules of the catalog.
type Category string

const (
	// CategoryToolchain rules find a compiler, SDK or build tool installed
	// in the image.
	CategoryToolchain Category = "toolchain"
	// CategoryBuild rules find a build command run inside the image: the
	// mark of a single-stage Dockerfile.
	CategoryBuild Category = "build"
	// CategorySize rules compare the manifest's figures with a budget.
	CategorySize Category = "size"
	// CategoryInspection holds the rules for images that could not be
	// read: because of the image (inspection.invalid) or of its registry
	// (inspection.failed).
	CategoryInspection Category = "inspection"
)

// Rule is one entry of the catalog. Ids are stable: policies name them.
type Rule struct {
	// ID is the stable id, e.g. "toolchain.go".
	ID string `json:"id"`
	// Title is a short name used at the start of finding messages.
	Title string `json:"title"`
	// Category groups the rule.
	Category Category `json:"category"`
	// Description says what the rule looks for.
	Description string `json:"description"`
	// Remedy is what to do instead; "{version}" stands for the version the
	// image declares (e.g. the Go or Java release), when known.
	Remedy string `json:"remedy"`

	// version names the image version that fills {version}, and fallback
	// what stands there when the image declares none.
	version, fallback string
}

// RemedyFor fills the rule's remedy template with a version.
func (r Rule) RemedyFor(version string) string {
	if version == "" {
		version = r.fallback
	}
	return strings.ReplaceAll(r.Remedy, "{version}", version)
}

// Rule ids of the catalog.
const (
	RuleToolchainGo        = "toolchain.go"
	RuleToolchainJDK       = "toolchain.jdk"
	RuleToolchainMaven     = "toolchain.maven"
	RuleToolchainGradle    = "toolchain.gradle"
	RuleToolchainRust      = "toolchain.rust"
	RuleToolchainDotnetSDK = "toolchain.dotnet-sdk"
	RuleToolchainCC        = "toolchain.cc"
	RuleToolchainNodeBuild = "toolchain.node-build"
	RuleToolchainComposer  = "toolchain.composer"
	RuleBuildGo            = "build.go"
	RuleBuildMaven         = "build.maven"
	RuleBuildGradle        = "build.gradle"
	RuleBuildCargo         = "build.cargo"
	RuleBuildNpm           = "build.npm"
	RuleBuildYarn          = "build.yarn"
	RuleBuildDotnet        = "build.dotnet"
	RuleBuildMake          = "build.make"
	RuleBuildCC            = "build.cc"
	RuleBuildJavac         = "build.javac"
	RuleSizeCompressed     = "size.compressed"
	RuleSizeLayers         = "size.layers"
	RuleInspectionInvalid  = "inspection.invalid"
	RuleInspectionFailed   = "inspection.failed"
	RuleReferenceDigest    = "reference.digest"
)

const (
	remedyGo   = "build in golang:{version} AS builder, then COPY --from=builder only the binary into gcr.io/distroless/static (CGO_ENABLED=0) or distroless/base"
	remedyJava = "build in a JDK stage, then run on a JRE: eclipse-temurin:{version}-jre, gcr.io/distroless/java{version}, or a jlink-made runtime"
	remedyCC   = "compile in a builder stage and COPY --from it, or install compilers and remove them in the same RUN (apt-get purge --auto-remove, apk del .build-deps); base the final stage on a -slim or distroless image"
	remedyNode = "run npm ci and the build in a node:{version} AS builder stage, then COPY --from=builder the built output and production node_modules (npm ci --omit=dev) into node:{version}-slim or distroless/nodejs"
)

// catalog returns the rules in the order findings are reported. The slice
// is built once and shared: callers only read it.
func catalog() []Rule { return ruleCatalog }

var ruleCatalog = newCatalog()

func newCatalog() []Rule {
	return []Rule{
		{ID: RuleToolchainGo, Category: CategoryToolchain, Title: "Go toolchain",
			Description: "the Go SDK: GOLANG_VERSION or GOROOT set, /usr/local/go in PATH, a go*.linux-*.tar.gz download, a golang package or a copy into /usr/local/go",
			Remedy:      remedyGo, version: "go", fallback: "1.x"},
		{ID: RuleToolchainJDK, Category: CategoryToolchain, Title: "JDK instead of a JRE",
			Description: "a Java Development Kit: a *-jdk_ / jdk.java.net / Oracle / Zulu / Corretto JDK download, an openjdk-*-jdk, java-*-devel or temurin-*-jdk package, or javac, jshell or jlink run in the image (JRE downloads and java --version do not count)",
			Remedy:      remedyJava, version: "java", fallback: "21"},
		{ID: RuleToolchainMaven, Category: CategoryToolchain, Title: "Maven",
			Description: "Apache Maven: MAVEN_HOME or M2_HOME set, an apache-maven download or a maven package",
			Remedy:      "run Maven in a maven:3-eclipse-temurin-{version} AS builder stage, then COPY --from=builder the jar into eclipse-temurin:{version}-jre or gcr.io/distroless/java{version}",
			version:     "java", fallback: "21"},
		{ID: RuleToolchainGradle, Category: CategoryToolchain, Title: "Gradle",
			Description: "Gradle: GRADLE_HOME or GRADLE_VERSION set, a gradle-*-bin.zip download or a gradle package",
			Remedy:      "run Gradle in a gradle:jdk{version} AS builder stage, then COPY --from=builder the jar into eclipse-temurin:{version}-jre or gcr.io/distroless/java{version}",
			version:     "java", fallback: "21"},
		{ID: RuleToolchainRust, Category: CategoryToolchain, Title: "Rust toolchain",
			Description: "rustup and cargo: RUSTUP_HOME or CARGO_HOME set, rustup-init or sh.rustup.rs run, or a rust/cargo package",
			Remedy:      "cargo build --release in rust:{version} AS builder, then COPY --from=builder the binary into gcr.io/distroless/cc (or static with musl)",
			version:     "rust", fallback: "1"},
		{ID: RuleToolchainDotnetSDK, Category: CategoryToolchain, Title: ".NET SDK",
			Description: "the .NET SDK: DOTNET_SDK_VERSION set, a dotnet-sdk download or package, or dotnet-install.sh without --runtime (aspnet and runtime images do not count)",
			Remedy:      "dotnet publish in mcr.microsoft.com/dotnet/sdk:{version} AS build, then COPY --from=build the output into mcr.microsoft.com/dotnet/aspnet:{version} or runtime:{version}",
			version:     "dotnet", fallback: "8.0"},
		{ID: RuleToolchainCC, Category: CategoryToolchain, Title: "C/C++ toolchain",
			Description: "gcc, g++, clang, make, build-essential, build-base, alpine-sdk or libc6-dev installed by apt, apk, yum, dnf or zypper and not removed in the same step (as in buildpack-deps based images)",
			Remedy:      remedyCC},
		{ID: RuleToolchainNodeBuild, Category: CategoryToolchain, Title: "Node.js build environment",
			Description: "node used to build: dependencies installed with devDependencies (npm ci/install, yarn, pnpm install without --omit=dev/--production) and a build script or bundler run in the image",
			Remedy:      remedyNode, version: "node", fallback: "lts"},
		{ID: RuleToolchainComposer, Category: CategoryToolchain, Title: "PHP Composer",
			Description: "Composer, the PHP dependency manager: COMPOSER_VERSION set or the getcomposer.org installer run",
			Remedy:      "run composer install --no-dev in a composer AS vendor stage, then COPY --from=vendor /app/vendor into a php:*-fpm or php:*-apache runtime image"},

		{ID: RuleBuildGo, Category: CategoryBuild, Title: "go build in image",
			Description: "go build or go install run in the image", Remedy: remedyGo, version: "go", fallback: "1.x"},
		{ID: RuleBuildMaven, Category: CategoryBuild, Title: "Maven build in image",
			Description: "mvn or mvnw package, install, verify or deploy run in the image", Remedy: remedyJava, version: "java", fallback: "21"},
		{ID: RuleBuildGradle, Category: CategoryBuild, Title: "Gradle build in image",
			Description: "gradle or gradlew build, assemble, bootJar, installDist or shadowJar run in the image", Remedy: remedyJava, version: "java", fallback: "21"},
		{ID: RuleBuildCargo, Category: CategoryBuild, Title: "cargo build in image",
			Description: "cargo build or cargo install run in the image",
			Remedy:      "cargo build --release in rust:{version} AS builder, then COPY --from=builder the binary into gcr.io/distroless/cc", version: "rust", fallback: "1"},
		{ID: RuleBuildNpm, Category: CategoryBuild, Title: "npm build in image",
			Description: "npm run build (or pnpm build) run in the image", Remedy: remedyNode, version: "node", fallback: "lts"},
		{ID: RuleBuildYarn, Category: CategoryBuild, Title: "yarn build in image",
			Description: "yarn build or yarn run build run in the image", Remedy: remedyNode, version: "node", fallback: "lts"},
		{ID: RuleBuildDotnet, Category: CategoryBuild, Title: "dotnet build in image",
			Description: "dotnet publish or dotnet build run in the image",
			Remedy:      "dotnet publish in mcr.microsoft.com/dotnet/sdk:{version} AS build, then COPY --from=build the output into mcr.microsoft.com/dotnet/aspnet:{version}", version: "dotnet", fallback: "8.0"},
		{ID: RuleBuildMake, Category: CategoryBuild, Title: "make run in image",
			Description: "make run in a step that does not remove its build dependencies again", Remedy: remedyCC},
		{ID: RuleBuildCC, Category: CategoryBuild, Title: "C compiler run in image",
			Description: "gcc, g++, cc, c++ or clang run in a step that does not remove its build dependencies again", Remedy: remedyCC},
		{ID: RuleBuildJavac, Category: CategoryBuild, Title: "javac run in image",
			Description: "javac compiling sources in the image", Remedy: remedyJava, version: "java", fallback: "21"},

		{ID: RuleSizeCompressed, Category: CategorySize, Title: "Image over size budget",
			Description: "the sum of the compressed layer sizes in the manifest exceeds spec.sizeBudget.maxCompressed",
			Remedy:      "use a multi-stage build and a slim, distroless or scratch final stage; remove package caches in the step that creates them"},
		{ID: RuleSizeLayers, Category: CategorySize, Title: "Too many layers",
			Description: "the manifest has more layers than spec.sizeBudget.maxLayers",
			Remedy:      "combine RUN steps and copy build output from a builder stage in one COPY"},
		{ID: RuleInspectionInvalid, Category: CategoryInspection, Title: "Invalid image, not inspected",
			Description: "the image, or the reference naming it, keeps slimgate from judging it: a malformed, unsupported or oversized manifest, index or config (schema 1, a digest that does not match, too many layers, history, env, label or platform entries, a nested index), an unknown tag, repository or platform, or a registry the policy does not let slimgate read; judged by the policy's mode whatever onInspectionError says",
			Remedy:      "name a tag or digest that exists, in a registry spec.registries allows; push the image again with a current Docker or BuildKit (OCI or Docker schema 2, sha256 digests), within slimgate's limits on manifest, config and index sizes and on layers, history, env, label and platform entries"},
		{ID: RuleInspectionFailed, Category: CategoryInspection, Title: "Image not inspected",
			Description: "the image's registry could not be read in time (timeout, network, TLS or server failure, rate limit, credentials refused) and the policy's onInspectionError is Deny",
			Remedy:      "check that the image exists, the registry is reachable and allowed by spec.registries, and its pull secret is valid"},
		{ID: RuleReferenceDigest, Category: CategoryReference, Title: "Image not pinned by digest",
			Description: "the reference names a tag and no digest while the policy's spec.requireDigests is true: the tag can be moved to another image between the check and the kubelet's pull",
			Remedy:      "pin the image by digest (name:tag@sha256:...) or enable webhook.pinDigests"},
	}
}

// Rules returns the rule catalog, in reporting order.
func Rules() []Rule { return newCatalog() }

// ruleByID returns the catalog's rule id names: one of the Rule*
// constants, which the catalog test keeps in the catalog (the zero Rule
// for an id it does not hold).
func ruleByID(id string) Rule {
	for _, r := range catalog() {
		if r.ID == id {
			return r
		}
	}
	return Rule{}
}

// catalogIDs lists the ids of the catalog, in reporting order.
func catalogIDs() []string {
	ids := make([]string, 0, len(catalog()))
	for _, r := range catalog() {
		ids = append(ids, r.ID)
	}
	return ids
}

// namesRule reports whether a deny/allow glob names a rule of the catalog.
func namesRule(g glob.Pattern) bool {
	return slices.ContainsFunc(catalog(), func(r Rule) bool { return g.Match(r.ID) })
}

// selection is the set of rules a policy applies.
type selection struct {
	rules map[string]bool
	// unknown lists the deny/allow entries that name no rule (malformed
	// globs included: they match nothing).
	unknown []string
}

// selectRules computes (deny, or every toolchain and build rule) minus
// allow. Size rules are governed by the size budget and can only be turned
// off through allow.
func selectRules(t v1alpha1.ToolchainRules) selection {
	s := selection{rules: map[string]bool{}}
	deny := s.compile(t.Deny)
	allow := s.compile(t.Allow)
	matches := func(gs []glob.Pattern, id string) bool {
		return slices.ContainsFunc(gs, func(g glob.Pattern) bool { return g.Match(id) })
	}
	for _, r := range catalog() {
		switch r.Category {
		case CategoryToolchain, CategoryBuild:
			if len(t.Deny) > 0 && !matches(deny, r.ID) {
				continue
			}
		case CategorySize:
		default:
			continue
		}
		if matches(allow, r.ID) {
			continue
		}
		s.rules[r.ID] = true
	}
	return s
}

// compile compiles deny or allow entries, noting those that name no rule.
func (s *selection) compile(refs []string) []glob.Pattern {
	out := make([]glob.Pattern, 0, len(refs))
	for _, ref := range refs {
		g, err := glob.Compile(ref)
		if err != nil || !namesRule(g) {
			s.unknown = append(s.unknown, ref)
			continue
		}
		out = append(out, g)
	}
	return out
}
