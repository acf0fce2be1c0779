"""Schema engine: typed fields with explicit bounds, generic encode and decode loops.

A struct is a frozen dataclass whose every field is annotated with `Annotated[T, Kind]`
(plain `bool` and plain nested struct classes need no annotation). The `@struct` and
`@message` decorators turn those annotations into a static table `_SCHEMA`, so adding a
message is one class with a table of fields, and the codec is one loop over that table.

Why this shape:
- The parent decodes bytes from a child it does not trust. Every length and count is checked
  against a bound *before* anything is allocated, every enum and bool value is checked, and
  every failure is one `IpcError`. No pickle, no eval, no JSON, no input-driven recursion:
  nesting is fixed by the class definitions (a class cannot name itself in its own body).
- Values are validated when a struct is constructed, on the sending side as well, so a
  sender can never emit a message the receiver would reject, and a decoded message always
  re-encodes to the very same bytes (the codec has exactly one encoding per value).

Wire format: big-endian integers; a message is `u16 type` followed by its fields in table
order; lengths and counts are prefixed with the smallest unsigned width that holds their
bound (1, 2 or 4 bytes).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import struct as pystruct
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Container
from enum import Enum, IntEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from operator import attrgetter, call, contains, itemgetter
from types import MemberDescriptorType
from typing import Any, ClassVar, Self, TypeVar, cast

from ikepriv.ipc.hashed_address import (
    IPV4_TYPES,
    IPV6_TYPES,
    HashedIPv4Address,
    HashedIPv6Address,
)
from ikepriv.ipc.ipc_error import IpcError, Reason

MAX_MESSAGE_SIZE = 65536 + 4096
"""Hard cap on one encoded message (one SEQPACKET datagram): a full 64 KiB IKE datagram
plus room for its addresses. Checked before decoding and after encoding."""

MAX_NESTING = 6
"""Deepest struct-in-struct nesting the catalogue may declare (checked at import)."""

TYPE_SIZE = 2

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


class SchemaError(Exception):
    """A message or struct definition is wrong: raised at import time, never on input."""


class Direction(IntEnum):
    """Which channel and which way a message may travel; decoders accept only theirs."""

    PARENT_TO_CHILD = 1
    CHILD_TO_PARENT = 2
    CLI_TO_DAEMON = 3
    DAEMON_TO_CLI = 4


class AddressFamily(IntEnum):
    """Family byte in front of an address on the wire; it fixes the address length."""

    IPV4 = 4
    IPV6 = 6


_ADDRESS_LENGTH = {AddressFamily.IPV4: 4, AddressFamily.IPV6: 16}
_ADDRESS_CLASS: dict[AddressFamily, Callable[[bytes], IPAddress]] = {
    AddressFamily.IPV4: IPv4Address,
    AddressFamily.IPV6: IPv6Address,
}
_NETWORK_CLASS: dict[AddressFamily, Callable[[tuple[IPAddress, int]], IPNetwork]] = {
    AddressFamily.IPV4: IPv4Network,
    AddressFamily.IPV6: IPv6Network,
}
_FAMILY_OF_VERSION = {4: AddressFamily.IPV4, 6: AddressFamily.IPV6}


class Charset(Enum):
    """Which characters a string field may hold."""

    TEXT = "printable"  # str.isprintable(): no control characters, no line breaks
    NAME = "name"  # ASCII letters, digits and . _ - @ : + / (tunnel names, user input)


_NAME_RE = re.compile(r"[A-Za-z0-9._@:+/-]*", re.ASCII)
_CHARSET_CHECKS: dict[Charset, Callable[[str], bool]] = {
    Charset.TEXT: str.isprintable,
    Charset.NAME: lambda text: _NAME_RE.fullmatch(text) is not None,
}


def width_for(bound: int) -> int:
    """Smallest wire width (bytes) of an unsigned prefix that can carry `bound`."""
    for width in (1, 2, 4):
        if bound < 1 << (8 * width):
            return width
    raise SchemaError(f"bound {bound} needs more than 32 bits")


Encoder = Callable[[Any], bytes]
"""The wire bytes of a value already accepted by `coerce` (or decoded)."""

Decoder = Callable[[bytes, int], tuple[Any, int]]
"""Reads one value at an offset: (value, offset after it); raises IpcError on bad input."""

Valid = Callable[[Any], bool]
"""True only when `coerce` would return the value itself: the fast path of construction."""

_FORMAT_OF_SIZE = {1: "B", 2: "H", 4: "I", 8: "Q"}
_NONE_TYPE = type(None)


def _truncated(need: int, pos: int) -> IpcError:
    return IpcError(Reason.TRUNCATED, f"need {need} bytes at offset {pos}")


def _uint_decoder(size: int) -> Decoder:
    """Reads a bare unsigned integer (lengths, counts, presence and family bytes)."""
    unpack = pystruct.Struct(">" + _FORMAT_OF_SIZE[size]).unpack_from

    def decode(data: bytes, pos: int) -> tuple[int, int]:
        end = pos + size
        if end > len(data):
            raise _truncated(size, pos)
        return unpack(data, pos)[0], end

    return decode


class Reader:
    """Cursor over one received message; every read is bounds-checked. The codec itself
    reads with compiled decoders over (data, offset); this is `Kind.decode`'s interface."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def take(self, count: int) -> bytes:
        end = self.pos + count
        if end > len(self.data):
            raise _truncated(count, self.pos)
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def uint(self, size: int) -> int:
        end = self.pos + size
        if end > len(self.data):
            raise _truncated(size, self.pos)
        number = int.from_bytes(self.data[self.pos : end], "big")
        self.pos = end
        return number


