# datapipe - one non-recursive Makefile.
# make            build bin/datapipe-server, bin/datapipe-loader and bin/datapipe-queue
#                 (never installs packages)
# make unit       build and run the Check suites that need no PostgreSQL (seconds)
# make check      build and run every test (SANITIZE=1: under ASan and UBSan; SANITIZE=thread:
#                 under ThreadSanitizer, in build/tsan)
# make lint       clang-format check, shellcheck of the scripts, a -Wmissing-prototypes build,
#                 no call cycle between the files of a folder
# make format     lay out every C file as .clang-format says
# make bench      print the benchmark figures
# make soak       the end-to-end fault scenarios at full length and the model checker for an
#                 hour (about 75 minutes)
# make crashtest  100,000 power-cut crash states of the queue and more (tests/crash/, 20-45 min)
# make fuzz       run the libFuzzer targets (fuzz_http in both modes), FUZZ_SECONDS each
# make run        local demo (own PostgreSQL under run/)
# make install    PREFIX, DESTDIR honoured; copies what `make` built into $(BIN)
# make deb        build $(BUILD)/deb/datapipe_<version>_<arch>.deb (debhelper) and lint it
# make docs       regenerate docs/configuration.md's table of settings from the daemons' own
# make deps       install missing Debian packages (check, run, bench, fuzz and lint call it)

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
DOCDIR ?= $(PREFIX)/share/doc/datapipe
LIBEXECDIR ?= $(PREFIX)/lib/datapipe
MANDIR ?= $(PREFIX)/share/man
DATADIR ?= $(PREFIX)/share/datapipe
SYSCONFDIR ?= /etc
SYSTEMDUNITDIR ?= $(shell pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null || \
	echo /lib/systemd/system)
SYSUSERSDIR ?= $(shell pkg-config --variable=sysusersdir systemd 2>/dev/null || \
	echo /usr/lib/sysusers.d)
TMPFILESDIR ?= $(shell pkg-config --variable=tmpfilesdir systemd 2>/dev/null || \
	echo /usr/lib/tmpfiles.d)
CC ?= cc
PKG_CONFIG ?= pkg-config
CIVETWEB_LIBS ?= -lcivetweb
FUZZ_SECONDS ?= 60
CREATE_USER ?= yes
# The one version number: the newest entry of debian/changelog feeds --version, /v1/status
# and the package.
VERSION := $(shell awk 'NR == 1 { gsub(/[()]/, "", $$2); print $$2; exit }' debian/changelog)

PKGS := lmdb libpq libconfig jansson zlib liburiparser libsystemd libcrypto

# make PLANT=1: the daemons with the bugs of etc/plant.h compiled in (each chosen at run time
# by $DP_PLANT), in their own tree; only tests/e2e/test_model_plant.sh builds and runs them.
ifeq ($(PLANT),1)
BUILD ?= build/plant
BIN ?= $(BUILD)/bin
PLANTFLAGS := -DDP_PLANTS
endif

# A sanitized build lives in its own tree, binaries included, so it never mixes with bin/.
ifeq ($(SANITIZE),1)
BUILD ?= build/san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
BIN ?= $(BUILD)/bin
else ifeq ($(SANITIZE),thread)
BUILD ?= build/tsan
SANFLAGS := -fsanitize=thread -fno-omit-frame-pointer
BIN ?= $(BUILD)/bin
else
BUILD ?= build
SANFLAGS :=
BIN ?= bin
endif

WARN := -Wall -Wextra -Wformat=2 -Wshadow -Wstrict-prototypes -Wno-format-nonliteral $(EXTRA_WARN)
ifeq ($(WERROR),1)
WARN += -Werror
endif

PKG_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)
CHECK_CFLAGS = $(shell $(PKG_CONFIG) --cflags check 2>/dev/null)
CHECK_LIBS = $(shell $(PKG_CONFIG) --libs check 2>/dev/null)

OPT ?= -O2
CFLAGS ?= $(OPT) -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -DDP_VERSION='"$(VERSION)"' $(WARN) $(CFLAGS) $(SANFLAGS) \
	$(PLANTFLAGS) -I. -MMD -MP $(PKG_CFLAGS)
