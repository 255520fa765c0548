#!/usr/bin/python3
"""spec/fuzz/seeds.py -- (re)write the hand-made seeds of the newer fuzz targets.

    /usr/bin/python3 spec/fuzz/seeds.py   # writes spec/fuzz/corpus/{json_mp,json_text,lua_msgpack,stream,http}/seed-*

Seeds are named seed-<what>; inputs found by fuzzing that crashed a target are kept next to
them as crash-<what> (never rewritten here). Each target's input format is in its .c file:
  json_mp      1 byte max_depth selector, then one MessagePack value
  json_text    1 byte max_depth selector, then JSON text
  lua_msgpack  1 byte (max_depth selector, bit 7: ghost.bin/null marks, bit 6: an argument list),
               then one MessagePack value
  stream       4 bytes split seed, 1 byte mode (bits 0-1 limits, bit 2 pauses), then the stream
  http         4 bytes seed (splits, requests answered later), 1 byte mode (bits 0-1 max_body),
               then the bytes of an HTTP connection
"""
import os
import struct

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))


def pk(v):
    return msgpack.packb(v, use_bin_type=True)


def ext(t, data):
    return pk(msgpack.ExtType(t, data))


# MessagePack values, one of each shape, the known traps included.
VALUES = {
    "nil": b"\xc0",
    "bools": pk([True, False]),
    "ints": pk([0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1,
                -1, -32, -33, -128, -129, -32768, -32769, -2**31, -2**31 - 1, -2**63]),
    "int_wide_encodings": b"\x96\xcc\x01\xcd\x00\x01\xce\x00\x00\x00\x01\xcf\x00\x00\x00\x00\x00\x00\x00\x01"
                          b"\xd0\x01\xd3\x00\x00\x00\x00\x00\x00\x00\x01",
    "floats": b"\x94\xca\x3f\xc0\x00\x00\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00"
              b"\xcb\x80\x00\x00\x00\x00\x00\x00\x00\xcb\x7f\xef\xff\xff\xff\xff\xff\xff",
    "nan": b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00",
    "inf32": b"\xca\x7f\x80\x00\x00",
    "strs": pk(["", "a", "h\u00e9llo", "\u2603", "nul\x00inside", "x" * 40, "y" * 300]),
    "str_invalid_utf8": b"\xa3\xff\xfe\xfd",
    "str8_16_32": b"\x93\xd9\x01a\xda\x00\x01b\xdb\x00\x00\x00\x01c",
    "bins": pk([b"", b"\x00\xff", bytes(range(256))]),
    "exts": b"\x97" + ext(1, b"a") + ext(2, b"ab") + ext(3, b"abcd") + ext(4, b"abcdefgh")
            + ext(5, b"a" * 16) + b"\xc7\x03\xff" + b"abc" + ext(127, b"x" * 300),
    "array_nested": pk([1, [2, [3, [4, [5]]]], [], {}]),
    "map": pk({"a": 1, "b": [1, 2], "c": {"d": None}, "": "empty key"}),
    "map_int_key": pk({1: "one", 2: "two"}),
    "map_nil_key": b"\x82\xc0\x01\xa1k\x02",
    "map_nan_key": b"\x81\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00\x01",
    "map_array_key": b"\x81\x91\x01\xa1v",
    "map_dup_key": b"\x82\xa1a\x01\xa1a\x02",
    "map_reserved_key": pk({"$bin": "x"}),
    "array_holes": b"\x93\x01\xc0\x03",
    "deep33": b"\x91" * 33 + b"\xc0",
    "deep129": b"\x91" * 129 + b"\xc0",
    "claim_array_4g": b"\xdd\xff\x00\x00\x00",
    "claim_map_4g": b"\xdf\xff\x00\x00\x00",
    "claim_str_4g": b"\xdb\xff\xff\xff\xff",
    "claim_bin_4g": b"\xc6\xff\xff\xff\xff",
    "claim_ext_4g": b"\xc9\xff\xff\xff\xff\x01",
    "claim_array16": b"\xdc\xff\xff\x01\x02",
    "claim_map16": b"\xde\xff\xff\x01\x02",
    "c1": b"\xc1",
    "trailing": b"\x01\x02",
    "truncated": b"\x92\x01",
    "rpc_response": pk([1, 7, None, {"id": 42, "name": "x", "tags": ["a", "b"], "raw": b"\x01\x02"}]),
    "rpc_error": pk([1, 8, {"code": 504, "type": "deadline_exceeded", "message": "late"}, None]),
}