class Kind(ABC):
    """How one field is validated, written and read.

    Each kind builds, once, when the catalogue is imported, closures specialised to its
    bounds (see `_finish`), which the structs' compiled plans (`_Plan`) call; `coerce` is
    the complete check with the canonical conversion, `valid` only short-cuts the common
    case, and `types`/`container` let a struct short-cut even that in C (see `_finish`)."""

    __slots__ = ("code", "container", "decoder", "encoder", "fix", "types", "valid")

    encoder: Encoder
    decoder: Decoder
    valid: Valid
    types: frozenset[type] | None
    container: Container[Any] | None
    code: str | None
    fix: tuple[Container[int], Callable[[int], object]] | None

    def _finish(
        self,
        encoder: Encoder,
        decoder: Decoder,
        valid: Valid,
        types: typing.Iterable[type] | None = None,
        container: Container[Any] | None = None,
        code: str | None = None,
        fix: tuple[Container[int], Callable[[int], object]] | None = None,
    ) -> None:
        """encoder, decoder, valid: see the aliases of the same names.
        types, container: when given, valid(v) is exactly `type(v) in types and (container
        is None or v in container)`: checks a struct makes for many fields at once with
        C-level calls (the container is consulted only for a value of one of the types).
        code, fix: a kind of fixed width gives its `struct` format and, for the integer
        `unpack` yields, a container of the integers allowed and a C-level conversion
        (identity, enum member, bool), so that a struct reads a run of such fields with
        one `unpack_from` and checks them without a Python call per field."""
        self.encoder, self.decoder, self.valid = encoder, decoder, valid
        self.types = None if types is None else frozenset(types)
        self.container, self.code, self.fix = container, code, fix

    @abstractmethod
    def _coerce(self, value: object) -> object:
        """The complete check of a Python value and its canonical form (raises IpcError)."""

    def coerce(self, value: object) -> object:
        """Validate a Python value and return its canonical form (raises IpcError)."""
        return value if self.valid(value) else self._coerce(value)

    def encode(self, value: Any, out: bytearray) -> None:
        """Append a value already accepted by `coerce`."""
        out += self.encoder(value)

    def decode(self, reader: Reader) -> object:
        """Read one value; raises IpcError on anything not produced by `encode`."""
        value, reader.pos = self.decoder(reader.data, reader.pos)
        return value

    def depth(self) -> int:
        """Struct nesting below this field (0 for scalars)."""
        return 0


def _identity(number: int) -> int:
    return number


class UInt(Kind):
    """Unsigned big-endian integer of `size` bytes, within [lo, hi]."""

    __slots__ = ("hi", "lo", "size")

    def __init__(self, size: int, lo: int = 0, hi: int | None = None) -> None:
        if size not in _FORMAT_OF_SIZE:
            raise SchemaError(f"integer size {size}")
        top = (1 << (8 * size)) - 1
        self.size = size
        self.lo = lo
        self.hi = top if hi is None else hi
        if not 0 <= self.lo <= self.hi <= top:
            raise SchemaError(f"integer bounds {lo}..{hi} for {size} bytes")
        lo, hi = self.lo, self.hi
        unpack = pystruct.Struct(">" + _FORMAT_OF_SIZE[size]).unpack_from

        def decode(data: bytes, pos: int) -> tuple[int, int]:
            end = pos + size
            if end > len(data):
                raise _truncated(size, pos)
            number: int = unpack(data, pos)[0]
            if number < lo or number > hi:
                raise IpcError(Reason.INT_RANGE, f"{number} not in {lo}..{hi}")
            return number, end

        def valid(value: object) -> bool:
            return type(value) is int and lo <= value <= hi

        # range(...) answers `in` in constant time, in C, for an int (only ever asked once
        # the type is known to be int: for other types it would compare one by one)
        allowed = range(lo, hi + 1)
        code = _FORMAT_OF_SIZE[size]
        encoder = pystruct.Struct(">" + code).pack
        self._finish(encoder, decode, valid, (int,), allowed, code, (allowed, int))

    def _coerce(self, value: object) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise IpcError(Reason.BAD_TYPE, f"expected int, got {type(value).__name__}")
        number = int(value)
        if not self.lo <= number <= self.hi:
            raise IpcError(Reason.INT_RANGE, f"{number} not in {self.lo}..{self.hi}")
        return number

    def _refuse(self, number: int) -> IpcError:
        return IpcError(Reason.INT_RANGE, f"{number} not in {self.lo}..{self.hi}")


_BOOLS = {0: False, 1: True}


class Bool(Kind):
    """One byte, exactly 0 or 1."""

    __slots__ = ()

    def __init__(self) -> None:
        read = _uint_decoder(1)

        def decode(data: bytes, pos: int) -> tuple[bool, int]:
            byte, pos = read(data, pos)
            if byte > 1:
                raise IpcError(Reason.BAD_BOOL, f"byte {byte}")
            return byte == 1, pos

        def valid(value: object) -> bool:
            return type(value) is bool

        encoder = pystruct.Struct(">?").pack  # True and False only: valid or coerced
        self._finish(encoder, decode, valid, (bool,), None, "B", (_BOOLS, _BOOLS.__getitem__))

    def _coerce(self, value: object) -> bool:
        if not isinstance(value, bool):
            raise IpcError(Reason.BAD_TYPE, f"expected bool, got {type(value).__name__}")
        return value

    def _refuse(self, byte: int) -> IpcError:
        return IpcError(Reason.BAD_BOOL, f"byte {byte}")