LIBS = $(PKG_LIBS) $(CIVETWEB_LIBS) -lpthread -lm
ALL_LDFLAGS = $(LDFLAGS) $(SANFLAGS)

LIB_SRC := $(wildcard etc/*.c queue/*.c events/*.c)
SERVER_SRC := $(wildcard server/*.c)
LOADER_SRC := $(wildcard loader/*.c)
# datapipe-queue, the operator's queue tool: its own folder, as each binary has.
QTOOL_SRC := $(wildcard queuetool/*.c)
TESTLIB_SRC := $(wildcard tests/lib/*.c)
UNIT_SRC := $(wildcard tests/unit/*.c)
DB_SRC := $(wildcard tests/db/*.c)
TEST_PROG_SRC := $(UNIT_SRC) $(DB_SRC) $(wildcard tests/tools/*.c tests/bench/*.c)

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
# The status page: server/status.html as a byte array (server/page.c serves it).
STATUS_PAGE_OBJ := $(BUILD)/gen/status_html.o
SERVER_OBJ := $(SERVER_SRC:%.c=$(BUILD)/%.o) $(STATUS_PAGE_OBJ)
LOADER_OBJ := $(LOADER_SRC:%.c=$(BUILD)/%.o)
QTOOL_OBJ := $(QTOOL_SRC:%.c=$(BUILD)/%.o)
TESTLIB_OBJ := $(TESTLIB_SRC:%.c=$(BUILD)/%.o)
TEST_PROGS := $(TEST_PROG_SRC:%.c=$(BUILD)/%)
UNIT_PROGS := $(UNIT_SRC:%.c=$(BUILD)/%)
LIBDP := $(BUILD)/libdatapipe.a
LIBTEST := $(BUILD)/libdptest.a

# Server and loader objects other than main.c are linked into the tests too,
# so each daemon's internals are unit-testable.
SERVER_LIB_OBJ := $(filter-out $(BUILD)/server/main.o,$(SERVER_OBJ))
LOADER_LIB_OBJ := $(filter-out $(BUILD)/loader/main.o,$(LOADER_OBJ))

.PHONY: all deb deb-check deps unit check soak bench fuzz run lint format docs install uninstall \
	clean test-progs citus citus-check
.SECONDARY:

all: $(BIN)/datapipe-server $(BIN)/datapipe-loader $(BIN)/datapipe-queue \
	$(BIN)/datapipe-tls-compat.so

# Missing Debian packages are installed; nothing is done when all are there. Only the targets
# that run something call it (check, soak, run, bench, fuzz, lint); building and installing never
# do, so `make` and `make install` work offline and without root. npm (for the
# OpenAPI validator tests/e2e/test_openapi.sh installs from
# tests/tools/openapi/package-lock.json) counts as there when any npm is on the PATH.
DEB_PACKAGES := build-essential pkg-config libcivetweb-dev liblmdb-dev libpq-dev libconfig-dev \
	libjansson-dev zlib1g-dev liburiparser-dev libsystemd-dev check postgresql curl \
	openssl libssl-dev lmdb-utils systemd jq xxd chromium haproxy pgbouncer python3
deps:
	@missing=""; for p in $(DEB_PACKAGES) $(EXTRA_DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || \
			missing="$$missing $$p"; \
	done; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
		echo "deps: installing$$missing"; \
		if [ "$$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi; \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(CHECK_CFLAGS) -c -o $@ $<

$(BUILD)/gen/status_html.c: server/status.html
	@mkdir -p $(dir $@)
	xxd -i $< | sed 's/^unsigned/const unsigned/' >$@.tmp && mv $@.tmp $@

$(STATUS_PAGE_OBJ): $(BUILD)/gen/status_html.c
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(LIBDP): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(LIBTEST): $(TESTLIB_OBJ) $(SERVER_LIB_OBJ) $(LOADER_LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^ $(if $^,,$(LIB_OBJ))

$(BIN)/datapipe-server: $(SERVER_OBJ) $(LIBDP)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $(SERVER_OBJ) $(LIBDP) $(LIBS)

# See server/compat/openssl3.c: the shim civetweb's dlopen("libssl.so") finds.
$(BIN)/datapipe-tls-compat.so: server/compat/openssl3.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O2 -g -fPIC -shared $(WARN) -Wl,-soname,libssl.so -o $@ $< -l:libssl.so.3 \
		-Wl,--no-as-needed -lc

$(BIN)/datapipe-loader: $(LOADER_OBJ) $(LIBDP)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $(LOADER_OBJ) $(LIBDP) $(LIBS)

$(BIN)/datapipe-queue: $(QTOOL_OBJ) $(LIBDP)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $(QTOOL_OBJ) $(LIBDP) $(LIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(LIBTEST) $(LIBDP)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(LIBTEST) $(LIBDP) $(LIBS) $(CHECK_LIBS)

# The fuzz seeds replayed through fuzz_http's code without libFuzzer: the target's objects too.
FUZZ_HTTP_OBJ := $(BUILD)/tests/fuzz/fuzz_http.o $(BUILD)/tests/fuzz/http_grammar.o
$(BUILD)/tests/unit/check_fuzz_seeds: $(BUILD)/tests/unit/check_fuzz_seeds.o $(FUZZ_HTTP_OBJ) \
		$(LIBTEST) $(LIBDP)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(FUZZ_HTTP_OBJ) $(LIBTEST) $(LIBDP) $(LIBS) $(CHECK_LIBS)

test-progs: all $(TEST_PROGS)

# The Check suites of tests/unit: no PostgreSQL, no daemons, no packages installed.
unit: $(UNIT_PROGS)
	DP_BUILD=$(BUILD) DP_BIN=$(BIN) SANITIZE=$(SANITIZE) tests/run-all unit

# Every test runs against one throwaway PostgreSQL cluster that tests/pg starts
# and always removes. TESTS picks kinds or suites (make check TESTS="db tests/e2e/test_tap.sh"),
# SKIP leaves suites out by file name (make check SKIP="test_model_plant.sh");
# all of them by default. The packages come first, then the build (a sub-make, so that under -j
# nothing compiles before its headers are installed).
check: deps
	$(MAKE) test-progs
	DP_BUILD=$(BUILD) DP_BIN=$(BIN) SANITIZE=$(SANITIZE) SKIP="$(SKIP)" tests/pg run \
		tests/run-all $(TESTS)

# The shortened fault scenarios of make check at full length (tests/run-soak): 100 SIGKILLs
# of each daemon, 256 keyed clients for 30 s, PostgreSQL down 30 s, the fleet of two; the
# model checker for an hour.
soak: deps
	$(MAKE) test-progs
	DP_BUILD=$(BUILD) DP_BIN=$(BIN) tests/pg run tests/run-soak

bench:
	$(MAKE) deps EXTRA_DEB_PACKAGES=wrk
	$(MAKE) test-progs
	DP_BUILD=$(BUILD) DP_BIN=$(BIN) tests/pg run tests/run-bench

# Static checks: every C file as .clang-format lays it out (`make format` rewrites them so),
# shellcheck of every shell script, and the whole tree built with -Wmissing-prototypes -Werror in
# a tree of its own (a function that should be static, or whose header is not included where it
# is defined, fails it), and no two files of a folder calling each other in a circle (read from
# that build's objects by tests/tools/callcycles.py).
# Citus, a test component only (docs/scaling.md): built from the vendored source tarball into
# $(BUILD)/citus (never installed, never linked into datapipe), then tests/citus/test_citus.sh
# starts a coordinator and two workers on loopback from it. The build takes a few minutes.
CITUS_TARBALL ?= ../shared/vendor/citus-12.1.12.tar.gz
CITUS_PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
CITUS_DEB_PACKAGES := postgresql-server-dev-15 liblz4-dev libzstd-dev libkrb5-dev
citus: $(BUILD)/citus/.built
$(BUILD)/citus/.built: $(CITUS_TARBALL)
	$(MAKE) deps EXTRA_DEB_PACKAGES="$(CITUS_DEB_PACKAGES)"
	rm -rf $(BUILD)/citus && mkdir -p $(BUILD)/citus
	tar -xzf $(CITUS_TARBALL) -C $(BUILD)/citus
	cd $(BUILD)/citus/citus-* && ./configure -q PG_CONFIG=$(CITUS_PG_CONFIG) --without-libcurl \
		>/dev/null && $(MAKE) with_llvm=no >/dev/null && \
		$(MAKE) with_llvm=no install DESTDIR=$(abspath $(BUILD))/citus/root >/dev/null
	touch $@

citus-check: citus
	$(MAKE) all test-progs
	DP_BUILD=$(BUILD) DP_BIN=$(BIN) tests/citus/test_citus.sh

CYCLE_FOLDERS := etc queue events server loader queuetool
C_FILES := $(wildcard etc/*.[ch] queue/*.[ch] events/*.[ch] server/*.[ch] server/compat/*.c \
	queuetool/*.[ch] \
	loader/*.[ch] tests/*/*.[ch])
