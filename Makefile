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
LUA_SRC  := $(wildcard lua/ghost/*.lua) $(wildcard policies/*.lua) deploy/default.lua
LUA_OBJ  := $(LUA_SRC:%.lua=$(BUILD)/luabc/%.o)

BINS     := $(BUILD)/ghostgate $(BUILD)/ghost-upstream $(BUILD)/ghost-bench
CTESTS   := $(patsubst spec/c/%.c,$(BUILD)/spec/%,$(wildcard spec/c/test_*.c))

.PHONY: all deps run test bench fuzz fuzz-replay clean format
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

$(BUILD)/luabc/modules.c: Makefile gateway/gen-modules.sh $(LUA_SRC)
	@mkdir -p $(dir $@)
	gateway/gen-modules.sh $(LUA_SRC) > $@

$(BUILD)/luabc/modules.o: $(BUILD)/luabc/modules.c gateway/lua_modules.h
	$(CC) $(CFLAGS) -Igateway -c $< -o $@

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

# libFuzzer targets (spec/fuzz/fuzz_*.c), built with clang and ASan+UBSan. `make fuzz` runs each
# for FUZZ_TIME seconds, starting from the seed corpus; new inputs stay under build/fuzz/.
FUZZ_CC   ?= clang
FUZZ_TIME ?= 60
FUZZERS   := $(patsubst spec/fuzz/%.c,build/fuzz/%,$(wildcard spec/fuzz/fuzz_*.c))
FUZZ_LUA  := $(LUA_SRC:%.lua=build/luabc/%.o) build/luabc/modules.o

build/fuzz/%: spec/fuzz/%.c $(CORE_SRC) $(wildcard gateway/*.h) $(FUZZ_LUA)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
	    -fno-sanitize-recover=all -Igateway $(shell pkg-config --cflags $(PKGS)) \
	    $< $(CORE_SRC) $(FUZZ_LUA) -o $@ $(LDLIBS)

fuzz: deps $(FUZZERS)
	@for f in $(FUZZERS); do n=$${f#build/fuzz/fuzz_}; mkdir -p build/fuzz/corpus-$$n; \
	  echo "fuzzing $$n for $(FUZZ_TIME) s"; \
	  $$f -max_total_time=$(FUZZ_TIME) -artifact_prefix=build/fuzz/$$n- -print_final_stats=1 \
	      build/fuzz/corpus-$$n spec/fuzz/corpus/$$n || exit 1; done

# Run every seed once: what `make test` does.
fuzz-replay: $(FUZZERS)
	@for f in $(FUZZERS); do n=$${f#build/fuzz/fuzz_}; $$f spec/fuzz/corpus/$$n/* || exit 1; done

format:
	clang-format -i gateway/*.c gateway/*.h bench/*.c spec/c/*.c spec/c/*.h

clean:
	rm -rf build
