"""JSON text -> Python values, parsed the way TF Serving's RapidJSON 1.1.0 parses requests.

TF Serving parses REST bodies with kParseIterativeFlag | kParseNanAndInfFlag |
kParseStopWhenDoneFlag (util/json_tensor.cc: ParseJson). orjson takes the common, strict
documents; this reader takes the rest with the same results RapidJSON gives:

- nesting up to MAX_DEPTH levels, refused while parsing past that (see below);
- NaN, Inf, Infinity, -Inf, -Infinity; bytes that are not UTF-8 pass through unchanged;
- anything after the first complete value is ignored, and a NUL byte ends the input;
- malformed text fails with GetParseError_En's message and RapidJSON's byte offset, which
  depends on the parser state (reader.h: IterativeParse, HandleError, ParseNumber).

RapidJSON's iterative parser itself has no depth limit (its stack grows on the heap), but no
request nested deeper than a tensor's 254 dimensions plus its wrappers can succeed, and a
Python list per level costs far more than RapidJSON's 16-byte value. So the reader stops at
the first bracket past MAX_DEPTH, orjson's own limit, before building anything deeper: a
2 MB body of brackets costs microseconds, not seconds and hundreds of MiB. Numbers are
never converted from more digits than RapidJSON reads (it gives up past ~309), so a
thousands-digit number is RapidJSON's 'Number too big' error, not Python's digit limit.
"""

from __future__ import annotations

import json
import re

from serving.server.core import errors

