/* lua_msgpack.h -- MessagePack values to Lua values and back (for policies, tests, sys.describe
 * and the Lua client library ghost.core). Never on the gateway's proxy path: params and results
 * are forwarded as raw bytes there.
 *
 * Mapping (docs/client.md has the user's version):
 *   MessagePack -> Lua   nil -> nil (with GG_LUA_MARK: ghost.null inside an array or as a map
 *                        value, so that the shape survives), bool -> boolean, int/float ->
 *                        number (integers beyond 2^53 lose precision), str -> string, bin ->
 *                        string (or a ghost.bin value with GG_LUA_MARK), ext -> string of its
 *                        data, array -> sequence (without GG_LUA_MARK nil elements leave
 *                        holes), map -> table (nil and NaN keys dropped).
 *   Lua -> MessagePack   nil and ghost.null -> nil, booleans; whole numbers within int64/uint64
 *                        -> int, other numbers -> float64; string -> str; ghost.bin -> bin; a
 *                        table whose keys are exactly 1..n -> array, an empty table -> array
 *                        (empty map: a table with the ghost.map metatable), any other table
 *                        (one with holes too) -> map. Functions and marked tables go to the
 *                        remote-objects hooks (below) when installed. Cycles, functions, threads, other
 *                        userdata and cdata are refused.
 *
 * ghost.null is the NULL light userdata: the same value as lua-cjson's cjson.null, so values
 * decoded by either library encode with the other. */
#ifndef GG_LUA_MSGPACK_H
#define GG_LUA_MSGPACK_H

#include <lua.h>
#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

/* Registry names of the marker metatables (luaL_getmetatable). */
#define GG_LUA_BIN_MT "ghost.bin"
#define GG_LUA_MAP_MT "ghost.map"

/* Remote objects (docs/protocol.md#remote-objects). When the registry holds a table under
 * GG_LUA_OBJ_HOOKS, the codec defers to it:
 *   marks   a (weak-keyed) set: a table in it is passed by reference, not copied;
 *   export  function(value) -> ext type, payload bytes: called for every function and every
 *           marked table being encoded (an error it raises fails the encoding with its text);
 *   import  function(ext type, payload bytes, origin) -> value: called for every ext value
 *           decoded (origin: the number last given to gg_lua_set_origin, which names the
 *           connection the bytes came from).
 * Without the table, functions are refused and ext values decode to strings, as before. */
#define GG_LUA_OBJ_HOOKS "ghost.objects.hooks"
#define GG_LUA_ORIGIN    "ghost.objects.origin"

/* gg_lua_unpack flags.
 * GG_LUA_MARK: bin -> ghost.bin; an empty map -> a table with the ghost.map metatable; nil
 *   inside an array or map -> ghost.null (a top-level nil stays nil).
 * GG_LUA_ARGS: the value is an argument list (params): its elements count as top-level
 *   values, so with GG_LUA_MARK a nil argument stays nil and a nil inside one is ghost.null. */
#define GG_LUA_MARK 0x01
#define GG_LUA_ARGS 0x02

/* Push the one MessagePack value held in data[0..len) as a Lua value. The bytes are checked
 * with the bounded scanner first (max_depth levels), so a lying count cannot size anything.
 * Maps become tables, arrays become sequences (nil elements leave holes), str and bin become
 * strings, ext becomes a string of its data. Returns 0, or -1 with a reason in err (nothing
 * pushed). */
int gg_lua_push_msgpack(lua_State *L, const char *data, size_t len, unsigned max_depth, char *err,
                        size_t errlen);

/* The same with flags (GG_LUA_MARK); *used (if not NULL) gets the size of the value, so
 * several values that follow each other can be read. Returns 0, or -1 with a reason in err
 * (nothing pushed). */
int gg_lua_unpack(lua_State *L, const char *data, size_t len, unsigned max_depth, unsigned flags,
                  size_t *used, char *err, size_t errlen);

/* Write the Lua value at idx to pk (see the mapping above). Tables nested deeper than
 * max_depth are refused. Returns 0, or -1 with a reason in err ("cannot encode a function
 * (at .x[2])", "cycle (at .self)", "out of memory"); bytes already written by pk are the
 * caller's to discard. */
int gg_lua_pack(lua_State *L, int idx, msgpack_packer *pk, int max_depth, char *err, size_t errlen);

/* Whether the MessagePack values at data[0..len) (one, or several one after another, such as
 * a response's error and result) hold at most max_values values (every array, map, key,
 * string, number, ... counts one). This is the decoding budget: a Lua table costs about 80
 * times the one byte of an empty MessagePack array, so a caller refuses a value before
 * decoding it, not after. Allocation-free, one walk over the bytes, none at all when
 * len <= max_values (every value takes at least one byte). Never reads past len: bytes that
 * are not MessagePack count as what they claim up to where they end. */
int gg_lua_within(const char *data, size_t len, size_t max_values);

/* The connection the next values decoded come from (for the import hook). */
void gg_lua_set_origin(lua_State *L, uint32_t origin);

/* Push ghost.null (the NULL light userdata). */
void gg_lua_push_null(lua_State *L);

/* Push a new ghost.bin value holding data[0..len). */
void gg_lua_push_bin(lua_State *L, const char *data, size_t len);
/* The bytes of the ghost.bin value at idx (and their length in *len), or NULL when the value
 * at idx is not a ghost.bin. */
const char *gg_lua_tobin(lua_State *L, int idx, size_t *len);
/* Push the ghost.map metatable (created on first use). */
void gg_lua_push_map_mt(lua_State *L);

/* The Lua functions bin, is_bin and map, one set for every library that offers them (ghost.core,
 * an adapter's helpers); they ignore upvalues, so a caller may register them in a table whose
 * functions share one.
 *   bin(s): s as a ghost.bin value; a ghost.bin passes through unchanged.
 *   is_bin(v): true when v is a ghost.bin value.
 *   map(t): t (a new table when nil) marked as a MessagePack map, and returned. */
int gg_lua_l_bin(lua_State *L);
int gg_lua_l_is_bin(lua_State *L);
int gg_lua_l_map(lua_State *L);

#endif