class EnumOf(Kind):
    """A member of an IntEnum (optionally only some members), as the narrowest integer."""

    __slots__ = ("enum", "members", "size")

    def __init__(self, enum: type[IntEnum], allowed: typing.Iterable[IntEnum] | None = None):
        members = tuple(enum) if allowed is None else tuple(allowed)
        if not members or any(type(m) is not enum for m in members):
            raise SchemaError(f"allowed members must be non-empty members of {enum.__name__}")
        if min(members) < 0:
            raise SchemaError(f"{enum.__name__} has negative values")
        self.enum = enum
        self.members: dict[int, IntEnum] = {int(m): m for m in members}
        self.size = width_for(max(int(m) for m in enum))
        table = dict(self.members)  # IntEnum members hash and compare as their integers
        every = len(table) == len(enum)  # any member of the type is allowed
        size = self.size
        unpack = pystruct.Struct(">" + _FORMAT_OF_SIZE[size]).unpack_from

        def decode(data: bytes, pos: int) -> tuple[IntEnum, int]:
            end = pos + size
            if end > len(data):
                raise _truncated(size, pos)
            number = unpack(data, pos)[0]
            member = table.get(number)
            if member is None:
                raise self._refuse(number)
            return member, end

        def valid(value: object) -> bool:
            return type(value) is enum and (every or value in table)

        code = _FORMAT_OF_SIZE[self.size]
        encoder = pystruct.Struct(">" + code).pack
        self._finish(encoder, decode, valid, (enum,), None if every else table, code,
                     (table, table.__getitem__))  # fmt: skip

    def _coerce(self, value: object) -> IntEnum:
        if type(value) is not self.enum:
            raise IpcError(
                Reason.BAD_TYPE, f"expected {self.enum.__name__}, got {type(value).__name__}"
            )
        assert isinstance(value, IntEnum)
        if int(value) not in self.members:
            raise IpcError(Reason.BAD_ENUM, f"{value!r} not allowed here")
        return value

    def _refuse(self, number: int) -> IpcError:
        return IpcError(Reason.BAD_ENUM, f"{number} is not an allowed {self.enum.__name__}")


def _length_codec(
    max_len: int,
) -> tuple[int, Callable[[int], bytes], Callable[[bytes, int], tuple[int]]]:
    """A length or count prefix for `max_len`: its width, pack and unpack_from. The
    decoders check the bounds right after reading it, before they read or allocate
    anything for the items."""
    prefix = width_for(max_len)
    layout = pystruct.Struct(">" + _FORMAT_OF_SIZE[prefix])
    return prefix, layout.pack, layout.unpack_from


class Bytes(Kind):
    """Length-prefixed bytes with min/max length."""

    __slots__ = ("max_len", "min_len", "prefix")

    def __init__(self, min_len: int, max_len: int) -> None:
        if not 0 <= min_len <= max_len <= 0xFFFF:
            raise SchemaError(f"bytes bounds {min_len}..{max_len}")
        self.min_len = min_len
        self.max_len = max_len
        self.prefix = width_for(max_len)
        prefix, pack, unpack = _length_codec(max_len)

        def encode(value: bytes) -> bytes:
            return pack(len(value)) + value

        def decode(data: bytes, pos: int) -> tuple[bytes, int]:
            start = pos + prefix
            if start > len(data):
                raise _truncated(prefix, pos)
            length = unpack(data, pos)[0]
            if length < min_len or length > max_len:
                raise IpcError(Reason.BAD_LENGTH, f"{length} not in {min_len}..{max_len}")
            end = start + length
            if end > len(data):
                raise _truncated(length, start)
            return data[start:end], end

        def valid(value: object) -> bool:
            return type(value) is bytes and min_len <= len(value) <= max_len

        self._finish(encode, decode, valid)

    def _check_length(self, length: int) -> None:
        if not self.min_len <= length <= self.max_len:
            raise IpcError(Reason.BAD_LENGTH, f"{length} not in {self.min_len}..{self.max_len}")

    def _coerce(self, value: object) -> bytes:
        if not isinstance(value, bytes | bytearray):
            raise IpcError(Reason.BAD_TYPE, f"expected bytes, got {type(value).__name__}")
        self._check_length(len(value))
        return bytes(value)


class Fixed(Kind):
    """Bytes of exactly `length`, no prefix (cookies, salts)."""

    __slots__ = ("length",)

    def __init__(self, length: int) -> None:
        if not 0 < length <= 0xFFFF:
            raise SchemaError(f"fixed length {length}")
        self.length = length

        def decode(data: bytes, pos: int) -> tuple[bytes, int]:
            end = pos + length
            if end > len(data):
                raise _truncated(length, pos)
            return data[pos:end], end

        def valid(value: object) -> bool:
            return type(value) is bytes and len(value) == length

        self._finish(bytes, decode, valid)

    def _coerce(self, value: object) -> bytes:
        if not isinstance(value, bytes | bytearray):
            raise IpcError(Reason.BAD_TYPE, f"expected bytes, got {type(value).__name__}")
        if len(value) != self.length:
            raise IpcError(Reason.BAD_LENGTH, f"{len(value)} != {self.length}")
        return bytes(value)


