/* json.h -- the MessagePack <-> JSON mapping (CLI output and input, JSON-RPC front door).
 *
 * JSON is handled by jansson, MessagePack is decoded by msgpack-c and written by its
 * packer, base64 is OpenSSL's. The mapping is exact: a value either converts and comes
 * back as the same value, or the conversion fails with a message; nothing is silently
 * changed, truncated or replaced.
 *
 *   MessagePack             JSON
 *   -----------             ----
 *   nil                     null
 *   true / false            true / false
 *   int in int64 range      integer
 *   uint > INT64_MAX        {"$uint": "<decimal>"}   (jansson integers are int64)
 *   float32 / float64       real (float32 comes back as float64 of the same value;
 *                           NaN and infinities are an error: JSON has no such numbers)
 *   str (valid UTF-8)       string (may hold U+0000); invalid UTF-8 is an error, use bin
 *   bin                     {"$bin": "<base64>"}
 *   ext                     {"$ext": <type -128..127>, "data": "<base64>"}
 *   array                   array
 *   map with str keys       object, key order kept; a non-str key, a key that is not
 *                           UTF-8, a duplicate key or a reserved key is an error (a key
 *                           holding U+0000 converts, but jansson's parser refuses it in text)
 *
 * Reserved keys: a map holding a key "$uint", "$bin" or "$ext" is refused, so every JSON
 * object with such a key is a tag. Read back, a tag must have exactly the shape above
 * ("$bin" alone, "$uint" alone, "$ext" with "data"); base64 is the standard alphabet with
 * padding, no whitespace, canonical (re-encodes to the same text), else an error.
 * JSON integers beyond the int64 range are refused by jansson's parser ("too big
 * integer"); larger unsigned values are written as {"$uint": "..."}.
 *
 * Depth: a scalar has depth 0, [] and {} depth 1, [[1]] depth 2. Values deeper than
 * max_depth are refused. Decoding MessagePack is capped at GG_JSON_DEPTH_MAX whatever
 * max_depth says: msgpack-c's C unpacker has a fixed stack of that many levels.
 *
 * Errors: every function writes a one-line reason into err (errlen bytes, NUL-terminated,
 * err may be NULL) and returns NULL or a negative value. */
#ifndef GG_JSON_H
#define GG_JSON_H

#include <stddef.h>

#include <jansson.h>
#include <msgpack.h>

/* msgpack-c's MSGPACK_EMBED_STACK_SIZE: deepest nesting its C unpacker can decode. */
#define GG_JSON_DEPTH_MAX 32

/* Decode the single MessagePack value in buf[0..len) to JSON. The bytes are walked with
 * gg_scan() first (bounds, depth, exactly one value, no trailing bytes), then decoded with
 * msgpack-c into a zone that is freed before returning. Returns a new reference the
 * caller owns (json_decref), or NULL and a reason in err. */
json_t *gg_json_from_msgpack(const char *buf, size_t len, int max_depth, char *err, size_t errlen);

/* Same for a value msgpack-c has already decoded; o stays owned by the caller (its zone).
 * Returns a new reference the caller owns, or NULL. */
json_t *gg_json_from_object(const msgpack_object *o, int max_depth, char *err, size_t errlen);

/* Append the MessagePack encoding of v to out, which the caller initialised
 * (msgpack_sbuffer_init) and owns (msgpack_sbuffer_destroy, or take out->data and free()
 * it). On error out->size is restored, so out holds exactly what it held before.
 * v is only read. Returns 0, or -1 with a reason in err. */
int gg_json_to_msgpack(const json_t *v, int max_depth, msgpack_sbuffer *out, char *err,
                       size_t errlen);

/* Write v through any msgpack-c packer (e.g. one whose callback fills a caller buffer).
 * The packer and its buffer are the caller's. On error part of v may have been written:
 * the caller discards the output. Also fails if the packer's callback fails. Returns 0 or
 * -1 with a reason in err. */
int gg_json_pack(msgpack_packer *pk, const json_t *v, int max_depth, char *err, size_t errlen);

#endif