_WHITESPACE = re.compile(rb"[ \t\n\r]*")
_PLAIN_STRING = re.compile(rb'"([^"\\\x00-\x1f]*)"')
_STRING_RUN = re.compile(rb'[^"\\\x00-\x1f]+')
_NUMBER = re.compile(rb"(-?(?:0|[1-9][0-9]*))(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_TAIL = re.compile(rb"(\.[0-9]+)?([eE][+-]?[0-9]+)?")
# Many numbers in a row (a tensor's values): handed to the json module in one call when
# none of them needs RapidJSON's special handling (huge exponents, 20+ digit integers).
_SCALAR = rb"(?:-?(?:0|[1-9][0-9]{0,17})(?:\.[0-9]+)?(?:[eE][+-]?[0-9]{1,2})?|-?Infinity|NaN)"
_SCALAR_RUN = re.compile(_SCALAR + rb"(?:[ \t\n\r]*,[ \t\n\r]*" + _SCALAR + rb")+(?![0-9.eE])")
_ESCAPES = {ord('"'): b'"', ord("\\"): b"\\", ord("/"): b"/", ord("b"): b"\b",
            ord("f"): b"\f", ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t"}
_LITERALS = {ord("t"): (b"true", True), ord("f"): (b"false", False), ord("n"): (b"null", None)}
_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1
# Deepest nesting accepted: orjson's limit, so both parsers accept the same documents.
MAX_DEPTH = 1024
# Digits past which an integer part overflows RapidJSON's double accumulator (> 1.8e308).
_MAX_DOUBLE_DIGITS = 309

# Parser states, named after RapidJSON's IterativeParsingState.
_OBJECT_INITIAL, _MEMBER_KEY, _KEY_VALUE_DELIMITER, _MEMBER_VALUE, _MEMBER_DELIMITER = range(5)
_ARRAY_INITIAL, _ELEMENT, _ELEMENT_DELIMITER = range(5, 8)
# The error HandleError reports when the next token does not fit the state.
_STATE_ERRORS = {
    _OBJECT_INITIAL: "Missing a name for object member.",
    _MEMBER_DELIMITER: "Missing a name for object member.",
    _MEMBER_KEY: "Missing a colon after a name of object member.",
    _MEMBER_VALUE: "Missing a comma or '}' after an object member.",
    _KEY_VALUE_DELIMITER: "Invalid value.",
    _ARRAY_INITIAL: "Invalid value.",
    _ELEMENT_DELIMITER: "Invalid value.",
    _ELEMENT: "Missing a comma or ']' after an array element.",
}


class _Frame:
    """One open object or array: the container, the pending member name, the state."""

    __slots__ = ("container", "key", "state")

    def __init__(self, container, state: int):
        self.container, self.key, self.state = container, None, state

    def add(self, value) -> None:
        if self.state == _KEY_VALUE_DELIMITER:
            self.container[self.key] = value
            self.state = _MEMBER_VALUE
        else:
            self.container.append(value)
            self.state = _ELEMENT


def _error(message: str, offset: int) -> errors.ServingError:
    return errors.invalid_argument(f"JSON Parse error: {message} at offset: {offset}")


def parse(body: bytes):
    """Return the first JSON value in `body`, or raise TF Serving's 'JSON Parse error'."""
    text = body.split(b"\0", 1)[0]  # RapidJSON's stream reads a NUL as the end of input
    pos = 0
    for byte in b"\xef\xbb\xbf":  # EncodedInputStream skips each byte of a UTF-8 BOM
        if text[pos : pos + 1] == bytes([byte]):
            pos += 1
    stack: list[_Frame] = []
    while True:
        pos = _WHITESPACE.match(text, pos).end()
        char = text[pos] if pos < len(text) else None
        if not stack:
            if char is None or char in b"]},:":
                raise _error("The document is empty.", pos)
            value, pos = _value(text, pos)
            if not isinstance(value, _Frame):
                return value
            stack.append(value)
            continue
        frame = stack[-1]
        state = frame.state
        if state in (_OBJECT_INITIAL, _MEMBER_DELIMITER) and char == ord('"'):
            frame.key, pos = _string(text, pos)
            frame.state = _MEMBER_KEY
        elif state == _MEMBER_KEY and char == ord(":"):
            frame.state, pos = _KEY_VALUE_DELIMITER, pos + 1
        elif state in (_MEMBER_VALUE, _ELEMENT) and char == ord(","):
            frame.state = _MEMBER_DELIMITER if state == _MEMBER_VALUE else _ELEMENT_DELIMITER
            pos += 1
        elif (char == ord("}") and state in (_OBJECT_INITIAL, _MEMBER_VALUE)) or (
            char == ord("]") and state in (_ARRAY_INITIAL, _ELEMENT)
        ):
            stack.pop()
            pos += 1
            if not stack:
                return frame.container
        elif state in (_KEY_VALUE_DELIMITER, _ARRAY_INITIAL, _ELEMENT_DELIMITER) and (
            char is not None and char not in b"]},:"
        ):
            pos = _add_values(frame, stack, text, pos)
        else:
            raise _error(_STATE_ERRORS[state], pos)


def _add_values(frame: _Frame, stack: list[_Frame], text: bytes, pos: int) -> int:
    """Parse the value at `pos` into `frame` (a run of numbers at once); return the new pos."""
    if frame.state != _KEY_VALUE_DELIMITER:
        run = _SCALAR_RUN.match(text, pos)
        if run is not None:
            frame.container.extend(json.loads(b"[" + run.group() + b"]"))
            frame.state = _ELEMENT
            return run.end()
    if len(stack) >= MAX_DEPTH and text[pos] in b"[{":
        raise _error(f"Nesting deeper than {MAX_DEPTH} levels.", pos)
    value, pos = _value(text, pos)
    frame.add(value.container if isinstance(value, _Frame) else value)
    if isinstance(value, _Frame):
        stack.append(value)
    return pos


def _value(text: bytes, pos: int):
    """Return (value or new _Frame, position after it) for the value starting at `pos`."""
    char = text[pos]
    if char == ord("{"):
        return _Frame({}, _OBJECT_INITIAL), pos + 1
    if char == ord("["):
        return _Frame([], _ARRAY_INITIAL), pos + 1
    if char == ord('"'):
        return _string(text, pos)
    if char in _LITERALS:
        word, value = _LITERALS[char]
        for index in range(1, len(word)):
            if text[pos + index : pos + index + 1] != word[index : index + 1]:
                raise _error("Invalid value.", pos + index)
        return value, pos + len(word)
    return _number(text, pos)


def _string(text: bytes, pos: int) -> tuple[str, int]:
    """Return (string, position after its closing quote) for the string starting at `pos`."""
    plain = _PLAIN_STRING.match(text, pos)
    if plain is not None:
        return plain.group(1).decode("utf-8", "surrogateescape"), plain.end()
    out, index = bytearray(), pos + 1
    while True:
        run = _STRING_RUN.match(text, index)
        if run is not None:
            out += run.group()
            index = run.end()
        if index >= len(text):
            raise _error("Missing a closing quotation mark in string.", index)
        char = text[index]
        if char == ord('"'):
            return out.decode("utf-8", "surrogateescape"), index + 1
        if char != ord("\\"):  # an unescaped control character
            raise _error("Invalid escape character in string.", index)
        escape = text[index + 1] if index + 1 < len(text) else None
        if escape in _ESCAPES:
            out += _ESCAPES[escape]
            index += 2
        elif escape == ord("u"):
            codepoint, index = _unicode_escape(text, index)
            out += chr(codepoint).encode("utf-8", "surrogatepass")
        else:
            raise _error("Invalid escape character in string.", index)


def _unicode_escape(text: bytes, start: int) -> tuple[int, int]:
    """Return (code point, next position) for the \\uXXXX escape (or surrogate pair) at `start`."""
    codepoint = _hex4(text, start + 2, start)
    index = start + 6
    if 0xD800 <= codepoint <= 0xDBFF:
        if text[index : index + 2] != b"\\u":
            raise _error("The surrogate pair in string is invalid.", start)
        low = _hex4(text, index + 2, start)
        if not 0xDC00 <= low <= 0xDFFF:
            raise _error("The surrogate pair in string is invalid.", start)
        codepoint = ((codepoint - 0xD800) << 10 | (low - 0xDC00)) + 0x10000
        index += 6
    return codepoint, index


def _hex4(text: bytes, pos: int, escape_offset: int) -> int:
    digits = text[pos : pos + 4]
    if len(digits) != 4 or not all(chr(digit) in "0123456789abcdefABCDEF" for digit in digits):
        raise _error("Incorrect hex digit after \\u escape in string.", escape_offset)
    return int(digits, 16)


def _number(text: bytes, pos: int):
    """Return (int or float, end) for the number at `pos`, with RapidJSON's typing and errors."""
    match = _NUMBER.match(text, pos)
    if match is None:
        return _special_number(text, pos)
    whole, fraction, exponent = match.groups()
    end = match.end()
    _check_tail(text, end, fraction is None and exponent is None, exponent is None)
    digits = whole.lstrip(b"-")
    if len(digits) > _MAX_DOUBLE_DIGITS:  # checked before int(): Python caps its digits too
        raise _error("Number too big to be stored in double.", pos)
    if fraction is None and exponent is None:
        value = int(whole)
        if _INT64_MIN <= value <= _UINT64_MAX:
            return value, end
        # past 64 bits RapidJSON accumulates a double
        if len(digits) > 1 and int(digits[:-1]) >= 1.7976931348623157e307:
            raise _error("Number too big to be stored in double.", pos)
    else:
        _check_exponent(fraction, exponent, pos)
    return float(match.group()), end


def _check_exponent(fraction: bytes | None, exponent: bytes | None, start: int) -> None:
    """Raise RapidJSON's error for a positive exponent past 308 plus the fraction digits."""
    if exponent is not None and exponent[1:2] != b"-":
        magnitude = exponent[1:].lstrip(b"+").lstrip(b"0") or b"0"
        if len(magnitude) > 9 or int(magnitude) > 308 + len(fraction or b".") - 1:
            raise _error("Number too big to be stored in double.", start)


def _check_tail(text: bytes, end: int, may_take_fraction: bool, may_take_exponent: bool) -> None:
    """Raise RapidJSON's error for a '.' or 'e' with no digits after it."""
    following = text[end : end + 1]
    if following == b"." and may_take_fraction:
        raise _error("Miss fraction part in number.", end + 1)
    if following in (b"e", b"E") and may_take_exponent:
        sign = 1 if text[end + 1 : end + 2] in (b"+", b"-") else 0
        raise _error("Miss exponent in number.", end + 1 + sign)


def _special_number(text: bytes, pos: int):
    """Return (value, end) for NaN / Inf / Infinity (any of them after '-'), or the error.

    Mirrors ParseNumber's chain of Consume() calls, quirks included: after a failed 'NaN'
    it tries 'Inf' from where it stopped, and a fraction or exponent may follow.
    """
    minus = text[pos : pos + 1] == b"-"
    index = pos + minus

    def consume(expected: bytes) -> bool:
        nonlocal index
        if text[index : index + 1] == expected:
            index += 1
            return True
        return False

    if text[index : index + 1] not in (b"I", b"N"):
        raise _error("Invalid value.", index)
    if consume(b"N") and consume(b"a") and consume(b"N"):
        value = float("nan")
    elif consume(b"I") and consume(b"n") and consume(b"f"):
        value = float("-inf") if minus else float("inf")
        if text[index : index + 1] == b"i" and not all(consume(bytes([char])) for char in b"inity"):
            raise _error("Invalid value.", index)
    else:
        raise _error("Invalid value.", index)
    # RapidJSON reads on into a fraction or exponent here, which replace the value.
    tail = _TAIL.match(text, index)
    _check_tail(text, tail.end(), tail.group(1) is None and tail.group(2) is None, tail.group(2) is None)
    if tail.group():
        _check_exponent(tail.group(1), tail.group(2), pos)
        value = float((b"-0" if minus else b"0") + tail.group())
    return value, tail.end()