SHELL_SCRIPTS := tests/pg tests/run-all tests/run-soak tests/run-bench tests/tools/run-demo \
	$(wildcard tests/*/*.sh tests/data/*/*.sh) .ci/run
# Code and tests cite what ships (docs/, README, code), never an outside document or an issue.
CITED = grep -rnE 'S[P]EC|[Ii]ssues? [0-9]' --include='*.c' --include='*.h' --include='*.sh' \
	--include='*.py' --include='*.awk' --include=Makefile etc events queue queuetool server \
	loader tests Makefile
lint:
	$(MAKE) deps EXTRA_DEB_PACKAGES="shellcheck clang-format"
	clang-format --dry-run --Werror $(C_FILES)
	shellcheck -x $(SHELL_SCRIPTS)
	@if $(CITED); then echo "lint: the lines above cite a document outside the" \
		"repository or an issue number: cite docs/ or the code"; exit 1; fi
	$(MAKE) BUILD=$(BUILD)/lint BIN=$(BUILD)/lint/bin SANITIZE= WERROR=1 \
		EXTRA_WARN=-Wmissing-prototypes test-progs
	tests/tools/callcycles.py $(BUILD)/lint $(CYCLE_FOLDERS)

format:
	clang-format -i $(C_FILES)

# Three runs, FUZZ_SECONDS each: fuzz_events (the body parser and encoders), then fuzz_http
# (whole HTTP requests through the real civetweb server and the request handler) in its two
# modes, each with its own corpus: raw bytes of a connection, mutated with the words of
# tests/fuzz/http.dict, and the structured mode (tests/fuzz/http_grammar.c), whose inputs start
# with a byte of 0x80 or more and build well-formed requests (a choice a byte, so inputs may be
# long from the start: -len_control=0). FUZZ_FLAGS adds libFuzzer options.
# The flags are the build's own (ALL_CFLAGS, without the dependency files a one-step
# compile-and-link would scatter), at -O1 and with the fuzzer's sanitizers in place of SANFLAGS.
FUZZ_CFLAGS = $(filter-out -MMD -MP $(SANFLAGS),$(ALL_CFLAGS)) -O1 \
	-fsanitize=fuzzer,address,undefined
