# vault-keysource build.
#
#   make            build everything into build/
#   make test       install what is missing, build, run every test (unit, integration, secret scan)
#   make demo       the end-to-end demonstration (see README)
#   make ui         the admin web UI (vks serve) with demo data until Ctrl-C (docs/serve.md)
#   make bench      benchmarks (not tests); results in build/bench/
#   make asan       the test suite built and run under AddressSanitizer (build-asan/)
#   make tsan       the concurrency tests under ThreadSanitizer (build-tsan/)
#   make fuzz       short libFuzzer runs of every parser (build-fuzz/)
#   make deb        the Debian package, build/vault-keysource_<version>_<arch>.deb (docs/packaging.md)
#   make clean
#
# Directories are discovered by wildcard so that adding a file needs no Makefile edit:
#   src/*.c              -> $(BUILD)/libvks.a          (the C core, no Lua)
#   plugin/*.c           -> $(BUILD)/vault_keysource.so (exports only luaopen_vault_keysource)
#   cli/*.c              -> $(BUILD)/vks               (operator CLI)
#   common/*.cpp         -> $(BUILD)/libvkstoml.a      (toml++ behind a C API, host and agent)
#   host/*.c host/*.cpp  -> $(BUILD)/vks-policy        (KumoMTA-style policy host)
#   agent/*.c            -> $(BUILD)/vks-agent         (the MTA-facing daemon, libevent)
#   tests/vault-dev/*.c  -> $(BUILD)/vault-dev         (Vault-compatible development server)
#   tests/unit/test_*.c  -> $(BUILD)/tests/test_*      (Criterion, one binary per file)
#   tests/helpers/*.c    -> $(BUILD)/tests/helpers/*   (small programs the integration tests run)
#   bench/bench_*.c      -> $(BUILD)/bench/bench_*  (each with bench/lib/benchlib.c)

# First pass: a fresh machine may lack the compiler, pkg-config and the -dev packages, and the
# flags below are discovered with pkg-config when make reads this file. So every goal first runs
# scripts/bootstrap (installs only what is missing; quick when all is there), then re-runs make on
# the same goal in a sub-make that reads this file again with the packages present.
ifeq ($(VKS_BOOTSTRAPPED),)
GOALS := $(if $(MAKECMDGOALS),$(MAKECMDGOALS),all)
.PHONY: $(GOALS)
$(GOALS):
	@scripts/bootstrap
	@$(MAKE) --no-print-directory VKS_BOOTSTRAPPED=1 $@
else

BUILD   ?= build
SAN     ?=
OPT     ?= -O2
PREFIX  ?= /usr/local

CC      ?= cc
CXX     ?= c++
PKGS    := lua5.4 libcurl json-c openssl

ifeq ($(origin CC),default)
CC := cc
endif

SANFLAGS := $(if $(SAN),-fsanitize=$(SAN) -fno-omit-frame-pointer,)
WARN     := -Wall -Wextra -Wpedantic -Werror
CFLAGS_COMMON := -std=c17 $(WARN) $(OPT) -g -D_GNU_SOURCE -fPIC -fvisibility=hidden \
                 -fstack-protector-strong -D_FORTIFY_SOURCE=2 $(SANFLAGS) $(EXTRA_CFLAGS)
CXXFLAGS_COMMON := -std=c++17 -Wall -Wextra -Werror $(OPT) -g -fPIC -fvisibility=hidden $(SANFLAGS)

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs libcurl json-c openssl 2>/dev/null)
LUA_CFLAGS := $(shell pkg-config --cflags lua5.4 2>/dev/null)
LUA_LIBS   := $(shell pkg-config --libs lua5.4 2>/dev/null)
MHD_LIBS   := $(shell pkg-config --libs libmicrohttpd 2>/dev/null)
EVENT_CFLAGS := $(shell pkg-config --cflags libevent libevent_pthreads libevent_openssl 2>/dev/null)
EVENT_LIBS := $(shell pkg-config --libs libevent libevent_pthreads libevent_openssl 2>/dev/null)
CRIT_LIBS  := $(shell pkg-config --libs criterion 2>/dev/null)

CFLAGS   := $(CFLAGS_COMMON) -Isrc $(PKG_CFLAGS)
LDFLAGS  := $(SANFLAGS) -Wl,-z,relro,-z,now $(EXTRA_LDFLAGS)
CORE_LIBS := $(PKG_LIBS) -lpthread