class Str(Kind):
    """Length-prefixed UTF-8 text; bounds are in encoded bytes; charset restricts content."""

    __slots__ = ("bytes_kind", "charset")

    def __init__(self, max_len: int, min_len: int = 0, charset: Charset = Charset.TEXT):
        self.bytes_kind = Bytes(min_len, max_len)
        self.charset = charset
        allowed = _CHARSET_CHECKS[charset]
        prefix, pack, unpack = _length_codec(max_len)
        name = charset.value

        def encode(value: str) -> bytes:
            raw = value.encode("utf-8")
            return pack(len(raw)) + raw

        def decode(data: bytes, pos: int) -> tuple[str, int]:
            # Bytes' decoder and the text checks in one call (a listing row has 7 strings)
            start = pos + prefix
            if start > len(data):
                raise _truncated(prefix, pos)
            length = unpack(data, pos)[0]
            if length < min_len or length > max_len:
                raise IpcError(Reason.BAD_LENGTH, f"{length} not in {min_len}..{max_len}")
            end = start + length
            if end > len(data):
                raise _truncated(length, start)
            try:
                text = data[start:end].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise IpcError(Reason.BAD_UTF8, str(exc.reason)) from exc
            if not allowed(text):
                raise IpcError(Reason.BAD_CHARSET, f"{text!r} is not {name}")
            return text, end

        def valid(value: object) -> bool:
            # ASCII text: its length is its UTF-8 length; anything else takes the long way
            return (
                type(value) is str
                and value.isascii()
                and min_len <= len(value) <= max_len
                and allowed(value)
            )

        self._finish(encode, decode, valid)

    @property
    def min_len(self) -> int:
        return self.bytes_kind.min_len

    @property
    def max_len(self) -> int:
        return self.bytes_kind.max_len

    def _coerce(self, value: object) -> str:
        if not isinstance(value, str):
            raise IpcError(Reason.BAD_TYPE, f"expected str, got {type(value).__name__}")
        try:
            raw = value.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates
            raise IpcError(Reason.BAD_UTF8, "text has no UTF-8 encoding") from exc
        self.bytes_kind._check_length(len(raw))
        if not _CHARSET_CHECKS[self.charset](value):
            raise IpcError(Reason.BAD_CHARSET, f"{value!r} is not {self.charset.value}")
        return str(value)


_read_byte = _uint_decoder(1)


def _read_family(data: bytes, pos: int) -> tuple[AddressFamily, int]:
    byte, pos = _read_byte(data, pos)
    if byte == AddressFamily.IPV4:
        return AddressFamily.IPV4, pos
    if byte == AddressFamily.IPV6:
        return AddressFamily.IPV6, pos
    raise IpcError(Reason.BAD_FAMILY, f"family byte {byte}")


def _check_unscoped(address: IPAddress) -> None:
    """A scope id would be lost on the wire, so refuse it rather than drop it silently."""
    if isinstance(address, IPv6Address) and address.scope_id is not None:
        raise IpcError(Reason.BAD_TYPE, "scoped IPv6 addresses are not carried")


def _read_address(data: bytes, pos: int) -> tuple[AddressFamily, bytes, int]:
    family, pos = _read_family(data, pos)
    length = _ADDRESS_LENGTH[family]
    end = pos + length
    if end > len(data):
        raise _truncated(length, pos)
    return family, data[pos:end], end


ADDRESS_CACHE_SIZE = 4096
"""Decoded addresses kept for reuse (a listing names the same few gateway addresses in
every row; an ipaddress object costs more to build than to look up). Addresses are
immutable, so sharing one is safe; the cache is emptied when full, so whatever a hostile
sender sends, it holds at most this many."""

_ADDRESS_CACHE: dict[bytes, IPAddress] = {}


_FAMILY_BYTE = {4: b"\x04", 6: b"\x06"}
_LENGTH_OF_FAMILY_BYTE = {int(family): length for family, length in _ADDRESS_LENGTH.items()}


class Addr(Kind):
    """Family byte (4 or 6) then 4 or 16 address bytes."""

    __slots__ = ()

    def __init__(self) -> None:
        self._finish(self._encode, self._decode, self._valid)

    @staticmethod
    def _encode(value: IPAddress) -> bytes:
        if type(value) in IPV4_TYPES:
            return b"\x04" + int(value).to_bytes(4, "big")
        return _FAMILY_BYTE[value.version] + value.packed

    @staticmethod
    def _decode(data: bytes, pos: int) -> tuple[IPAddress, int]:
        if pos >= len(data):
            raise _truncated(1, pos)
        family = data[pos]
        length = _LENGTH_OF_FAMILY_BYTE.get(family)
        if length is None:
            raise IpcError(Reason.BAD_FAMILY, f"family byte {family}")
        pos += 1
        end = pos + length
        if end > len(data):
            raise _truncated(length, pos)
        raw = data[pos:end]
        address = _ADDRESS_CACHE.get(raw)
        if address is None:
            if len(_ADDRESS_CACHE) >= ADDRESS_CACHE_SIZE:
                _ADDRESS_CACHE.clear()
            address = HashedIPv4Address(raw) if length == 4 else HashedIPv6Address(raw)
            _ADDRESS_CACHE[raw] = address
        return address, end

    @staticmethod
    def _valid(value: object) -> bool:
        kind = type(value)
        return kind in IPV4_TYPES or (kind in IPV6_TYPES and value.scope_id is None)  # type: ignore[attr-defined]

    def _coerce(self, value: object) -> IPAddress:
        if not isinstance(value, IPv4Address | IPv6Address):
            raise IpcError(Reason.BAD_TYPE, f"expected IP address, got {type(value).__name__}")
        _check_unscoped(value)
        return value