FUZZ_RUN = -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $(FUZZ_FLAGS)
fuzz:
	$(MAKE) deps EXTRA_DEB_PACKAGES="clang libclang-rt-dev"
	$(MAKE) $(BUILD)/gen/status_html.c
	@mkdir -p $(BUILD)/fuzz/corpus $(BUILD)/fuzz/corpus-http $(BUILD)/fuzz/corpus-grammar
	clang $(FUZZ_CFLAGS) -o $(BUILD)/fuzz/fuzz_events tests/fuzz/fuzz_events.c $(LIB_SRC) \
		$(PKG_LIBS) -lpthread -lm
	clang $(FUZZ_CFLAGS) -o $(BUILD)/fuzz/fuzz_http tests/fuzz/fuzz_http.c \
		tests/fuzz/http_grammar.c $(LIB_SRC) \
		$(filter-out server/main.c,$(SERVER_SRC)) $(BUILD)/gen/status_html.c tests/lib/lib_test.c \
		$(PKG_LIBS) $(CIVETWEB_LIBS) -lpthread -lm
	$(BUILD)/fuzz/fuzz_events $(FUZZ_RUN) -artifact_prefix=$(BUILD)/fuzz/ \
		$(BUILD)/fuzz/corpus tests/fuzz/seed-events
	$(BUILD)/fuzz/fuzz_http $(FUZZ_RUN) -dict=tests/fuzz/http.dict \
		-artifact_prefix=$(BUILD)/fuzz/http- $(BUILD)/fuzz/corpus-http tests/fuzz/seed-http
	$(BUILD)/fuzz/fuzz_http $(FUZZ_RUN) -max_len=2048 -len_control=0 \
		-artifact_prefix=$(BUILD)/fuzz/grammar- $(BUILD)/fuzz/corpus-grammar \
		tests/fuzz/seed-grammar

