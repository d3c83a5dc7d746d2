"""JSON text laid out exactly as TF Serving's REST API writes it.

TF Serving builds its responses with RapidJSON's PrettyWriter (4-space indent, optional
single-line arrays) and prints floats with absl's six significant digits, falling back to
full precision only when six digits would not round-trip, and appending '.0' to whole
numbers (util/json_tensor.cc). `PrettyWriter` reproduces that layout token by token, so
responses are byte-for-byte what clients of the real server receive.
"""

from __future__ import annotations

import math
import re

import numpy as np

# RapidJSON escapes '"', '\\' and control characters, nothing else (not '/', not non-ASCII).
_SHORT_ESCAPES = {0x08: b"\\b", 0x09: b"\\t", 0x0A: b"\\n", 0x0C: b"\\f", 0x0D: b"\\r",
                  0x22: b'\\"', 0x5C: b"\\\\"}
_NEEDS_ESCAPE = re.compile(rb'[\x00-\x1f"\\]')


def _escape_byte(match: re.Match) -> bytes:
    byte = match.group()[0]
    return _SHORT_ESCAPES.get(byte) or b"\\u00%02X" % byte


def quote(value: bytes | str) -> bytes:
    """Return `value` as a JSON string literal, escaped the way RapidJSON's Writer does."""
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    return b'"' + _NEEDS_ESCAPE.sub(_escape_byte, value) + b'"'


def _finish_decimal(text: str) -> str:
    # Whole numbers get '.0' so a list never mixes 1 and 1.5 (json_tensor.cc: WriteDecimal).
    if "." not in text and "e" not in text:
        return text + ".0"
    return text


