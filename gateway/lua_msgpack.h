/* lua_msgpack.h -- MessagePack values to Lua values (for policies and tests), never on the
 * proxy's hot path: params and results are forwarded as raw bytes. */
#ifndef GG_LUA_MSGPACK_H
#define GG_LUA_MSGPACK_H

#include <lua.h>
#include <stddef.h>

/* Push the one MessagePack value held in data[0..len) as a Lua value. The bytes are checked
 * with the bounded scanner first (max_depth levels), so a lying count cannot size anything.
 * Maps become tables, arrays become sequences (nil elements leave holes), str and bin become
 * strings, ext becomes a string of its data. Returns 0, or -1 with a reason in err (nothing
 * pushed). */
int gg_lua_push_msgpack(lua_State *L, const char *data, size_t len, unsigned max_depth, char *err,
                        size_t errlen);

#include <msgpack.h>

/* Pack the Lua value at idx: nil, booleans, numbers (whole numbers in the int64/uint64 range
 * as integers, others as float64), strings as str, tables as arrays when they are sequences
 * (1..n with no other keys; the empty table is an empty array) and as maps otherwise. Refuses
 * functions, userdata, threads, cycles and nesting deeper than max_depth. Returns 0, or -1
 * with a reason in err (the packer's output is then incomplete: discard it). */
int gg_lua_pack(lua_State *L, int idx, msgpack_packer *pk, int max_depth, char *err, size_t errlen);

#endif