class Net(Kind):
    """Address then prefix length; prefix within the family, host bits zero."""

    __slots__ = ()

    def __init__(self) -> None:
        self._finish(self._encode, self._decode, self._valid)

    @staticmethod
    def _encode(value: IPNetwork) -> bytes:
        return (
            _FAMILY_BYTE[value.version]
            + value.network_address.packed
            + value.prefixlen.to_bytes(1, "big")
        )

    @staticmethod
    def _decode(data: bytes, pos: int) -> tuple[IPNetwork, int]:
        family, raw, pos = _read_address(data, pos)
        prefix, pos = _read_byte(data, pos)
        bits = 8 * len(raw)
        if prefix > bits:
            raise IpcError(Reason.BAD_PREFIX, f"/{prefix} for a {bits}-bit address")
        if int.from_bytes(raw, "big") & ((1 << (bits - prefix)) - 1):
            raise IpcError(Reason.HOST_BITS, f"/{prefix}")
        return _NETWORK_CLASS[family]((_ADDRESS_CLASS[family](raw), prefix)), pos

    @staticmethod
    def _valid(value: object) -> bool:
        return type(value) is IPv4Network or (
            type(value) is IPv6Network and value.network_address.scope_id is None
        )

    def _coerce(self, value: object) -> IPNetwork:
        if not isinstance(value, IPv4Network | IPv6Network):
            raise IpcError(Reason.BAD_TYPE, f"expected IP network, got {type(value).__name__}")
        _check_unscoped(value.network_address)
        return value


class Opt(Kind):
    """Presence byte (0 absent, 1 present) then the inner value; Python None when absent."""

    __slots__ = ("inner",)

    def __init__(self, inner: Kind) -> None:
        self.inner = inner
        inner_encode, inner_decode, inner_valid = inner.encoder, inner.decoder, inner.valid

        def encode(value: object) -> bytes:
            return b"\x00" if value is None else b"\x01" + inner_encode(value)

        def decode(data: bytes, pos: int) -> tuple[object, int]:
            if pos >= len(data):
                raise _truncated(1, pos)
            byte = data[pos]
            if byte == 0:
                return None, pos + 1
            if byte != 1:
                raise IpcError(Reason.BAD_PRESENCE, f"byte {byte}")
            return inner_decode(data, pos + 1)

        codec: tuple[Encoder, Decoder] = (encode, decode)
        if inner.code is not None and inner.fix is not None:
            codec = self._fixed_width(inner, inner.code, inner.fix)

        def valid(value: object) -> bool:
            return value is None or inner_valid(value)

        # the type alone decides (a struct, a whole enum, a bool): so it does with None too
        typed = inner.types is not None and inner.container is None
        types = (*inner.types, _NONE_TYPE) if typed and inner.types is not None else None
        self._finish(*codec, valid, types)

    @staticmethod
    def _fixed_width(
        inner: Kind, code: str, fix: tuple[Container[int], Callable[[int], object]]
    ) -> tuple[Encoder, Decoder]:
        """Encoder and decoder of an optional integer, enum or bool: the presence byte and
        the value in one `struct` call each, checked as the inner kind checks it."""
        layout = pystruct.Struct(">B" + code)
        pack, unpack, size = layout.pack, layout.unpack_from, layout.size
        allowed, convert = fix
        refuse = cast(_Refuses, inner)._refuse

        def encode(value: object) -> bytes:
            return b"\x00" if value is None else pack(1, value)

        def decode(data: bytes, pos: int) -> tuple[object, int]:
            if pos >= len(data):
                raise _truncated(1, pos)
            byte = data[pos]
            if byte == 0:
                return None, pos + 1
            if byte != 1:
                raise IpcError(Reason.BAD_PRESENCE, f"byte {byte}")
            end = pos + size
            if end > len(data):
                raise _truncated(size - 1, pos + 1)
            number = unpack(data, pos)[1]
            if number not in allowed:
                raise refuse(number)
            return convert(number), end

        return encode, decode

    def _coerce(self, value: object) -> object:
        return None if value is None else self.inner.coerce(value)

    def depth(self) -> int:
        return self.inner.depth()


class ListOf(Kind):
    """Count-prefixed sequence of one kind; a tuple in Python (lists are accepted and frozen)."""

    __slots__ = ("_pack_count", "inner", "max_count", "min_count", "prefix")

    def __init__(self, inner: Kind, max_count: int, min_count: int = 0) -> None:
        if not 0 <= min_count <= max_count <= 0xFFFF:
            raise SchemaError(f"list bounds {min_count}..{max_count}")
        self.inner = inner
        self.min_count = min_count
        self.max_count = max_count
        self.prefix = width_for(max_count)
        prefix, pack, unpack = _length_codec(max_count)
        inner_encode, inner_decode, inner_valid = inner.encoder, inner.decoder, inner.valid

        def encode(value: tuple[object, ...]) -> bytes:
            return pack(len(value)) + b"".join(map(inner_encode, value))

        def decode(data: bytes, pos: int) -> tuple[tuple[object, ...], int]:
            start = pos + prefix
            if start > len(data):
                raise _truncated(prefix, pos)
            count = unpack(data, pos)[0]
            if count < min_count or count > max_count:  # before any item is read
                raise IpcError(Reason.TOO_MANY, f"{count} not in {min_count}..{max_count}")
            pos = start
            items: list[object] = []
            append = items.append
            index = 0
            try:
                for index in range(count):  # noqa: B007 -- names the failing item
                    item, pos = inner_decode(data, pos)
                    append(item)
            except IpcError as exc:
                raise exc.at(f"[{index}]") from None
            return tuple(items), pos

        # the type alone decides for a struct (most lists): a C-level check of all items
        by_type = inner.types is not None and inner.container is None
        inner_types = inner.types or frozenset()

        def valid(value: object) -> bool:
            return (
                type(value) is tuple
                and min_count <= len(value) <= max_count
                and (
                    inner_types.issuperset(map(type, value))
                    if by_type
                    else all(map(inner_valid, value))
                )
            )

        self._finish(encode, decode, valid)
        self._pack_count = pack

    def join_encoded(self, items: list[bytes]) -> bytes:
        """The list's bytes from the bytes of its items, each made by the inner kind's
        encoder of a value it accepts (a writer that sized each item by encoding it keeps
        the bytes rather than encode the list again). Raises IpcError for a count out of
        bounds."""
        self._check_count(len(items))
        return self._pack_count(len(items)) + b"".join(items)

    def _check_count(self, count: int) -> None:
        if not self.min_count <= count <= self.max_count:
            raise IpcError(Reason.TOO_MANY, f"{count} not in {self.min_count}..{self.max_count}")

    def _coerce(self, value: object) -> tuple[object, ...]:
        if not isinstance(value, tuple | list):
            raise IpcError(Reason.BAD_TYPE, f"expected tuple, got {type(value).__name__}")
        self._check_count(len(value))
        items = []
        for index, item in enumerate(value):
            try:
                items.append(self.inner.coerce(item))
            except IpcError as exc:
                raise exc.at(f"[{index}]") from None
        return tuple(items)

    def depth(self) -> int:
        return self.inner.depth()


