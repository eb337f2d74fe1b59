package policy

import (
	"path/filepath"
	"strings"
	"testing"
)

// Compile-and-purge steps of official images, as their history records
// them (repo-info renders of ruby:2-slim, ruby:2-alpine and
// php:8.3-apache), shortened only in the configure flags.
const (
	rubySlim   = "/bin/sh -c set -ex \t\t&& savedAptMark=\"$(apt-mark showmanual)\" \t&& apt-get update && apt-get install -y --no-install-recommends \t\tautoconf \t\tbison \t\tdpkg-dev \t\tgcc \t\tlibbz2-dev \t\tlibgdbm-dev \t\tlibglib2.0-dev \t\tlibncurses-dev \t\tlibreadline-dev \t\tlibxml2-dev \t\tlibxslt-dev \t\tmake \t\truby \t\twget \t\txz-utils \t&& rm -rf /var/lib/apt/lists/* \t\t&& wget -O ruby.tar.xz \"https://cache.ruby-lang.org/pub/ruby/${RUBY_MAJOR%-rc}/ruby-$RUBY_VERSION.tar.xz\" \t&& echo \"$RUBY_DOWNLOAD_SHA256 *ruby.tar.xz\" | sha256sum -c - \t\t&& mkdir -p /usr/src/ruby \t&& tar -xJf ruby.tar.xz -C /usr/src/ruby --strip-components=1 \t&& rm ruby.tar.xz \t\t&& cd /usr/src/ruby \t\t&& { \t\techo '#define ENABLE_PATH_CHECK 0'; \t\techo; \t\tcat file.c; \t} > file.c.new \t&& mv file.c.new file.c \t\t&& autoconf \t&& gnuArch=\"$(dpkg-architecture --query DEB_BUILD_GNU_TYPE)\" \t&& ./configure \t\t--build=\"$gnuArch\" \t\t--disable-install-doc \t\t--enable-shared \t&& make -j \"$(nproc)\" \t&& make install \t\t&& apt-mark auto '.*' > /dev/null \t&& apt-mark manual $savedAptMark \t&& find /usr/local -type f -executable -not \\( -name '*tkinter*' \\) -exec ldd '{}' ';' \t\t| awk '/=>/ { print $(NF-1) }' \t\t| sort -u \t\t| xargs -r dpkg-query --search \t\t| cut -d: -f1 \t\t| sort -u \t\t| xargs -r apt-mark manual \t&& apt-get purge -y --auto-remove -o APT::AutoRemove::RecommendsImportant=false \t\t&& cd / \t&& rm -r /usr/src/ruby \t&& ruby --version && gem --version && bundle --version"
	rubyAlpine = "/bin/sh -c set -ex \t\t&& apk add --no-cache --virtual .ruby-builddeps \t\tautoconf \t\tbison \t\tbzip2 \t\tbzip2-dev \t\tca-certificates \t\tcoreutils \t\tdpkg-dev dpkg \t\tgcc \t\tgdbm-dev \t\tglib-dev \t\tlibc-dev \t\tlibffi-dev \t\tlibxml2-dev \t\tlibxslt-dev \t\tlinux-headers \t\tmake \t\tncurses-dev \t\topenssl \t\topenssl-dev \t\tprocps \t\treadline-dev \t\truby \t\ttar \t\txz \t\tyaml-dev \t\tzlib-dev \t\t&& wget -O ruby.tar.xz \"https://cache.ruby-lang.org/pub/ruby/${RUBY_MAJOR%-rc}/ruby-$RUBY_VERSION.tar.xz\" \t&& echo \"$RUBY_DOWNLOAD_SHA256 *ruby.tar.xz\" | sha256sum -c - \t\t&& mkdir -p /usr/src/ruby \t&& tar -xJf ruby.tar.xz -C /usr/src/ruby --strip-components=1 \t&& rm ruby.tar.xz \t\t&& cd /usr/src/ruby \t\t&& autoconf \t&& gnuArch=\"$(dpkg-architecture --query DEB_BUILD_GNU_TYPE)\" \t&& export ac_cv_func_isnan=yes ac_cv_func_isinf=yes \t&& ./configure \t\t--build=\"$gnuArch\" \t\t--disable-install-doc \t\t--enable-shared \t&& make -j \"$(nproc)\" \t&& make install \t\t&& runDeps=\"$( \t\tscanelf --needed --nobanner --format '%n#p' --recursive /usr/local \t\t\t| tr ',' '\\n' \t\t\t| sort -u \t\t\t| awk 'system(\"[ -e /usr/local/lib/\" $1 \" ]\") == 0 { next } { print \"so:\" $1 }' \t)\" \t&& apk add --no-network --virtual .ruby-rundeps $runDeps \t\tbzip2 \t\tca-certificates \t\tlibffi-dev \t\tprocps \t\tyaml-dev \t\tzlib-dev \t&& apk del --no-network .ruby-builddeps \t&& cd / \t&& rm -r /usr/src/ruby \t&& ruby --version && gem --version && bundle --version"
	phpApache  = "RUN /bin/sh -c set -eux; \t\tsavedAptMark=\"$(apt-mark showmanual)\"; \tapt-get update; \tapt-get install -y --no-install-recommends \t\tapache2-dev \t\tlibargon2-dev \t\tlibcurl4-openssl-dev \t\tlibonig-dev \t\tlibreadline-dev \t\tlibsodium-dev \t\tlibsqlite3-dev \t\tlibssl-dev \t\tlibxml2-dev \t\tzlib1g-dev \t; \t\texport \t\tCFLAGS=\"$PHP_CFLAGS\" \t\tCPPFLAGS=\"$PHP_CPPFLAGS\" \t\tLDFLAGS=\"$PHP_LDFLAGS\" \t\tPHP_BUILD_PROVIDER='https://github.com/docker-library/php' \t\tPHP_UNAME='Linux - Docker' \t; \tdocker-php-source extract; \tcd /usr/src/php; \tgnuArch=\"$(dpkg-architecture --query DEB_BUILD_GNU_TYPE)\"; \tdebMultiarch=\"$(dpkg-architecture --query DEB_BUILD_MULTIARCH)\"; \tif [ ! -d /usr/include/curl ]; then \t\tln -sT \"/usr/include/$debMultiarch/curl\" /usr/local/include/curl; \tfi; \ttest \"$PHP_INI_DIR\" != \"${PHP_INI_DIR%/php}\"; \t./configure \t\t--build=\"$gnuArch\" \t\t--sysconfdir=\"${PHP_INI_DIR%/php}\" \t\t--with-libdir=\"lib/$debMultiarch\" \t\t--disable-cgi \t\t--with-apxs2 \t; \tmake -j \"$(nproc)\"; \tfind -type f -name '*.a' -delete; \tmake install; \tfind \t\t/usr/local \t\t-type f \t\t-perm '/0111' \t\t-exec sh -euxc ' \t\t\tstrip --strip-all \"$@\" || : \t\t' -- '{}' + \t; \tmake clean; \t\tcp -v php.ini-* \"$PHP_INI_DIR/\"; \t\tcd /; \tdocker-php-source delete; \t\tapt-mark auto '.*' > /dev/null; \t[ -z \"$savedAptMark\" ] || apt-mark manual $savedAptMark; \tfind /usr/local -type f -executable -exec ldd '{}' ';' \t\t| awk '/=>/ { so = $(NF-1); if (index(so, \"/usr/local/\") == 1) { next }; gsub(\"^/(usr/)?\", \"\", so); printf \"*%s\\n\", so }' \t\t| sort -u \t\t| xargs -rt dpkg-query --search \t\t| awk 'sub(\":$\", \"\", $1) { print $1 }' \t\t| sort -u \t\t| xargs -r apt-mark manual \t; \tapt-get purge -y --auto-remove -o APT::AutoRemove::RecommendsImportant=false; \tapt-get dist-clean; \t\tpecl update-channels; \trm -rf /tmp/pear ~/.pearrc; \t\tphp --version # buildkit"
)