JSON_TEXTS = {
    "null": "null",
    "scalars": '[true, false, 0, -1, 9223372036854775807, -9223372036854775808, 1.5, -0.0, 1e308, "s"]',
    "object": '{"a": 1, "b": [1, 2, {"c": null}], "d": "\\u00e9\\u2603", "": 0}',
    "nul": '["a\\u0000b"]',
    "nul_key": '{"a\\u0000b": 1}',
    "uint_tag": '{"$uint": "18446744073709551615"}',
    "uint_tag_small": '{"$uint": "5"}',
    "uint_tag_bad": '[{"$uint": "18446744073709551616"}, {"$uint": "-1"}, {"$uint": 5}]',
    "bin_tag": '{"$bin": "aGVsbG8="}',
    "bin_tag_empty": '{"$bin": ""}',
    "bin_tag_noncanonical": '{"$bin": "aGVsbG9="}',
    "bin_tag_nopad": '{"$bin": "aGVsbG8"}',
    "ext_tag": '{"$ext": -3, "data": "AQID"}',
    "ext_tag_bad": '{"$ext": 128, "data": "AQID"}',
    "ext_tag_extra": '{"$ext": 1, "data": "", "x": 1}',
    "mixed_tags": '{"$bin": "", "$uint": "1"}',
    "deep": "[" * 40 + "]" * 40,
    "deep_obj": '{"a":' * 33 + "1" + "}" * 33,
    "big_int": "123456789012345678901234567890",
    "string_escapes": '"\\"\\\\\\/\\b\\f\\n\\r\\t\\ud83d\\ude00"',
}


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def envelope_stream():
    """Message sequences for the stream target: (name, bytes)."""
    req = lambda i, m, p: pk([0, i, m, p])  # noqa: E731
    ok = req(1, "demo.echo", ["hello"]) + pk([2, "demo.note", [1]]) + pk([1, 9, None, "r"])
    many = b"".join(req(i, "svc.m%d" % (i % 3), [i, "x" * (i % 50)]) for i in range(60))
    return {
        "requests": ok,
        "many": many,
        "partial_tail": ok + req(2, "demo.echo", ["cut"])[:7],
        "big_then_more": req(3, "demo.echo", ["z" * 5000]) + ok,
        "claim_after": ok + b"\x94\x00\x05\xa9demo.echo\xdd\xff\x00\x00\x00",
        "c1_after": ok + b"\xc1\xc1",
        "deep_after": ok + b"\x94\x00\x06\xa9demo.echo" + b"\x91" * 200 + b"\xc0",
        "str_claim": ok + b"\x94\x00\x07\xa9demo.echo\x91\xdb\xff\xff\xff\xff",
        "scalars": b"\x00\x01\xc0\xc3\xa1x\x90\x80" + ok,
        "bad_envelopes": pk([0, "x", "m", []]) + pk([0, -1, "m", []]) + pk("str") + ok,
    }


def http_streams():
    body = b'{"jsonrpc":"2.0","id":1,"method":"demo.echo","params":["hi"]}'

    def post(path=b"/rpc", b=body, extra=b""):
        return (b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + extra
                + b"Content-Length: " + str(len(b)).encode() + b"\r\n\r\n" + b)

    return {
        "post": post(),
        "pipelined": post() + post(b"/rpc?x=1#f", b"[]") + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        "auth": post(extra=b"Authorization:   Bearer k-0123456789abcdef  \r\n"),
        "expect": post(extra=b"Expect: 100-continue\r\n"),
        "close": post(extra=b"Connection: close\r\n") + post(),
        "http10": b"POST /rpc HTTP/1.0\r\nContent-Length: 2\r\n\r\n[]" + post(),
        "chunked": b"POST /rpc HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n0\r\n\r\n",
        "big_header": b"GET / HTTP/1.1\r\nX: " + b"a" * 17000 + b"\r\n\r\n",
        "big_body": post(b=b"x" * 2000),
        "bad_method": b"BREW /pot HTTP/1.1\r\n\r\n",
        "garbage": b"\x00\xff\r\n\r\n" + post(),
        "upgrade": b"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nrest",
        "partial": post()[:40],
        "dup_length": b"POST /rpc HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n[]]",
        "neg_length": b"POST /rpc HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        "huge_length": b"POST /rpc HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "folded": b"POST /rpc HTTP/1.1\r\nContent-Type: application/\r\n json\r\nContent-Length: 2\r\n\r\n[]",
    }


def main():
    for name, v in VALUES.items():
        write("json_mp", name, b"\x20" + v)
        write("lua_msgpack", name, b"\x1f" + v)
    write("lua_msgpack", "marked_bins", b"\x9f" + VALUES["bins"])
    write("lua_msgpack", "marked_empty_map", b"\x9f" + pk([{}, {"a": {}}]))
    # nil inside arrays (start, middle, end) and as map values: ghost.null when marked (bit 7);
    # bit 6 decodes as an argument list (a nil argument stays nil)
    nulls = pk([None, 1, None, [None], {"a": None, "b": [True, None]}, None])
    write("lua_msgpack", "marked_nulls", b"\x9f" + nulls)
    write("lua_msgpack", "args_nulls", b"\xdf" + nulls)
    # the decoding budget's walk (gg_lua_within): many one-byte values, a lying count
    write("lua_msgpack", "budget_empties", b"\x9f" + b"\xdd" + struct.pack(">I", 4096) + b"\x90" * 4096)
    write("lua_msgpack", "budget_liar", b"\x9f" + b"\xdf\xff\xff\xff\xff" + b"\xc0" * 64)
    write("json_mp", "depth0_scalar", b"\x00" + pk("x"))
    write("json_mp", "depth1_nested", b"\x01" + pk([[1]]))
    for name, text in JSON_TEXTS.items():
        write("json_text", name, b"\x20" + text.encode())
    write("json_text", "depth1_nested", b"\x01" + b"[[1]]")
    for i, (name, stream) in enumerate(sorted(http_streams().items())):
        for mode in (2, 3 if i % 2 else 1):
            seed = struct.pack("<I", 0x2545F491 ^ (i * 104729 + mode))
            write("http", "%s-m%d" % (name, mode), seed + bytes([mode]) + stream)
    for i, (name, stream) in enumerate(sorted(envelope_stream().items())):
        for mode in (0, 4 | (i % 4)):
            seed = struct.pack("<I", 0x9E3779B9 ^ (i * 7919 + mode))
            write("stream", "%s-m%d" % (name, mode), seed + bytes([mode]) + stream)


if __name__ == "__main__":
    main()
