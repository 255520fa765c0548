# ghostgate build. `make run` and `make test` are the two commands README promises.
CC       ?= cc
BUILD    ?= build
SAN      ?= 0
PKGS     := libuv msgpack luajit jansson libssl libcrypto hiredis
# The package flags are read when this Makefile is parsed. The targets a new user types (run,
# test, bench, ...) install the packages first and then build in a sub-make, which parses this
# file again once pkg-config and the .pc files exist: never expand them before `deps` has run.
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
SO_LIBS    := $(shell pkg-config --libs libuv msgpack libssl libcrypto hiredis 2>/dev/null)
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
            -fno-strict-aliasing -Igateway $(PKG_CFLAGS)
LDLIBS   += $(PKG_LIBS) -lhttp_parser -lm
# Export symbols so LuaJIT's FFI can reach the core from scripts run by the gateway.
LDFLAGS  += -Wl,-E
ifeq ($(SAN),1)
CFLAGS   += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS  += -fsanitize=address,undefined
BUILD    := build/san
endif

# The gateway, one concept per file, in layer folders (docs/architecture.md): every include is
# written "folder/file.h" from gateway/.
CORE_SRC := $(filter-out gateway/cli/main.c,$(wildcard gateway/*/*.c))
GG_HDRS  := $(wildcard gateway/*/*.h)
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/%.o)
# Lua modules compiled to bytecode and linked in, so the binary needs no files at run time.
LUA_SRC  := $(wildcard lua/ghost/*.lua) $(wildcard policies/*.lua) deploy/default.lua
LUA_OBJ  := $(LUA_SRC:%.lua=$(BUILD)/luabc/%.o)

BINS     := $(BUILD)/ghostgate $(BUILD)/ghost-upstream $(BUILD)/ghost-bench
CTESTS   := $(patsubst spec/c/%.c,$(BUILD)/spec/%,$(wildcard spec/c/test_*.c))

.PHONY: all build deps run test bench fuzz fuzz-replay clean format
all: $(BINS) $(CTESTS)

deps:
	@deploy/install-deps.sh

# deps, then `all` in a fresh make that sees the installed packages' flags.
build: deps
	@$(MAKE) --no-print-directory all

$(BUILD)/%.o: %.c $(GG_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# Module name from the path: lua/ghost/config.lua -> ghost.config, deploy/default.lua -> default.
$(BUILD)/luabc/%.o: %.lua
	@mkdir -p $(dir $@)
	luajit -b -g -t c -n $(subst /,.,$(patsubst lua/%,%,$*)) $< $(@:.o=.c)
	$(CC) -c -O1 $(@:.o=.c) -o $@

$(BUILD)/luabc/modules.c: Makefile gateway/lua/gen-modules.sh $(LUA_SRC)
	@mkdir -p $(dir $@)
	gateway/lua/gen-modules.sh $(LUA_SRC) > $@

$(BUILD)/luabc/modules.o: $(BUILD)/luabc/modules.c gateway/lua/lua_modules.h
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/ghostgate: $(BUILD)/gateway/cli/main.o $(CORE_OBJ) $(LUA_OBJ) $(BUILD)/luabc/modules.o
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/ghost-upstream: $(BUILD)/bench/upstream.o $(BUILD)/gateway/core/codec.o
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/ghost-bench: $(BUILD)/bench/loadgen.o $(BUILD)/gateway/core/codec.o
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/spec/%: spec/c/%.c $(wildcard spec/c/*.h) $(CORE_OBJ) $(LUA_OBJ) $(BUILD)/luabc/modules.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(CORE_OBJ) $(LUA_OBJ) $(BUILD)/luabc/modules.o -o $@ $(LDFLAGS) $(LDLIBS)

run: build
	@deploy/run-demo.sh $(BUILD)

test: build
	@BUILD=$(BUILD) SAN=$(SAN) spec/run

bench: build
	@deploy/install-deps.sh bench
	@BUILD=$(BUILD) bench/run.sh

# libFuzzer targets (spec/fuzz/fuzz_*.c), built with clang and ASan+UBSan. `make fuzz` runs each
# for FUZZ_TIME seconds, starting from the seed corpus; new inputs stay under build/fuzz/.
FUZZ_CC   ?= clang
FUZZ_TIME ?= 60
FUZZERS   := $(patsubst spec/fuzz/%.c,build/fuzz/%,$(wildcard spec/fuzz/fuzz_*.c))
FUZZ_LUA  := $(LUA_SRC:%.lua=build/luabc/%.o) build/luabc/modules.o

build/fuzz/%: spec/fuzz/%.c $(CORE_SRC) $(GG_HDRS) $(FUZZ_LUA)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
	    -fno-sanitize-recover=all -Igateway $(PKG_CFLAGS) \
	    $< $(CORE_SRC) $(FUZZ_LUA) -o $@ $(LDLIBS)

fuzz: deps
	@$(MAKE) --no-print-directory fuzz-run

.PHONY: fuzz-run
fuzz-run: $(FUZZERS)
	@for f in $(FUZZERS); do n=$${f#build/fuzz/fuzz_}; mkdir -p build/fuzz/corpus-$$n; \
	  echo "fuzzing $$n for $(FUZZ_TIME) s"; \
	  $$f -max_total_time=$(FUZZ_TIME) -artifact_prefix=build/fuzz/$$n- -print_final_stats=1 \
	      build/fuzz/corpus-$$n spec/fuzz/corpus/$$n || exit 1; done

# Run every seed once: what `make test` does.
fuzz-replay: $(FUZZERS)
	@for f in $(FUZZERS); do n=$${f#build/fuzz/fuzz_}; $$f spec/fuzz/corpus/$$n/* || exit 1; done

format:
	clang-format -i gateway/*/*.c gateway/*/*.h bench/*.c spec/c/*.c spec/c/*.h

clean:
	rm -rf build

# --- The Lua client library (require "ghost") ------------------------------------------------
# build/lua/ghost/core.so is ghost.core for plain luajit: the same gateway/ sources the binary uses,
# compiled position-independent, linked with libuv and msgpack-c but not LuaJIT (the
# interpreter provides it). Only luaopen_ghost_core is exported. A SAN=1 build makes it without
# the sanitizers, so that an uninstrumented luajit (busted) can load it; the sanitizers cover
# the same code through `ghostgate run`. The Lua half is lua/ghost/*.lua (embedded in the
# binary too). Plain luajit finds both with:
#   export LUA_PATH="$PWD/lua/?.lua;$PWD/lua/?/init.lua;;" LUA_CPATH="$PWD/build/lua/?.so;;"
GHOST_SO     := $(BUILD)/lua/ghost/core.so
GHOST_SO_SRC := $(wildcard gateway/lua/lua_ghost*.c) gateway/lua/lua_msgpack.c gateway/core/loop.c \
                gateway/core/stream.c gateway/core/calls.c gateway/core/buf.c gateway/core/codec.c \
                gateway/core/addr.c gateway/core/log.c gateway/core/errors.c gateway/lua/lua_consts.c \
                gateway/core/redis.c gateway/core/registry.c gateway/lua/lua_registry.c \
                gateway/core/tls.c gateway/lua/tls_config.c
GHOST_SO_OBJ := $(GHOST_SO_SRC:%.c=$(BUILD)/pic/%.o)
PIC_CFLAGS   := $(filter-out -fsanitize=% -fno-sanitize-recover=% -O1,$(CFLAGS)) -fPIC -fvisibility=hidden

# ghost.consts lives in core.so too; the link lets plain luajit require it on its own.
GHOST_CONSTS := $(BUILD)/lua/ghost/consts.so

all: $(GHOST_SO) $(GHOST_CONSTS)

$(BUILD)/pic/%.o: %.c $(GG_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(PIC_CFLAGS) -c $< -o $@

$(GHOST_SO): $(GHOST_SO_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared $^ -o $@ $(SO_LIBS) -lm

$(GHOST_CONSTS): $(GHOST_SO)
	ln -sf core.so $@

# `make install PREFIX=/usr/local`: the binary, the Lua modules and ghost.core where plain
# luajit looks by default ($PREFIX/share/lua/5.1, $PREFIX/lib/lua/5.1); the man page, the docs
# and the example configs ($PREFIX/share/man/man1, $PREFIX/share/doc/ghostgate); the systemd
# unit ($PREFIX/lib/systemd/system, its ExecStart pointing at $PREFIX/bin). `install-files`
# does the same without building first.
PREFIX ?= /usr/local
DOCDIR := $(DESTDIR)$(PREFIX)/share/doc/ghostgate
.PHONY: install install-files
install: build
	@$(MAKE) --no-print-directory install-files
install-files:
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/lua/5.1/ghost \
	    $(DESTDIR)$(PREFIX)/lib/lua/5.1/ghost $(DESTDIR)$(PREFIX)/share/man/man1 \
	    $(DOCDIR)/examples $(DESTDIR)$(PREFIX)/lib/systemd/system
	install -m 755 $(BUILD)/ghostgate $(DESTDIR)$(PREFIX)/bin/ghostgate
	install -m 644 lua/ghost/*.lua $(DESTDIR)$(PREFIX)/share/lua/5.1/ghost/
	install -m 755 $(GHOST_SO) $(DESTDIR)$(PREFIX)/lib/lua/5.1/ghost/core.so
	ln -sf core.so $(DESTDIR)$(PREFIX)/lib/lua/5.1/ghost/consts.so
	install -m 644 deploy/man/ghostgate.1 $(DESTDIR)$(PREFIX)/share/man/man1/ghostgate.1
	install -m 644 README.md docs/*.md $(DOCDIR)/
	install -m 644 deploy/examples/*.lua $(DOCDIR)/examples/
	sed 's|/usr/local/bin/ghostgate|$(PREFIX)/bin/ghostgate|' deploy/ghostgate.service \
	    > $(DESTDIR)$(PREFIX)/lib/systemd/system/ghostgate.service
	chmod 644 $(DESTDIR)$(PREFIX)/lib/systemd/system/ghostgate.service

# --- Robustness: soak and valgrind (docs/robustness.md) ----------------------------------------
# `make soak DURATION=60`: mixed load with faults on a schedule through one gateway; prints calls
# sent vs answered, errors by code and the gateway's RSS; fails on an unanswered call or RSS
# growth beyond its bound (bench/soak.sh).
# `make valgrind`: a representative subset of the specs with the gateway under valgrind
# (memcheck, full leak check); a gateway with an error or a definite/indirect leak exits 99 and
# its spec fails. VALGRIND_SPECS picks the spec files.
DURATION ?= 60
VALGRIND ?= valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect \
            --show-leak-kinds=definite,indirect --error-exitcode=99 --track-fds=no \
            --suppressions=spec/support/valgrind.supp
VALGRIND_SPECS ?= spec/02-core/round_trip_spec.lua spec/02-core/malformed_input_spec.lua \
                  spec/02-core/limits_spec.lua spec/02-core/upstream_failures_spec.lua \
                  spec/02-core/client_disconnect_spec.lua spec/02-core/notifications_spec.lua \
                  spec/02-core/drain_spec.lua spec/05-faults/upstream_faults_spec.lua \
                  spec/05-faults/cap_and_reload_spec.lua spec/04-client/gateway_objects_spec.lua \
                  spec/04-client/gateway_callbacks_spec.lua spec/04-client/gateway_promises_spec.lua \
                  spec/03-policies/callbacks_policies_spec.lua spec/08-cluster/discover_spec.lua
.PHONY: soak valgrind
soak: build
	@BUILD=$(BUILD) DURATION=$(DURATION) bench/soak.sh

# SAN=1 in spec/run's environment only relaxes what a slow, instrumented gateway cannot meet (RSS
# bounds, latency ratios); the binaries are the plain build.
valgrind: build
	@GG_WRAPPER="$(VALGRIND)" GG_TIMEOUT_SCALE=$${GG_TIMEOUT_SCALE:-8} GG_NO_FUZZ=1 BUILD=$(BUILD) \
	    SAN=1 spec/run $(VALGRIND_SPECS)
