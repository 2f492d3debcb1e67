"""Plain built-in values across the process boundary of a test-code task (stdlib only).

The program runs in one process, the benchmark's test code in another (`_testcode.py`).
Arguments and return values cross between them as bytes in this format, so that what reaches
an assert is always a plain built-in value: None, bool, int, float, complex, str, bytes, and
tuples, lists, dicts, sets and frozensets of them. `encode` checks each type exactly
(`type(v) is int`), so a subclass with its own `__eq__` (a value that "equals" anything) cannot
be encoded; `decode` parses untrusted bytes with bounds checks and can only fail with
ValueError. Unlike marshal or pickle, nothing here can rebuild a code object or call anything.

Format: one tag byte per value, then
    N T F                    None, True, False
    i <u32 n> <n bytes>      int, two's complement, little-endian
    f <8 bytes>  c <16>      float, complex (IEEE 754 doubles)
    s/b <u32 n> <n bytes>    str (UTF-8, surrogates kept), bytes
    t l S z <u32 n> items    tuple, list, set, frozenset
    d <u32 n> key value ...  dict, in insertion order
"""
import struct

MAX_DEPTH = 200
_U32 = struct.Struct("<I")
_FLOAT = struct.Struct("<d")
_COMPLEX = struct.Struct("<dd")
_SEQUENCES = {tuple: b"t", list: b"l", set: b"S", frozenset: b"z"}
_BUILDERS = {b"t"[0]: tuple, b"l"[0]: list, b"S"[0]: set, b"z"[0]: frozenset}


def encode(value):
    """bytes for `value`; TypeError naming the first value that is not a plain built-in."""
    parts = []
    _encode(value, parts, 0)
    return b"".join(parts)


def _encode(value, parts, depth):
    kind = type(value)
    if depth > MAX_DEPTH:
        raise TypeError("value nested deeper than %d" % MAX_DEPTH)
    if value is None:
        parts.append(b"N")
    elif kind is bool:
        parts.append(b"T" if value else b"F")
    elif kind is int:
        raw = value.to_bytes(value.bit_length() // 8 + 1, "little", signed=True)
        parts += (b"i", _U32.pack(len(raw)), raw)
    elif kind is float:
        parts += (b"f", _FLOAT.pack(value))
    elif kind is complex:
        parts += (b"c", _COMPLEX.pack(value.real, value.imag))
    elif kind is str or kind is bytes:
        raw = value.encode("utf-8", "surrogatepass") if kind is str else value
        parts += (b"s" if kind is str else b"b", _U32.pack(len(raw)), raw)
    elif kind in _SEQUENCES:
        parts += (_SEQUENCES[kind], _U32.pack(len(value)))
        for item in value:
            _encode(item, parts, depth + 1)
    elif kind is dict:
        parts += (b"d", _U32.pack(len(value)))
        for key, item in value.items():
            _encode(key, parts, depth + 1)
            _encode(item, parts, depth + 1)
    else:
        raise TypeError("%s is not a plain built-in value" % kind.__name__)


def decode(data):
    """The value `data` encodes; ValueError if it is malformed or has bytes left over."""
    try:
        value, end = _decode(data, 0, 0)
    except (IndexError, struct.error, UnicodeDecodeError, TypeError, RecursionError):
        raise ValueError("malformed value") from None
    if end != len(data):
        raise ValueError("malformed value: trailing bytes")
    return value


def _decode(data, at, depth):
    if depth > MAX_DEPTH:
        raise ValueError("value nested deeper than %d" % MAX_DEPTH)
    tag = data[at]
    at += 1
    if tag == 78:  # N
        return None, at
    if tag == 84 or tag == 70:  # T, F
        return tag == 84, at
    if tag == 102:  # f
        return _FLOAT.unpack_from(data, at)[0], at + 8
    if tag == 99:  # c
        real, imag = _COMPLEX.unpack_from(data, at)
        return complex(real, imag), at + 16
    count = _U32.unpack_from(data, at)[0]
    at += 4
    if tag in (105, 115, 98):  # i, s, b
        raw = data[at:at + count]
        if len(raw) != count:
            raise ValueError("malformed value: truncated")
        if tag == 105:
            return int.from_bytes(raw, "little", signed=True), at + count
        return (raw.decode("utf-8", "surrogatepass") if tag == 115 else bytes(raw)), at + count
    if count > len(data) - at:  # every item takes at least one byte
        raise ValueError("malformed value: truncated")
    if tag in _BUILDERS:
        items = []
        for _ in range(count):
            item, at = _decode(data, at, depth + 1)
            items.append(item)
        return _BUILDERS[tag](items), at  # unhashable set items: TypeError -> ValueError
    if tag == 100:  # d
        result = {}
        for _ in range(count):
            key, at = _decode(data, at, depth + 1)
            result[key], at = _decode(data, at, depth + 1)
        return result, at
    raise ValueError("malformed value: unknown tag %r" % chr(tag))