def format_float(value: float, float32: bool) -> str:
    """Return one float as TF Serving writes it: 6 digits if they round-trip, else 9 or 17."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    text = f"{value:g}"
    parsed = float(text)
    if float32:
        parsed = float(np.float32(parsed))
    if parsed != value:
        text = format(value, ".9g" if float32 else ".17g")
    return _finish_decimal(text)


def format_floats(values: np.ndarray) -> list[str]:
    """Return TF Serving's text for each value of a float32/float64 array (vectorised).

    Six-digit '%g' text is produced for all values at once and parsed back in one numpy
    call; only values that do not round-trip (or are not finite) take the slow path.
    """
    float32 = values.dtype == np.float32
    flat = values.ravel()
    numbers = flat.tolist()
    texts = [f"{number:g}" for number in numbers]
    with np.errstate(all="ignore"):
        round_trip = np.array(texts, dtype=np.float64).astype(flat.dtype)
        slow = np.flatnonzero((round_trip != flat) | ~np.isfinite(flat))
    texts = [_finish_decimal(text) for text in texts]
    precise = ".9g" if float32 else ".17g"
    for index in slow.tolist():
        number = numbers[index]
        texts[index] = (_finish_decimal(format(number, precise)) if math.isfinite(number)
                        else format_float(number, float32))
    return texts


class PrettyWriter:
    """A token writer with RapidJSON PrettyWriter's exact whitespace rules.

    `single_line_arrays` is PrettyWriter's kFormatSingleLineArray option: TF Serving turns
    it on and off between tokens, and the layout depends on where it does so.
    """

    def __init__(self):
        self._parts: list[bytes] = []
        self._levels: list[list] = []  # [in_array, value_count] per open container
        self.single_line_arrays = False

    def _indent(self) -> bytes:
        return b"\n" + b"    " * len(self._levels)

    def _prefix(self) -> None:
        if not self._levels:
            return
        level = self._levels[-1]
        if level[0]:
            if level[1] > 0:
                self._parts.append(b", " if self.single_line_arrays else b",")
            if not self.single_line_arrays:
                self._parts.append(self._indent())
        elif level[1] % 2 == 1:
            self._parts.append(b": ")
        else:
            self._parts.append(b"," + self._indent() if level[1] > 0 else self._indent())
        level[1] += 1

    def raw(self, text: bytes) -> None:
        """Write one scalar token (a number, true/false/null, or a quoted string)."""
        self._prefix()
        self._parts.append(text)

    def string(self, value: bytes | str) -> None:
        self.raw(quote(value))

    def key(self, name: str) -> None:
        self.raw(quote(name))

    def scalars(self, tokens: list[bytes]) -> None:
        """Write many scalar tokens into the open array: a fast path for single-line arrays."""
        if not tokens:
            return
        level = self._levels[-1]
        if self.single_line_arrays and level[0]:
            if level[1] > 0:
                self._parts.append(b", ")
            self._parts.append(b", ".join(tokens))
            level[1] += len(tokens)
            return
        for token in tokens:
            self.raw(token)

    def start_object(self) -> None:
        self._open(b"{", in_array=False)

    def end_object(self) -> None:
        self._close(b"}")

    def start_array(self) -> None:
        self._open(b"[", in_array=True)

    def end_array(self) -> None:
        self._close(b"]")

    def _open(self, bracket: bytes, in_array: bool) -> None:
        self._prefix()
        self._parts.append(bracket)
        self._levels.append([in_array, 0])

    def _close(self, bracket: bytes) -> None:
        in_array, count = self._levels.pop()
        # A non-empty container closes on its own line, except a single-line array.
        if count and not (in_array and self.single_line_arrays):
            self._parts.append(self._indent())
        self._parts.append(bracket)

    def getvalue(self) -> bytes:
        return b"".join(self._parts)

    def size(self) -> int:
        return sum(len(part) for part in self._parts)


def write_value(writer: PrettyWriter, value, limit: int) -> bool:
    """Write a parsed JSON value as RapidJSON's Value::Accept does; False once it stops.

    Like TF Serving's JsonWriterWithLimit, every event (value, key, end of container) is
    refused once `limit` bytes are written, and a NaN or infinity ends the output (RapidJSON's
    Writer cannot write them without kWriteNanAndInfFlag).
    """
    if writer.size() >= limit:
        return False
    if isinstance(value, dict):
        writer.start_object()
        for name, item in value.items():
            if writer.size() >= limit:
                return False
            writer.key(name)
            if not write_value(writer, item, limit):
                return False
    elif isinstance(value, list):
        writer.start_array()
        for item in value:
            if not write_value(writer, item, limit):
                return False
    elif isinstance(value, float) and not math.isfinite(value):
        writer.raw(b"")
        return False
    else:
        writer.raw(scalar_token(value))
        return True
    if writer.size() >= limit:
        return False
    if isinstance(value, dict):
        writer.end_object()
    else:
        writer.end_array()
    return True


def scalar_token(value) -> bytes:
    """Return the JSON token for a parsed scalar, as RapidJSON would re-serialise it."""
    if value is None:
        return b"null"
    if value is True:
        return b"true"
    if value is False:
        return b"false"
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, float):
        return _rapidjson_double(value).encode()
    return str(value).encode()


def _rapidjson_double(value: float) -> str:
    """Return a finite double as RapidJSON's Writer prints it (internal/dtoa.h: Prettify).

    Shortest round-trip digits, like Python's repr, but laid out differently: plain
    decimals up to 21 integer digits ('1e+17' is '100000000000000000.0'), '0.00001' down to
    1e-6, and exponents without '+' or leading zeros ('1e-7', '1.5e300').
    """
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign = "-" if value < 0 else ""
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    power = int(exponent or 0) - len(fraction)  # value == int(digits) * 10**power
    stripped = digits.rstrip("0")
    power += len(digits) - len(stripped)
    digits, length = stripped, len(stripped)
    point = length + power  # where the decimal point falls in `digits`
    if 0 <= power and point <= 21:
        text = digits + "0" * power + ".0"
    elif 0 < point <= 21:
        text = digits[:point] + "." + digits[point:]
    elif -6 < point <= 0:
        text = "0." + "0" * -point + digits
    elif length == 1:
        text = f"{digits}e{point - 1}"
    else:
        text = f"{digits[0]}.{digits[1:]}e{point - 1}"
    return sign + text


def debug_string(value, limit: int = 256) -> str:
    """Return a JSON value as TF Serving quotes it in errors: single-line arrays, ~256 bytes."""
    writer = PrettyWriter()
    writer.single_line_arrays = True
    write_value(writer, value, limit)
    return writer.getvalue().decode("utf-8", "replace")


def error_body(message: str) -> bytes:
    """Return TF Serving's error response body: {"error": "<message>"}, pretty-printed."""
    writer = PrettyWriter()
    writer.start_object()
    writer.key("error")
    writer.string(message)
    writer.end_object()
    return writer.getvalue()