class Nested(Kind):
    """A struct inside a struct, declared statically."""

    __slots__ = ("cls",)

    def __init__(self, cls: type[Struct]) -> None:
        if not getattr(cls, "_SCHEMA_READY", False):
            raise SchemaError(f"{cls.__name__} is not a finished @struct")
        self.cls = cls

        def valid(value: object) -> bool:
            return type(value) is cls

        self._finish(cls._WRITER, cls._READER, valid, (cls,))

    def _coerce(self, value: object) -> Struct:
        if type(value) is not self.cls:
            raise IpcError(
                Reason.BAD_TYPE, f"expected {self.cls.__name__}, got {type(value).__name__}"
            )
        assert isinstance(value, Struct)
        return value

    def depth(self) -> int:
        return 1 + self.cls._DEPTH


class Struct:
    """Base of every struct and message: validation on construction, compiled codec."""

    __slots__ = ()

    _SCHEMA: ClassVar[tuple[tuple[str, Kind], ...]] = ()
    _SCHEMA_READY: ClassVar[bool] = False
    _DEPTH: ClassVar[int] = 0
    # set by @struct from the table (see _Plan); called through the class, never bound
    _WRITER: ClassVar[Callable[[Any], bytes]]
    _READER: ClassVar[Callable[[bytes, int], tuple[Any, int]]]
    _VALIDATE: ClassVar[Callable[[Any], None]]

    def __post_init__(self) -> None:
        cls = type(self)
        if cls._SCHEMA_READY:
            cls._VALIDATE(self)
        else:  # not (yet) a @struct: no field table to check
            self.check()

    def check(self) -> None:
        """Cross-field shape rules of this struct; raise IpcError(INCONSISTENT) to refuse.

        Only shape belongs here (which optional parts go together). Policy (is this key
        length allowed for this tunnel) belongs to the parent's vetting, not the codec.
        """

    def _write(self, out: bytearray) -> None:
        out += type(self)._WRITER(self)

    @classmethod
    def _read(cls, reader: Reader) -> Self:
        """Decode one struct at the reader's position (see `_Plan.reader`)."""
        obj, reader.pos = cls._READER(reader.data, reader.pos)
        return cast(Self, obj)

    @classmethod
    def schema(cls) -> tuple[tuple[str, Kind], ...]:
        """The field table (name, kind), in wire order: for tests, docs and tools."""
        return cls._SCHEMA


def inconsistent(detail: str) -> IpcError:
    """The error a `check` raises when fields contradict each other."""
    return IpcError(Reason.INCONSISTENT, detail)


def _setter(cls: type, name: str) -> Callable[[object, object], None]:
    """Sets field `name` of a new instance of a frozen dataclass, bypassing its frozen
    __setattr__: the slot's own descriptor when it has slots (a C call), else
    object.__setattr__ (what dataclasses' own __init__ does)."""
    slot = cls.__dict__.get(name)
    if isinstance(slot, MemberDescriptorType):
        return cast(Callable[[object, object], None], slot.__set__)

    def set_field(obj: object, value: object) -> None:
        object.__setattr__(obj, name, value)

    return set_field


