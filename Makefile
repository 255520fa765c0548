# ghostgate build. `make run` and `make test` are the two commands README promises.
CC       ?= cc
BUILD    ?= build
SAN      ?= 0
PKGS     := libuv msgpack luajit jansson libcrypto
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
            -fno-strict-aliasing $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm
# Export symbols so LuaJIT's FFI can reach the core from scripts run by the gateway.
LDFLAGS  += -Wl,-E
ifeq ($(SAN),1)
CFLAGS   += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS  += -fsanitize=address,undefined
BUILD    := build/san
endif

# The core, one concept per file (see gateway/).
CORE_SRC := $(filter-out gateway/main.c,$(wildcard gateway/*.c))
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/%.o)
# Lua modules compiled to bytecode and linked in, so the binary needs no files at run time.
LUA_SRC  := $(wildcard lua/ghost/*.lua) deploy/default.lua
LUA_OBJ  := $(LUA_SRC:%.lua=$(BUILD)/luabc/%.o)

BINS     := $(BUILD)/ghostgate $(BUILD)/ghost-upstream $(BUILD)/ghost-bench
CTESTS   := $(patsubst spec/c/%.c,$(BUILD)/spec/%,$(wildcard spec/c/test_*.c))

.PHONY: all deps run test check-c lint bench fuzz soak clean format
all: $(BINS) $(CTESTS)

deps:
	@deploy/install-deps.sh

$(BUILD)/%.o: %.c $(wildcard gateway/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# Module name from the path: lua/ghost/config.lua -> ghost.config, deploy/default.lua -> default.
$(BUILD)/luabc/%.o: %.lua
	@mkdir -p $(dir $@)
	luajit -b -g -t c -n $(subst /,.,$(patsubst lua/%,%,$*)) $< $(@:.o=.c)
	$(CC) -c -O1 $(@:.o=.c) -o $@

$(BUILD)/luabc/modules.c: Makefile
	@mkdir -p $(dir $@)
	gateway/gen-modules.sh $(LUA_SRC) > $@

$(BUILD)/ghostgate: $(BUILD)/gateway/main.o $(CORE_OBJ) $(LUA_OBJ) $(BUILD)/luabc/modules.o
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/ghost-upstream: $(BUILD)/bench/upstream.o $(BUILD)/gateway/codec.o
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/ghost-bench: $(BUILD)/bench/loadgen.o $(BUILD)/gateway/codec.o
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/spec/%: spec/c/%.c spec/c/unit.h $(CORE_OBJ) $(LUA_OBJ) $(BUILD)/luabc/modules.o
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Igateway $< $(CORE_OBJ) $(LUA_OBJ) $(BUILD)/luabc/modules.o -o $@ $(LDFLAGS) $(LDLIBS)

run: deps all
	@deploy/run-demo.sh $(BUILD)

test: deps all
	@BUILD=$(BUILD) SAN=$(SAN) spec/run

bench: deps all
	@BUILD=$(BUILD) bench/run.sh

format:
	clang-format -i gateway/*.c gateway/*.h bench/*.c spec/c/*.c spec/c/*.h

clean:
	rm -rf build