// TestSelfCleaningCoversWhatWasInstalled checks that a step's removals
// hide its build only when they remove what the step installed: one more
// word (an autoremove, a purge of something else) must not switch the
// detection off.
func TestSelfCleaningCoversWhatWasInstalled(t *testing.T) {
	run := func(script string) string { return "RUN /bin/sh -c " + script + " # buildkit" }
	tests := []struct {
		name string
		line string
		want []string
	}{
		// Tricks that hid a toolchain or a build.
		{name: "autoremove keeps packages named on the command line",
			line: run("apt-get update && apt-get install -y build-essential && make && apt-get autoremove -y"),
			want: []string{RuleBuildMake, RuleToolchainCC}},
		{name: "autoremove after golang-go and go build",
			line: run("apt-get install -y golang-go && go build -o /app . && apt-get autoremove -y"),
			want: []string{RuleBuildGo, RuleToolchainGo}},
		{name: "purging an unrelated package keeps gcc",
			line: run("apt-get install -y gcc && gcc -o /hello hello.c && apt-get purge -y vim"),
			want: []string{RuleBuildCC, RuleToolchainCC}},
		{name: "purging a package the step did not install hides no go build",
			line: run("apt-get install -y ca-certificates && go build -o /app . && apt-get purge -y --auto-remove vim"),
			want: []string{RuleBuildGo}},
		{name: "purge covers make, gcc remains",
			line: run("apt-get install -y gcc make && make && apt-get purge -y make"),
			want: []string{RuleBuildMake, RuleToolchainCC}},
		{name: "apk: deleting the group leaves what was added outside it",
			line: run("apk add --virtual .build-deps gcc && apk add go && go build -o /app . && apk del .build-deps"),
			want: []string{RuleBuildGo, RuleToolchainGo}},
		{name: "apk: deleting a member leaves it in its group",
			line: run("apk add --no-cache --virtual .build-deps gcc musl-dev && apk del gcc"),
			want: []string{RuleToolchainCC}},
		{name: "apt-mark auto of another package only",
			line: run("apt-get install -y golang-go vim && go build -o /app . && apt-mark auto vim && apt-get purge -y --auto-remove"),
			want: []string{RuleBuildGo, RuleToolchainGo}},
		{name: "apt-mark manual keeps gcc through the savedAptMark idiom",
			line: run(`savedAptMark="$(apt-mark showmanual)"; apt-get install -y gcc make; make; apt-mark auto '.*' > /dev/null; apt-mark manual $savedAptMark gcc; apt-get purge -y --auto-remove`),
			want: []string{RuleBuildMake, RuleToolchainCC}},
		{name: "an apt search pattern kept manual keeps everything",
			line: run(`apt-get install -y gcc make; make; apt-mark auto '.*'; apt-mark manual '?installed'; apt-get purge -y --auto-remove`),
			want: []string{RuleBuildMake, RuleToolchainCC}},
		{name: "echo into xargs apt-mark manual keeps gcc",
			line: run(`apt-get install -y gcc make; make; apt-mark auto '.*'; echo gcc | xargs apt-mark manual; apt-get purge -y --auto-remove`),
			want: []string{RuleBuildMake, RuleToolchainCC}},
		{name: "a filtered showmanual list marks nothing for sure",
			line: run(`apt-get install -y gcc make && make && apt-mark showmanual | grep -v gcc | xargs apt-mark auto && apt-get purge -y --auto-remove`),
			want: []string{RuleBuildMake, RuleToolchainCC}},
		{name: "another package manager does not remove it",
			line: run("apt-get install -y gcc && gcc -c x.c && apk del gcc"),
			want: []string{RuleBuildCC, RuleToolchainCC}},
		{name: "dnf history undo undoes the last transaction only",
			line: run("dnf install -y gcc && dnf install -y vim && make && dnf history undo -y last"),
			want: []string{RuleBuildMake, RuleToolchainCC}},
		{name: "dnf history undo of a removal removes nothing",
			line: run("dnf install -y gcc && make && dnf remove -y vim && dnf history undo -y last"),
			want: []string{RuleBuildMake, RuleToolchainCC}},
		{name: "dnf history undo by number is not credited",
			line: run("dnf install -y gcc && make && dnf history undo -y 3"),
			want: []string{RuleBuildMake, RuleToolchainCC}},
		{name: "dnf autoremove keeps what was installed by name",
			line: run("dnf install -y golang && go build -o /app . && dnf autoremove -y"),
			want: []string{RuleBuildGo, RuleToolchainGo}},

		// Near misses that stay allowed.
		{name: "purge of exactly what was installed",
			line: run("apt-get install -y gcc make && make && apt-get purge -y --auto-remove gcc make")},
		{name: "dpkg purges what apt installed",
			line: run("apt-get install -y gcc && gcc -c x.c && dpkg --purge gcc && apt-get autoremove -y")},
		{name: "apt regex purge",
			line: run("apt-get install -y gcc-12 g++-12 make && make && apt-get purge -y --auto-remove 'g.*-12' make")},
		{name: "yum glob remove",
			line: run("yum install -y gcc gcc-c++ make && make && yum remove -y 'gcc*' make")},
		{name: "dnf group install and remove",
			line: run(`dnf group install -y "Development Tools" && make && dnf group remove -y "Development Tools"`)},
		{name: "dnf history undo of the install",
			line: run("dnf install -y gcc make && make && dnf history undo -y last")},
		{name: "dnf mark then autoremove",
			line: run("dnf install -y golang && go build -o /app . && dnf mark remove golang && dnf autoremove -y")},
		{name: "a build dependency removed again, the compiler from an earlier step",
			line: run("apt-get install -y libzstd-dev && make && apt-get purge -y libzstd-dev")},
		{name: "showmanual into xargs apt-mark auto",
			line: run(`apt-get install -y gcc make && make && apt-mark showmanual | xargs apt-mark auto > /dev/null && apt-get purge -y --auto-remove`)},
		{name: "httpd buildDeps purged by name", line: httpdLegacy},
		{name: "redis savedAptMark idiom", line: redisSlim},
		{name: "redis alpine .build-deps", line: alpineBuildDeps},
		{name: "ruby slim savedAptMark idiom", line: rubySlim},
		{name: "ruby alpine .ruby-builddeps", line: rubyAlpine},
		{name: "php apache savedAptMark idiom", line: phpApache},
	}
	def := Default()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkRules(t, Evaluate(&def.Spec, historyFacts(t, nil, tc.line)), tc.want)
		})
	}
}