def _picker(indices: list[int]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """The values at `indices` of a tuple, as a tuple, in C."""
    if len(indices) == 1:
        return itemgetter(slice(indices[0], indices[0] + 1))
    if not indices:
        return lambda values: ()
    return itemgetter(*indices)


class _Plan:
    """A struct's codec, compiled once from its static field table when the catalogue is
    imported, so that a message costs few Python-level calls rather than several per field.

    Writing: one `attrgetter` fetches every field; each kind's encoder turns its value into
    bytes (`struct.Struct.pack`, a C call, for integers, enums and bools); one join.
    Reading: a run of consecutive fixed-width fields (integers, enums, bools) is read with
    one bounds check and one `unpack_from`; every value is checked against the container
    of the integers its kind allows (a `range` or an enum table, in C) and converted (the
    enum member, the bool) before any field is set; a value outside is refused with the
    kind's own error. Any other field calls its kind's decoder. The fields of a new
    instance are set as decoded (each decoder checks what `coerce` checks and returns the
    canonical value: the tests in test_ipc_* hold them to it), then the cross-field `check`
    runs; no field is validated a second time.
    Construction (the sending side, and every struct a program builds): each field must be
    `valid` (for most kinds: its exact type and, for integers and restricted enums, its
    container, all checked in C over the whole table at once); a value that is not takes
    the complete `coerce`, field by field, as before. Then `check`."""

    def __init__(self, cls: type[Struct], table: tuple[tuple[str, Kind], ...]) -> None:
        self.cls = cls
        self.table = table
        self.names = tuple(name for name, _ in table)
        self.check = cls.check if cls.check is not Struct.check else None

    def _get_all(self) -> Callable[[object], tuple[Any, ...]]:
        """Every field's value, in table order, as a tuple (one C call)."""
        if len(self.names) == 1:
            one = attrgetter(self.names[0])
            return lambda obj: (one(obj),)
        if not self.names:
            return lambda obj: ()
        return cast(Callable[[object], tuple[Any, ...]], attrgetter(*self.names))

    def writer(self) -> Callable[[Any], bytes]:
        get_all, encoders, join = self._get_all(), tuple(k.encoder for _, k in self.table), b"".join

        def write(obj: object) -> bytes:
            return join(map(call, encoders, get_all(obj)))

        return write

    def _runs(self) -> list[list[tuple[str, Kind]]]:
        runs: list[list[tuple[str, Kind]]] = []
        for name, kind in self.table:
            if kind.code is not None and runs and runs[-1][0][1].code is not None:
                runs[-1].append((name, kind))
            else:
                runs.append([(name, kind)])
        return runs

    def _run_reader(self, run: list[tuple[str, Kind]]) -> Callable[[bytes, int, object], int]:
        layout = pystruct.Struct(">" + "".join(cast(str, kind.code) for _, kind in run))
        unpack, size = layout.unpack_from, layout.size
        fixes = [cast(tuple[Container[int], Callable[[int], object]], kind.fix) for _, kind in run]
        allowed = tuple(fix[0] for fix in fixes)
        converts = tuple(fix[1] for fix in fixes)
        setters = tuple(_setter(self.cls, name) for name, _ in run)

        def read_run(data: bytes, pos: int, obj: object) -> int:
            end = pos + size
            if end > len(data):
                raise _run_truncated(run, data, pos)
            numbers = unpack(data, pos)
            if not all(map(contains, allowed, numbers)):
                raise _run_refused(run, numbers)
            for set_field, value in zip(setters, map(call, converts, numbers), strict=True):
                set_field(obj, value)
            return end

        return read_run

    def reader(self) -> Callable[[bytes, int], tuple[Any, int]]:
        steps: list[tuple[str, Callable[..., Any], Callable[[object, object], None] | None]] = []
        for run in self._runs():
            if len(run) > 1:
                steps.append(("", self._run_reader(run), None))  # it names its fields
            else:
                ((name, kind),) = run
                steps.append((name, kind.decoder, _setter(self.cls, name)))
        frozen_steps, new, cls, check = tuple(steps), object.__new__, self.cls, self.check

        def read(data: bytes, pos: int) -> tuple[Any, int]:
            obj = new(cls)
            name = ""
            try:
                for name, decode, set_field in frozen_steps:  # noqa: B007 -- names a failure
                    if set_field is None:  # a run of fixed-width fields: sets them itself
                        pos = decode(data, pos, obj)
                    else:
                        value, pos = decode(data, pos)
                        set_field(obj, value)
            except IpcError as exc:
                raise (exc.at(name) if name else exc) from None
            if check is not None:
                check(obj)
            return obj, pos

        return read

    def validator(self) -> Callable[[Any], None]:
        table, check, get_all = self.table, self.check, self._get_all()
        typed = [i for i, (_, kind) in enumerate(table) if kind.types is not None]
        contained = [i for i in typed if table[i][1].container is not None]
        others = [i for i, (_, kind) in enumerate(table) if kind.types is None]
        pick_typed, pick_contained, pick_others = map(_picker, (typed, contained, others))
        types = tuple(cast(frozenset[type], table[i][1].types) for i in typed)
        containers = tuple(cast(Container[Any], table[i][1].container) for i in contained)
        valids = tuple(table[i][1].valid for i in others)

        def validate(obj: Struct) -> None:
            values = get_all(obj)
            # in this order: a container is consulted only for a value of its type
            if not (
                all(map(contains, types, map(type, pick_typed(values))))
                and all(map(contains, containers, pick_contained(values)))
                and all(map(call, valids, pick_others(values)))
            ):
                for (name, kind), value in zip(table, values, strict=True):
                    try:
                        canonical = kind.coerce(value)
                    except IpcError as exc:
                        raise exc.at(name) from None
                    if canonical is not value:
                        object.__setattr__(obj, name, canonical)
            if check is not None:
                check(obj)

        return validate


def _run_truncated(run: list[tuple[str, Kind]], data: bytes, pos: int) -> IpcError:
    """TRUNCATED at the first field of a run of fixed-width fields that does not fit."""
    for name, kind in run:
        size = pystruct.calcsize(">" + cast(str, kind.code))
        if pos + size > len(data):
            return _truncated(size, pos).at(name)
        pos += size
    raise AssertionError("the run fits")  # pragma: no cover - only called when it does not


def _run_refused(run: list[tuple[str, Kind]], numbers: tuple[int, ...]) -> IpcError:
    """The error of the first field of a run whose value its kind does not allow."""
    for (name, kind), number in zip(run, numbers, strict=True):
        allowed = cast(tuple[Container[int], Callable[[int], object]], kind.fix)[0]
        if number not in allowed:
            return cast(_Refuses, kind)._refuse(number).at(name)
    raise AssertionError("a value is refused")  # pragma: no cover - only called then


class _Refuses(typing.Protocol):
    def _refuse(self, number: int) -> IpcError: ...


def _kind_of(owner: str, name: str, annotation: object) -> Kind:
    if isinstance(annotation, str):
        raise SchemaError(
            f"{owner}.{name}: string annotation; the catalogue must not use "
            "'from __future__ import annotations'"
        )
    if typing.get_origin(annotation) is typing.Annotated:
        kinds = [m for m in getattr(annotation, "__metadata__", ()) if isinstance(m, Kind)]
        if len(kinds) != 1:
            raise SchemaError(f"{owner}.{name}: needs exactly one Kind in Annotated[...]")
        return kinds[0]
    if annotation is bool:
        return Bool()
    if isinstance(annotation, type) and issubclass(annotation, Struct):
        return Nested(annotation)
    raise SchemaError(f"{owner}.{name}: annotate with Annotated[type, Kind]")


S = TypeVar("S", bound=Struct)


def struct(cls: type[S]) -> type[S]:
    """Finish a frozen dataclass as a struct: derive its field table from the annotations."""
    params = getattr(cls, "__dataclass_params__", None)
    if not dataclasses.is_dataclass(cls) or params is None or not params.frozen:
        raise SchemaError(f"{cls.__name__}: apply @dataclass(frozen=True, slots=True) first")
    annotations = inspect.get_annotations(cls)
    table = tuple(
        (field.name, _kind_of(cls.__name__, field.name, annotations[field.name]))
        for field in dataclasses.fields(cls)
    )
    depth = max((kind.depth() for _, kind in table), default=0)
    if depth > MAX_NESTING:
        raise SchemaError(f"{cls.__name__}: nesting depth {depth} > {MAX_NESTING}")
    plan = _Plan(cls, table)
    cls._SCHEMA = table
    cls._DEPTH = depth
    cls._WRITER = plan.writer()
    cls._READER = plan.reader()
    cls._VALIDATE = plan.validator()
    cls._SCHEMA_READY = True
    return cls


class Message(Struct):
    """A struct that travels alone in one datagram, identified by its type number."""

    __slots__ = ()

    TYPE: ClassVar[int] = 0
    _TYPE_BYTES: ClassVar[bytes] = b""
    DIRECTION: ClassVar[Direction]


M = TypeVar("M", bound=Message)

_REGISTRY: dict[int, type[Message]] = {}


def message(type_number: int, direction: Direction) -> Callable[[type[M]], type[M]]:
    """Register a message class under a unique type number for one direction."""

    def register(cls: type[M]) -> type[M]:
        struct(cls)
        if not 0 < type_number <= 0xFFFF or type_number >> 8 != direction:
            raise SchemaError(
                f"{cls.__name__}: type {type_number:#06x} must be {direction:#04x}xx "
                f"({direction.name}): the high byte names the direction"
            )
        taken = _REGISTRY.get(type_number)
        if taken is not None:
            raise SchemaError(
                f"type {type_number:#06x} used by {taken.__name__} and {cls.__name__}"
            )
        cls.TYPE = type_number
        cls._TYPE_BYTES = type_number.to_bytes(TYPE_SIZE, "big")
        cls.DIRECTION = direction
        _REGISTRY[type_number] = cls
        return cls

    return register


def registry() -> dict[int, type[Message]]:
    """A copy of the type table, for tests, fuzzers and documentation."""
    return dict(_REGISTRY)


def encode(msg: Message) -> bytes:
    """One message to the bytes of one datagram."""
    cls = type(msg)
    if _REGISTRY.get(cls.TYPE) is not cls:
        raise IpcError(Reason.UNKNOWN_TYPE, f"{cls.__name__} is not a registered message")
    out = cls._TYPE_BYTES + cls._WRITER(msg)
    if len(out) > MAX_MESSAGE_SIZE:
        raise IpcError(Reason.TOO_LARGE, f"{cls.__name__} encodes to {len(out)} bytes")
    return out


_read_type = _uint_decoder(TYPE_SIZE)


def _decode(data: bytes, direction: Direction | None) -> Message:
    if not isinstance(data, bytes):
        raise IpcError(Reason.BAD_TYPE, f"expected bytes, got {type(data).__name__}")
    if len(data) > MAX_MESSAGE_SIZE:
        raise IpcError(Reason.TOO_LARGE, f"{len(data)} bytes")
    type_number, pos = _read_type(data, 0)
    cls = _REGISTRY.get(type_number)
    if cls is None:
        raise IpcError(Reason.UNKNOWN_TYPE, f"type {type_number:#06x}")
    if direction is not None and cls.DIRECTION is not direction:
        raise IpcError(Reason.WRONG_DIRECTION, f"{cls.__name__} is not {direction.name}")
    try:
        msg, pos = cls._READER(data, pos)
    except IpcError as exc:
        raise exc.at(cls.__name__) from None
    if pos != len(data):
        raise IpcError(Reason.TRAILING_BYTES, f"{len(data) - pos} after {cls.__name__}")
    return cast(Message, msg)


def decode(data: bytes, direction: Direction) -> Message:
    """Bytes of one datagram to a message allowed on `direction`; IpcError otherwise."""
    return _decode(data, direction)


def decode_any(data: bytes) -> Message:
    """Like `decode` but for any direction: for dump tools and fuzzers, not for daemons."""
    return _decode(data, None)