CORE_SRC   := $(wildcard src/*.c)
CORE_OBJ   := $(CORE_SRC:%.c=$(BUILD)/obj/%.o)
PLUGIN_SRC := $(wildcard plugin/*.c)
PLUGIN_OBJ := $(PLUGIN_SRC:%.c=$(BUILD)/obj/%.o)
CLI_SRC    := $(wildcard cli/*.c)
CLI_OBJ    := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
HOST_SRC   := $(wildcard host/*.c)
HOST_CXX   := $(wildcard host/*.cpp)
HOST_OBJ   := $(HOST_SRC:%.c=$(BUILD)/obj/%.o) $(HOST_CXX:%.cpp=$(BUILD)/obj/%.o)
TOML_CXX   := $(wildcard common/*.cpp)
TOML_OBJ   := $(TOML_CXX:%.cpp=$(BUILD)/obj/%.o)
AGENT_SRC  := $(wildcard agent/*.c)
AGENT_OBJ  := $(AGENT_SRC:%.c=$(BUILD)/obj/%.o)
WEB_SRC    := $(wildcard web/*.c)
WEB_OBJ    := $(WEB_SRC:%.c=$(BUILD)/obj/%.o)
DEV_SRC    := $(wildcard tests/vault-dev/*.c)
DEV_OBJ    := $(DEV_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
HELPER_SRC := $(wildcard tests/helpers/*.c)
HELPER_BIN := $(HELPER_SRC:tests/helpers/%.c=$(BUILD)/tests/helpers/%)
BENCH_SRC  := $(wildcard bench/bench_*.c)
BENCH_BIN  := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

TARGETS := $(BUILD)/libvks.a
ifneq ($(PLUGIN_SRC),)
TARGETS += $(BUILD)/vault_keysource.so
endif
ifneq ($(CLI_SRC),)
TARGETS += $(BUILD)/vks
endif
ifneq ($(HOST_SRC)$(HOST_CXX),)
TARGETS += $(BUILD)/vks-policy
endif
ifneq ($(DEV_SRC),)
TARGETS += $(BUILD)/vault-dev
endif
ifneq ($(AGENT_SRC),)
TARGETS += $(BUILD)/vks-agent
endif
ifneq ($(WEB_SRC),)
TARGETS += $(BUILD)/vks-serve
endif

.PHONY: all bootstrap test unit-tests demo bench asan tsan fuzz clean install check-exports deb

all: $(TARGETS) $(UNIT_BIN) $(HELPER_BIN)

bootstrap:
	@scripts/bootstrap

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LUA_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS_COMMON) -Isrc -Ihost -Icommon $(LUA_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/agent/%.o: agent/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Icommon $(EVENT_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/web/%.o: web/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Icommon $(EVENT_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libvkstoml.a: $(TOML_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/libvks.a: $(CORE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

# The module: the core is linked in whole, every symbol hidden but the entry point. -z nodelete:
# the process-wide runtime (cache, arena, audit chain) must survive the last lua_State closing.
$(BUILD)/vault_keysource.so: $(PLUGIN_OBJ) $(BUILD)/libvks.a plugin/exports.map
	$(CC) -shared $(LDFLAGS) -Wl,--version-script=plugin/exports.map -Wl,-z,relro,-z,now,-z,nodelete \
	  -o $@ $(PLUGIN_OBJ) $(BUILD)/libvks.a $(CORE_LIBS)

$(BUILD)/vks: $(CLI_OBJ) $(BUILD)/libvks.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libvks.a $(CORE_LIBS)

$(BUILD)/vks-policy: $(HOST_OBJ) $(BUILD)/libvks.a $(BUILD)/libvkstoml.a
	$(CXX) $(LDFLAGS) -rdynamic -o $@ $(HOST_OBJ) $(BUILD)/libvks.a $(BUILD)/libvkstoml.a $(LUA_LIBS) $(shell pkg-config --libs libcurl openssl json-c) -ldl -lpthread

# The agent is C, but links the C++ runtime for libvkstoml.a (toml++).
$(BUILD)/vks-agent: $(AGENT_OBJ) $(BUILD)/libvks.a $(BUILD)/libvkstoml.a
	$(CXX) $(LDFLAGS) -o $@ $(AGENT_OBJ) $(BUILD)/libvks.a $(BUILD)/libvkstoml.a $(EVENT_LIBS) $(CORE_LIBS)

# vks-serve (`vks serve`, web/): the admin API and UI on the agent's libevent + OpenSSL; C++ runtime
# for libvkstoml.a as the agent.
$(BUILD)/vks-serve: $(WEB_OBJ) $(BUILD)/libvks.a $(BUILD)/libvkstoml.a
	$(CXX) $(LDFLAGS) -o $@ $(WEB_OBJ) $(BUILD)/libvks.a $(BUILD)/libvkstoml.a $(EVENT_LIBS) $(CORE_LIBS)

$(BUILD)/vault-dev: $(DEV_OBJ)
	$(CC) $(LDFLAGS) -o $@ $(DEV_OBJ) $(MHD_LIBS) $(PKG_LIBS) -lpthread

# test_agent: the agent's pure parts (wire formats, key forms, paths, config errors) and its libs.
AGENT_TEST_OBJ := $(filter-out $(BUILD)/obj/agent/main.o,$(AGENT_OBJ))
$(BUILD)/tests/test_agent: tests/unit/test_agent.c $(AGENT_TEST_OBJ) $(BUILD)/libvks.a $(BUILD)/libvkstoml.a
	@mkdir -p $(dir $@) $(BUILD)/obj/tests/unit
	$(CC) $(CFLAGS) -Iagent -Icommon $(EVENT_CFLAGS) -Itests/unit -c -o $(BUILD)/obj/tests/unit/test_agent.o $<
	$(CXX) $(LDFLAGS) -o $@ $(BUILD)/obj/tests/unit/test_agent.o $(AGENT_TEST_OBJ) $(BUILD)/libvks.a $(BUILD)/libvkstoml.a $(CRIT_LIBS) $(EVENT_LIBS) $(CORE_LIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libvks.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(BUILD)/libvks.a $(CRIT_LIBS) $(CORE_LIBS) $(LDFLAGS)

$(BUILD)/tests/helpers/%: tests/helpers/%.c $(BUILD)/libvks.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LUA_CFLAGS) -o $@ $< $(BUILD)/libvks.a $(LUA_LIBS) $(CORE_LIBS) $(LDFLAGS)

$(BUILD)/bench/%: bench/%.c bench/lib/benchlib.c bench/lib/benchlib.h $(BUILD)/libvks.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LUA_CFLAGS) -Ibench/lib -o $@ $< bench/lib/benchlib.c $(BUILD)/libvks.a $(LUA_LIBS) $(CORE_LIBS) $(LDFLAGS)

# The whole suite: unit tests, integration tests, then the scan of every output for test secrets.
test: all
	@BUILD=$(BUILD) tests/run

unit-tests: all
	@BUILD=$(BUILD) tests/run --unit-only

check-exports: $(BUILD)/vault_keysource.so
	@tests/check-exports $(BUILD)/vault_keysource.so

demo: all
	@BUILD=$(BUILD) scripts/demo

.PHONY: ui
ui: all
	@BUILD=$(BUILD) scripts/ui-demo

bench: all $(BENCH_BIN)
	@BUILD=$(BUILD) bench/run

asan:
	$(MAKE) BUILD=build-asan SAN=address,undefined OPT=-O1 test

tsan:
	$(MAKE) BUILD=build-tsan SAN=thread OPT=-O1 all
	@BUILD=build-tsan tests/run --tsan

fuzz:
	@scripts/fuzz

# make install [PREFIX=/usr/local] [DESTDIR=staging-root]: the programs, the Lua module where
# Lua 5.4 finds it (lib/lua/5.4, the default package.cpath), the Lua helpers vks-policy loads
# (share/vault-keysource/lua, found relative to the installed program), the man pages and the
# user docs. Every file written is listed in $(MANIFEST) (paths without DESTDIR; a reinstall
# keeps the earlier entries), and `make uninstall` with the same PREFIX and DESTDIR removes
# exactly those files, then the directories of our own it leaves empty (bin/, man1/ and the other
# shared directories stay). Without a manifest it removes the list this Makefile would install.
# install-module installs the Lua module alone (what the rockspec's `luarocks make` uses).
BINDIR      = $(PREFIX)/bin
LUA_CMODDIR = $(PREFIX)/lib/lua/5.4
VKS_SHARE   = $(PREFIX)/share/vault-keysource
MANDIR      = $(PREFIX)/share/man
DOCDIR      = $(PREFIX)/share/doc/vault-keysource
MANIFEST    = $(VKS_SHARE)/installed-files
INST_LUA    := $(wildcard lua/*.lua)
INST_MAN1   := $(wildcard man/*.1)
INST_DOCS   := README.md $(wildcard docs/*.md)
INST_EXAMPLES := $(wildcard policy-examples/*)
SBINDIR     = $(PREFIX)/sbin
INST_AGENT  := agent/vks-agent.service agent/vks-agent.toml.example
INST_WEB    := $(wildcard web/static/*) docs/openapi.json
INSTALLED_FILES = $(BINDIR)/vks $(BINDIR)/vks-policy $(BINDIR)/vks-serve $(LUA_CMODDIR)/vault_keysource.so \
  $(addprefix $(VKS_SHARE)/web/,$(notdir $(INST_WEB))) \
  $(SBINDIR)/vks-agent $(MANDIR)/man8/vks-agent.8 $(INST_AGENT:agent/%=$(VKS_SHARE)/agent/%) \
  $(INST_LUA:lua/%=$(VKS_SHARE)/lua/%) $(INST_MAN1:man/%=$(MANDIR)/man1/%) \
  $(addprefix $(DOCDIR)/,$(notdir $(INST_DOCS))) $(INST_EXAMPLES:policy-examples/%=$(DOCDIR)/examples/%)

.PHONY: uninstall install-module

install: $(BUILD)/vks $(BUILD)/vks-policy $(BUILD)/vault_keysource.so $(BUILD)/vks-agent $(BUILD)/vks-serve
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LUA_CMODDIR) $(DESTDIR)$(VKS_SHARE)/lua $(DESTDIR)$(VKS_SHARE)/web \
	  $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(DOCDIR)/examples \
	  $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(VKS_SHARE)/agent
	install -m 0755 $(BUILD)/vks $(BUILD)/vks-policy $(BUILD)/vks-serve $(DESTDIR)$(BINDIR)/
	install -m 0644 $(INST_WEB) $(DESTDIR)$(VKS_SHARE)/web/
	install -m 0755 $(BUILD)/vks-agent $(DESTDIR)$(SBINDIR)/
	install -m 0644 agent/vks-agent.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 $(INST_AGENT) $(DESTDIR)$(VKS_SHARE)/agent/
	install -m 0644 $(BUILD)/vault_keysource.so $(DESTDIR)$(LUA_CMODDIR)/
	install -m 0644 $(INST_LUA) $(DESTDIR)$(VKS_SHARE)/lua/
	install -m 0644 $(INST_MAN1) $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 $(INST_DOCS) $(DESTDIR)$(DOCDIR)/
	install -m 0644 $(INST_EXAMPLES) $(DESTDIR)$(DOCDIR)/examples/
	@{ cat $(DESTDIR)$(MANIFEST) 2>/dev/null || true; printf '%s\n' $(INSTALLED_FILES); } \
	  | LC_ALL=C sort -u > $(DESTDIR)$(MANIFEST).new && mv $(DESTDIR)$(MANIFEST).new $(DESTDIR)$(MANIFEST)
	@echo "installed under $(DESTDIR)$(PREFIX); the list is in $(DESTDIR)$(MANIFEST)"

install-module: $(BUILD)/vault_keysource.so
	install -d $(DESTDIR)$(LUA_CMODDIR)
	install -m 0644 $(BUILD)/vault_keysource.so $(DESTDIR)$(LUA_CMODDIR)/

# Only absolute paths without a '..' segment are taken from the manifest.
uninstall:
	@set -e; m='$(DESTDIR)$(MANIFEST)'; \
	if [ -f "$$m" ]; then files=$$(cat "$$m"); else files='$(INSTALLED_FILES)'; fi; \
	for f in $$files; do \
	  case "$$f" in /*) ;; *) echo "uninstall: skipping $$f (not absolute)" >&2; continue ;; esac; \
	  case "$$f/" in */../*) echo "uninstall: skipping $$f" >&2; continue ;; esac; \
	  rm -f '$(DESTDIR)'"$$f"; \
	done; \
	rm -f "$$m"; \
	for d in $(VKS_SHARE)/lua $(VKS_SHARE)/agent $(VKS_SHARE)/web $(VKS_SHARE) $(DOCDIR)/examples $(DOCDIR); do \
	  if [ -d '$(DESTDIR)'"$$d" ]; then rmdir '$(DESTDIR)'"$$d" 2>/dev/null || true; fi; \
	done; \
	echo "uninstalled from $(DESTDIR)$(PREFIX)"

# make deb: the Debian package (scripts/build-deb, packaging/deb/, docs/packaging.md): a staged
# `make install PREFIX=/usr` in Debian's places, Depends from dpkg-shlibdeps, checked by lintian.
# A sanitizer build is refused before anything is (re)built in it with the normal flags.
ifneq ($(filter deb,$(MAKECMDGOALS)),)
ifneq ($(SAN)$(shell ldd $(BUILD)/vks 2>/dev/null | grep -E 'lib(asan|tsan|ubsan)'),)
$(error make deb packages a normal build, not a sanitizer build ($(BUILD)$(if $(SAN), with SAN=$(SAN))): make deb BUILD=build)
endif
endif
deb: $(BUILD)/vks $(BUILD)/vks-policy $(BUILD)/vault_keysource.so $(BUILD)/vks-agent
	@BUILD=$(BUILD) scripts/build-deb

clean:
	rm -rf build build-asan build-tsan build-fuzz

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

endif