// TestOfficialCompileStepsStayClean judges, each on its own and with its
// image's environment, the steps of the real images in testdata that
// install build dependencies, build and remove them again.
func TestOfficialCompileStepsStayClean(t *testing.T) {
	steps := []struct {
		file  string
		index int
	}{
		{"python-3.14.7", 8},
		{"node-26.5.0-slim", 3},
		{"nginx-1.17.0", 6},
		{"httpd-2.4.23", 11},
		{"tomcat-8.5.77-jre11-app", 8},
		{"tomcat-8.5.77-jre8-app", 8},
		{"composer-1.7.2-php7.2-alpine", 16},
		{"composer-1.7.2-php7.2-alpine", 23},
	}
	def := Default()
	for _, s := range steps {
		_, f := loadFixture(t, filepath.Join("testdata", "images", s.file+".json"))
		line := f.History[s.index].CreatedBy
		if !strings.Contains(line, "purge") && !strings.Contains(line, "apk del") {
			t.Fatalf("%s #%d removes no packages: %.80s", s.file, s.index, line)
		}
		// The step's own variables, without those that announce a
		// toolchain by themselves (COMPOSER_VERSION): only the step is judged.
		var env []string
		for _, kv := range f.Env {
			k, v, _ := strings.Cut(kv, "=")
			announces := false
			for _, sig := range builtin().env {
				announces = announces || (sig.key.Match(k) && (sig.value == nil || sig.value.MatchString(v)))
			}
			if !announces {
				env = append(env, kv)
			}
		}
		res := Evaluate(&def.Spec, historyFacts(t, env, line))
		if len(res.Findings) != 0 {
			t.Errorf("%s #%d: %s", s.file, s.index, res.Summary())
		}
	}
}
