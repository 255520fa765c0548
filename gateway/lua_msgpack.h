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

#endif
