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
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable
from enum import Enum, IntEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any, ClassVar, Self, TypeVar

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


class Reader:
    """Cursor over one received message; every read is bounds-checked."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def take(self, count: int) -> bytes:
        end = self.pos + count
        if end > len(self.data):
            raise IpcError(Reason.TRUNCATED, f"need {count} bytes at offset {self.pos}")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def uint(self, size: int) -> int:
        # take() inlined: integers are most of what every message holds
        pos = self.pos
        end = pos + size
        if end > len(self.data):
            raise IpcError(Reason.TRUNCATED, f"need {size} bytes at offset {pos}")
        self.pos = end
        return int.from_bytes(self.data[pos:end], "big")


class Kind(ABC):
    """How one field is validated, written and read."""

    __slots__ = ()

    @abstractmethod
    def coerce(self, value: object) -> object:
        """Validate a Python value and return its canonical form (raises IpcError)."""

    @abstractmethod
    def encode(self, value: Any, out: bytearray) -> None:
        """Append a value already accepted by `coerce`."""

    @abstractmethod
    def decode(self, reader: Reader) -> object:
        """Read one value; raises IpcError on anything not produced by `encode`."""

    def depth(self) -> int:
        """Struct nesting below this field (0 for scalars)."""
        return 0


class UInt(Kind):
    """Unsigned big-endian integer of `size` bytes, within [lo, hi]."""

    __slots__ = ("hi", "lo", "size")

    def __init__(self, size: int, lo: int = 0, hi: int | None = None) -> None:
        if size not in (1, 2, 4, 8):
            raise SchemaError(f"integer size {size}")
        top = (1 << (8 * size)) - 1
        self.size = size
        self.lo = lo
        self.hi = top if hi is None else hi
        if not 0 <= self.lo <= self.hi <= top:
            raise SchemaError(f"integer bounds {lo}..{hi} for {size} bytes")

    def coerce(self, value: object) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise IpcError(Reason.BAD_TYPE, f"expected int, got {type(value).__name__}")
        number = int(value)
        if not self.lo <= number <= self.hi:
            raise IpcError(Reason.INT_RANGE, f"{number} not in {self.lo}..{self.hi}")
        return number

    def encode(self, value: int, out: bytearray) -> None:
        out += value.to_bytes(self.size, "big")

    def decode(self, reader: Reader) -> int:
        number = reader.uint(self.size)
        if not self.lo <= number <= self.hi:
            raise IpcError(Reason.INT_RANGE, f"{number} not in {self.lo}..{self.hi}")
        return number


class Bool(Kind):
    """One byte, exactly 0 or 1."""

    __slots__ = ()

    def coerce(self, value: object) -> bool:
        if not isinstance(value, bool):
            raise IpcError(Reason.BAD_TYPE, f"expected bool, got {type(value).__name__}")
        return value

    def encode(self, value: bool, out: bytearray) -> None:
        out.append(1 if value else 0)

    def decode(self, reader: Reader) -> bool:
        byte = reader.uint(1)
        if byte > 1:
            raise IpcError(Reason.BAD_BOOL, f"byte {byte}")
        return byte == 1


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

    def coerce(self, value: object) -> IntEnum:
        if type(value) is not self.enum:
            raise IpcError(
                Reason.BAD_TYPE, f"expected {self.enum.__name__}, got {type(value).__name__}"
            )
        assert isinstance(value, IntEnum)
        if int(value) not in self.members:
            raise IpcError(Reason.BAD_ENUM, f"{value!r} not allowed here")
        return value

    def encode(self, value: IntEnum, out: bytearray) -> None:
        out += int(value).to_bytes(self.size, "big")

    def decode(self, reader: Reader) -> IntEnum:
        number = reader.uint(self.size)
        member = self.members.get(number)
        if member is None:
            raise IpcError(Reason.BAD_ENUM, f"{number} is not an allowed {self.enum.__name__}")
        return member


class Bytes(Kind):
    """Length-prefixed bytes with min/max length."""

    __slots__ = ("max_len", "min_len", "prefix")

    def __init__(self, min_len: int, max_len: int) -> None:
        if not 0 <= min_len <= max_len <= 0xFFFF:
            raise SchemaError(f"bytes bounds {min_len}..{max_len}")
        self.min_len = min_len
        self.max_len = max_len
        self.prefix = width_for(max_len)

    def _check_length(self, length: int) -> None:
        if not self.min_len <= length <= self.max_len:
            raise IpcError(Reason.BAD_LENGTH, f"{length} not in {self.min_len}..{self.max_len}")

    def coerce(self, value: object) -> bytes:
        if not isinstance(value, bytes | bytearray):
            raise IpcError(Reason.BAD_TYPE, f"expected bytes, got {type(value).__name__}")
        self._check_length(len(value))
        return bytes(value)

    def encode(self, value: bytes, out: bytearray) -> None:
        out += len(value).to_bytes(self.prefix, "big")
        out += value

    def decode(self, reader: Reader) -> bytes:
        length = reader.uint(self.prefix)
        self._check_length(length)
        return reader.take(length)


class Fixed(Kind):
    """Bytes of exactly `length`, no prefix (cookies, salts)."""

    __slots__ = ("length",)

    def __init__(self, length: int) -> None:
        if not 0 < length <= 0xFFFF:
            raise SchemaError(f"fixed length {length}")
        self.length = length

    def coerce(self, value: object) -> bytes:
        if not isinstance(value, bytes | bytearray):
            raise IpcError(Reason.BAD_TYPE, f"expected bytes, got {type(value).__name__}")
        if len(value) != self.length:
            raise IpcError(Reason.BAD_LENGTH, f"{len(value)} != {self.length}")
        return bytes(value)

    def encode(self, value: bytes, out: bytearray) -> None:
        out += value

    def decode(self, reader: Reader) -> bytes:
        return reader.take(self.length)


class Str(Kind):
    """Length-prefixed UTF-8 text; bounds are in encoded bytes; charset restricts content."""

    __slots__ = ("bytes_kind", "charset")

    def __init__(self, max_len: int, min_len: int = 0, charset: Charset = Charset.TEXT):
        self.bytes_kind = Bytes(min_len, max_len)
        self.charset = charset

    @property
    def min_len(self) -> int:
        return self.bytes_kind.min_len

    @property
    def max_len(self) -> int:
        return self.bytes_kind.max_len

    def _check_text(self, text: str) -> None:
        if not _CHARSET_CHECKS[self.charset](text):
            raise IpcError(Reason.BAD_CHARSET, f"{text!r} is not {self.charset.value}")

    def coerce(self, value: object) -> str:
        if not isinstance(value, str):
            raise IpcError(Reason.BAD_TYPE, f"expected str, got {type(value).__name__}")
        try:
            raw = value.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates
            raise IpcError(Reason.BAD_UTF8, "text has no UTF-8 encoding") from exc
        self.bytes_kind._check_length(len(raw))
        self._check_text(value)
        return str(value)

    def encode(self, value: str, out: bytearray) -> None:
        self.bytes_kind.encode(value.encode("utf-8"), out)

    def decode(self, reader: Reader) -> str:
        raw = self.bytes_kind.decode(reader)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise IpcError(Reason.BAD_UTF8, str(exc.reason)) from exc
        self._check_text(text)
        return text


def _read_family(reader: Reader) -> AddressFamily:
    byte = reader.uint(1)
    if byte == AddressFamily.IPV4:
        return AddressFamily.IPV4
    if byte == AddressFamily.IPV6:
        return AddressFamily.IPV6
    raise IpcError(Reason.BAD_FAMILY, f"family byte {byte}")


def _check_unscoped(address: IPAddress) -> None:
    """A scope id would be lost on the wire, so refuse it rather than drop it silently."""
    if isinstance(address, IPv6Address) and address.scope_id is not None:
        raise IpcError(Reason.BAD_TYPE, "scoped IPv6 addresses are not carried")


class Addr(Kind):
    """Family byte (4 or 6) then 4 or 16 address bytes."""

    __slots__ = ()

    def coerce(self, value: object) -> IPAddress:
        if not isinstance(value, IPv4Address | IPv6Address):
            raise IpcError(Reason.BAD_TYPE, f"expected IP address, got {type(value).__name__}")
        _check_unscoped(value)
        return value

    def encode(self, value: IPAddress, out: bytearray) -> None:
        out.append(_FAMILY_OF_VERSION[value.version])
        out += value.packed

    def decode(self, reader: Reader) -> IPAddress:
        family = _read_family(reader)
        return _ADDRESS_CLASS[family](reader.take(_ADDRESS_LENGTH[family]))


class Net(Kind):
    """Address then prefix length; prefix within the family, host bits zero."""

    __slots__ = ()

    def coerce(self, value: object) -> IPNetwork:
        if not isinstance(value, IPv4Network | IPv6Network):
            raise IpcError(Reason.BAD_TYPE, f"expected IP network, got {type(value).__name__}")
        _check_unscoped(value.network_address)
        return value

    def encode(self, value: IPNetwork, out: bytearray) -> None:
        out.append(_FAMILY_OF_VERSION[value.version])
        out += value.network_address.packed
        out.append(value.prefixlen)

    def decode(self, reader: Reader) -> IPNetwork:
        family = _read_family(reader)
        length = _ADDRESS_LENGTH[family]
        raw = reader.take(length)
        prefix = reader.uint(1)
        bits = 8 * length
        if prefix > bits:
            raise IpcError(Reason.BAD_PREFIX, f"/{prefix} for a {bits}-bit address")
        if int.from_bytes(raw, "big") & ((1 << (bits - prefix)) - 1):
            raise IpcError(Reason.HOST_BITS, f"/{prefix}")
        return _NETWORK_CLASS[family]((_ADDRESS_CLASS[family](raw), prefix))


class Opt(Kind):
    """Presence byte (0 absent, 1 present) then the inner value; Python None when absent."""

    __slots__ = ("inner",)

    def __init__(self, inner: Kind) -> None:
        self.inner = inner

    def coerce(self, value: object) -> object:
        return None if value is None else self.inner.coerce(value)

    def encode(self, value: object, out: bytearray) -> None:
        if value is None:
            out.append(0)
        else:
            out.append(1)
            self.inner.encode(value, out)

    def decode(self, reader: Reader) -> object:
        byte = reader.uint(1)
        if byte == 0:
            return None
        if byte != 1:
            raise IpcError(Reason.BAD_PRESENCE, f"byte {byte}")
        return self.inner.decode(reader)

    def depth(self) -> int:
        return self.inner.depth()


class ListOf(Kind):
    """Count-prefixed sequence of one kind; a tuple in Python (lists are accepted and frozen)."""

    __slots__ = ("inner", "max_count", "min_count", "prefix")

    def __init__(self, inner: Kind, max_count: int, min_count: int = 0) -> None:
        if not 0 <= min_count <= max_count <= 0xFFFF:
            raise SchemaError(f"list bounds {min_count}..{max_count}")
        self.inner = inner
        self.min_count = min_count
        self.max_count = max_count
        self.prefix = width_for(max_count)

    def _check_count(self, count: int) -> None:
        if not self.min_count <= count <= self.max_count:
            raise IpcError(Reason.TOO_MANY, f"{count} not in {self.min_count}..{self.max_count}")

    def coerce(self, value: object) -> tuple[object, ...]:
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

    def encode(self, value: tuple[object, ...], out: bytearray) -> None:
        out += len(value).to_bytes(self.prefix, "big")
        for item in value:
            self.inner.encode(item, out)

    def decode(self, reader: Reader) -> tuple[object, ...]:
        count = reader.uint(self.prefix)
        self._check_count(count)  # before reading any item: no input-sized allocation
        items = []
        for index in range(count):
            try:
                items.append(self.inner.decode(reader))
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

    def coerce(self, value: object) -> Struct:
        if type(value) is not self.cls:
            raise IpcError(
                Reason.BAD_TYPE, f"expected {self.cls.__name__}, got {type(value).__name__}"
            )
        assert isinstance(value, Struct)
        return value

    def encode(self, value: Struct, out: bytearray) -> None:
        value._write(out)

    def decode(self, reader: Reader) -> Struct:
        return self.cls._read(reader)

    def depth(self) -> int:
        return 1 + self.cls._DEPTH


class Struct:
    """Base of every struct and message: validation on construction, generic codec loops."""

    __slots__ = ()

    _SCHEMA: ClassVar[tuple[tuple[str, Kind], ...]] = ()
    _SCHEMA_READY: ClassVar[bool] = False
    _DEPTH: ClassVar[int] = 0

    def __post_init__(self) -> None:
        for name, kind in self._SCHEMA:
            value = getattr(self, name)
            try:
                canonical = kind.coerce(value)
            except IpcError as exc:
                raise exc.at(name) from None
            if canonical is not value:
                object.__setattr__(self, name, canonical)
        self.check()

    def check(self) -> None:
        """Cross-field shape rules of this struct; raise IpcError(INCONSISTENT) to refuse.

        Only shape belongs here (which optional parts go together). Policy (is this key
        length allowed for this tunnel) belongs to the parent's vetting, not the codec.
        """

    def _write(self, out: bytearray) -> None:
        for name, kind in self._SCHEMA:
            kind.encode(getattr(self, name), out)

    @classmethod
    def _read(cls, reader: Reader) -> Self:
        """Decode one struct. Every Kind's decode checks what its coerce checks and
        returns the canonical value (the tests in test_ipc_* hold them to it), so the
        fields are set as decoded and only the cross-field `check` runs: validating each
        field a second time in __post_init__ doubled the cost of every decode (a listing
        of 10,000 tunnels decodes 10,000 reports in the parent and as many rows in the
        CLI)."""
        obj = object.__new__(cls)
        for name, kind in cls._SCHEMA:
            try:
                value = kind.decode(reader)
            except IpcError as exc:
                raise exc.at(name) from None
            object.__setattr__(obj, name, value)
        obj.check()
        return obj

    @classmethod
    def schema(cls) -> tuple[tuple[str, Kind], ...]:
        """The field table (name, kind), in wire order: for tests, docs and tools."""
        return cls._SCHEMA


def inconsistent(detail: str) -> IpcError:
    """The error a `check` raises when fields contradict each other."""
    return IpcError(Reason.INCONSISTENT, detail)


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
    cls._SCHEMA = table
    cls._DEPTH = depth
    cls._SCHEMA_READY = True
    return cls


class Message(Struct):
    """A struct that travels alone in one datagram, identified by its type number."""

    __slots__ = ()

    TYPE: ClassVar[int] = 0
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
    out = bytearray(cls.TYPE.to_bytes(TYPE_SIZE, "big"))
    msg._write(out)
    if len(out) > MAX_MESSAGE_SIZE:
        raise IpcError(Reason.TOO_LARGE, f"{cls.__name__} encodes to {len(out)} bytes")
    return bytes(out)


def _decode(data: bytes, direction: Direction | None) -> Message:
    if not isinstance(data, bytes):
        raise IpcError(Reason.BAD_TYPE, f"expected bytes, got {type(data).__name__}")
    if len(data) > MAX_MESSAGE_SIZE:
        raise IpcError(Reason.TOO_LARGE, f"{len(data)} bytes")
    reader = Reader(data)
    type_number = reader.uint(TYPE_SIZE)
    cls = _REGISTRY.get(type_number)
    if cls is None:
        raise IpcError(Reason.UNKNOWN_TYPE, f"type {type_number:#06x}")
    if direction is not None and cls.DIRECTION is not direction:
        raise IpcError(Reason.WRONG_DIRECTION, f"{cls.__name__} is not {direction.name}")
    try:
        msg = cls._read(reader)
    except IpcError as exc:
        raise exc.at(cls.__name__) from None
    if reader.pos != len(data):
        raise IpcError(Reason.TRAILING_BYTES, f"{len(data) - reader.pos} after {cls.__name__}")
    return msg


def decode(data: bytes, direction: Direction) -> Message:
    """Bytes of one datagram to a message allowed on `direction`; IpcError otherwise."""
    return _decode(data, direction)


def decode_any(data: bytes) -> Message:
    """Like `decode` but for any direction: for dump tools and fuzzers, not for daemons."""
    return _decode(data, None)