# The settings table of docs/configuration.md is what --describe-config prints; test_readme.sh
# fails when they differ.
docs: $(BIN)/datapipe-server
	$(BIN)/datapipe-server --describe-config >$(BUILD)/settings.md
	awk -v gen=$(BUILD)/settings.md '/^<!-- end of settings table/ { while ((getline l < gen) > 0) \
		print l; skip = 0 } !skip { print } /^<!-- settings table/ { skip = 1; getline; print }' \
		docs/configuration.md >$(BUILD)/configuration.md
	mv $(BUILD)/configuration.md docs/configuration.md

run: deps
	$(MAKE) all
	tests/tools/run-demo

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(DOCDIR) $(DESTDIR)$(LIBEXECDIR) \
		$(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) \
		$(DESTDIR)$(SYSCONFDIR)
	install -m 0755 $(BIN)/datapipe-server $(BIN)/datapipe-loader $(BIN)/datapipe-queue \
		$(DESTDIR)$(BINDIR)/
	install -m 0644 $(BIN)/datapipe-tls-compat.so $(DESTDIR)$(LIBEXECDIR)/
	install -d $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DOCDIR)/docs $(DESTDIR)$(DATADIR)
	install -m 0644 man/datapipe-server.8 man/datapipe-loader.8 man/datapipe-queue.8 \
		$(DESTDIR)$(MANDIR)/man8/
	install -m 0644 datapipe.json.example README.md NEWS.md $(DESTDIR)$(DOCDIR)/
	install -m 0644 docs/*.md docs/*.png $(DESTDIR)$(DOCDIR)/docs/
	install -m 0644 alerts/datapipe.rules.yml $(DESTDIR)$(DATADIR)/
	for u in datapipe-server datapipe-loader; do \
		sed 's|@BINDIR@|$(BINDIR)|g; s|@DOCDIR@|$(DOCDIR)|g' systemd/$$u.service \
			>$(DESTDIR)$(SYSTEMDUNITDIR)/$$u.service && \
		chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/$$u.service; \
	done
	install -m 0644 systemd/datapipe.sysusers $(DESTDIR)$(SYSUSERSDIR)/datapipe.conf
	install -m 0644 systemd/datapipe.tmpfiles $(DESTDIR)$(TMPFILESDIR)/datapipe.conf
	@# The configuration may hold secrets (a database password, API keys): root writes it,
	@# the daemons' group reads it: root:datapipe 0640, set by name on the machine that runs
	@# the daemons. A staged install (DESTDIR, for a package or an image) touches no user
	@# database and sets no owner: ids of the build machine mean nothing on the target, where
	@# the package's postinst (or the operator) creates the user and sets the group. A real
	@# install as root creates the user from the sysusers snippet (CREATE_USER=no: not) and
	@# sets the group. An operator's configuration is never overwritten, nor re-owned.
	@f=$(DESTDIR)$(SYSCONFDIR)/datapipe.json; \
	if [ -e "$$f" ]; then echo "install: $$f exists, kept as it is"; exit 0; fi; \
	install -m 0640 datapipe.json.example "$$f"; \
	if [ -z "$(DESTDIR)" ] && [ "$(CREATE_USER)" != no ] && [ "$$(id -u)" = 0 ]; then \
		systemd-sysusers $(SYSUSERSDIR)/datapipe.conf && \
		chown root:datapipe "$$f" && echo "install: $$f is root:datapipe 0640"; \
	else \
		echo "install: $$f is 0640; on the machine that runs the daemons:" \
			"systemd-sysusers && chgrp datapipe $(SYSCONFDIR)/datapipe.json"; \
	fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/datapipe-server $(DESTDIR)$(BINDIR)/datapipe-loader \
		$(DESTDIR)$(BINDIR)/datapipe-queue
	rm -f $(DESTDIR)$(MANDIR)/man8/datapipe-server.8 $(DESTDIR)$(MANDIR)/man8/datapipe-loader.8 \
		$(DESTDIR)$(MANDIR)/man8/datapipe-queue.8
	rm -rf $(DESTDIR)$(DATADIR)
	rm -rf $(DESTDIR)$(LIBEXECDIR) $(DESTDIR)$(DOCDIR)
	rm -f $(DESTDIR)$(SYSTEMDUNITDIR)/datapipe-server.service \
		$(DESTDIR)$(SYSTEMDUNITDIR)/datapipe-loader.service \
		$(DESTDIR)$(SYSUSERSDIR)/datapipe.conf $(DESTDIR)$(TMPFILESDIR)/datapipe.conf
	@echo "uninstall: $(DESTDIR)$(SYSCONFDIR)/datapipe.json and /var/lib/datapipe are kept"

# The objects that print the version are rebuilt when debian/changelog gains an entry.
$(BUILD)/etc/cli.o $(BUILD)/server/api.o $(BUILD)/server/main.o $(BUILD)/server/ops.o \
	$(BUILD)/queuetool/main.o: debian/changelog

# The package is built by dpkg-buildpackage from a copy of the tracked files (and new ones
# not ignored) under $(BUILD)/deb, so the build leaves nothing in the work tree; the .deb
# lands in $(BUILD)/deb. lintian must report no error and no warning.
DEB_ARCH = $(shell dpkg --print-architecture 2>/dev/null)
DEB_FILE = $(BUILD)/deb/datapipe_$(VERSION)_$(DEB_ARCH).deb
deb:
	$(MAKE) deps EXTRA_DEB_PACKAGES="debhelper lintian"
	rm -rf $(BUILD)/deb
	mkdir -p $(BUILD)/deb/src
	@git rev-parse --git-dir >/dev/null 2>&1 || { echo "deb: packs the files git knows:" \
		"run it in a git checkout"; exit 1; }
	git ls-files -co --exclude-standard | grep -v '^debian/\.' | tar -cf - -T - | \
		tar -xf - -C $(BUILD)/deb/src
	@# A clean environment: this make's variables (BUILD, SANITIZE, ...) must not reach the
	@# package's own make.
	cd $(BUILD)/deb/src && env -i PATH="$$PATH" HOME="$$HOME" LC_ALL=C.UTF-8 \
		dpkg-buildpackage -us -uc -b >../build.log 2>&1 || \
		{ tail -30 ../build.log; exit 1; }
	lintian --fail-on error,warning $(DEB_FILE)
	@echo "deb: $(DEB_FILE)"

# The package installed, run, upgraded, removed and purged on this machine (as root: CI).
deb-check: deps
	DP_BUILD=$(BUILD) DP_BIN=$(BIN) tests/pg run tests/pkg/test_deb.sh

# Crash-state exploration of the queue (tests/crash/): the driver and the explorer link like
# every test program; the shim is a preloaded .so of its own, never part of libdptest.
# make crashtest explores CRASH_STATES crash states and a fifth more after a recovery (20 to 45
# minutes for 100,000 on a shared 2-core machine); make check runs a sample through
# tests/run-all's "crash" kind.
CRASH_PROGS := $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/crash/crash_*.c))
CRASH_SHIM := $(BUILD)/tests/crash/crash_shim.so
CRASH_STATES ?= 100000
.PHONY: crashtest

test-progs: $(CRASH_PROGS) $(CRASH_SHIM)
SHELL_SCRIPTS += tests/crash/test_crash.sh

$(CRASH_SHIM): tests/crash/shim.c tests/crash/crash_log.h
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -O2 -g -fPIC -shared $(WARN) -I. -o $@ $< -ldl -lpthread

crashtest: $(CRASH_PROGS) $(CRASH_SHIM)
	DP_BUILD=$(BUILD) tests/crash/test_crash.sh $(CRASH_STATES)

# BUILD's tree and the binaries of that build (bin/ for the default one).
clean:
	rm -rf $(BUILD) $(BIN)

-include $(shell find $(BUILD) -path $(BUILD)/deb -prune -o -name '*.d' -print 2>/dev/null)
