/* fuzz_config.c -- libFuzzer target for the config loader.
 *
 * The input is a MessagePack value turned into a Lua table and validated by ghost.config,
 * then read into C structs: everything the loader does except running the file's code (a
 * config file is trusted code; fuzzing arbitrary Lua would only find os.exit). */
#include "proxy/config.h"
#include "lua/lua_bridge.h"
#include "lua/lua_msgpack.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    lua_State *L = gg_lua_new();
    if (!L) abort();
    if (gg_lua_push_msgpack(L, (const char *)data, size, 16, err, sizeof err)) {
        gg_lua_close(L);
        return 0;
    }
    gg_config *c = gg_config_from_table(L, "fuzz", err, sizeof err);
    gg_config_free(c);
    return 0;
}
