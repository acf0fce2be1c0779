"""The parent's XFRM client: SPIs, SAs and policies, one netlink request/answer per call.

Synchronous on purpose: the parent calls it from one worker thread (or through
trio.to_thread). Requests are packed by xfrm_pack.py (precompiled struct packers); answers,
dumps and events are decoded with the pyroute2 classes of xfrm_messages.py; the value
types come from specs.py. Deletes can go several to a datagram (`delete_all`): the kernel
acks each one, and a failed one does not stop the others, as when sent one by one. Writes
that depend on each other (an install's) are never batched: the kernel would carry out the
messages after a refused one. The netlink socket itself is a plain AF_NETLINK socket rather
than pyroute2's NetlinkSocket, because that class keeps its socket and asyncio loop per
thread: calls from trio's thread pool would each open a new, unbound socket, and the event
socket would lose its group membership. Dumps carry keys back; the decoders drop them.
"""

from __future__ import annotations

import errno as errno_mod
import ipaddress
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final, NamedTuple, TypeVar

from ikepriv.isakmp.constants import IpProtocol
from ikepriv.parent_kernel.kernel import xfrm_messages as xm
from ikepriv.parent_kernel.kernel import xfrm_pack as xp
from ikepriv.parent_kernel.kernel.specs import (
    AF_FOR_VERSION,
    IPSEC_PROTOCOLS,
    MIN_SPI,
    Encap,
    IPAddress,
    PolicyRecord,
    PolicySpec,
    SaRecord,
    SaSpec,
    SelectorSpec,
    Template,
    XfrmError,
)
from ikepriv.parent_kernel.kernel.xfrm_messages import (
    Direction,
    MsgType,
    NlGroup,
    PolicyAction,
    XfrmMode,
)

# netlink plumbing (linux/netlink.h)
SOL_NETLINK: Final = 270
NETLINK_ADD_MEMBERSHIP: Final = 1
NETLINK_CAP_ACK: Final = 10  # errors echo only the request header, never the keys
NETLINK_EXT_ACK: Final = 11  # errors carry the kernel's text reason
NLM_F_REQUEST: Final = 0x1
NLM_F_MULTI: Final = 0x2
NLM_F_ACK: Final = 0x4
NLM_F_DUMP: Final = 0x300
NLM_F_CAPPED: Final = 0x100
NLM_F_ACK_TLVS: Final = 0x200
NLMSG_ERROR: Final = 2
NLMSG_DONE: Final = 3
NLMSG_OVERRUN: Final = 4
NLMSGERR_ATTR_MSG: Final = 1
NLMSG_HDR: Final = struct.Struct("=IHHII")
RECV_BUFSIZE: Final = 1 << 16
_T = TypeVar("_T")
MAX_DUMP_RECORDS: Final = 100_000  # a dump larger than this is refused, not buffered
DELETE_BATCH: Final = 64  # deletes per datagram (delete_all): their acks fit any buffer


# --------------------------------------------------------------------------
# Conversions between dataclasses and the kernel structures


def addr_from(raw: bytes, family: int) -> IPAddress:
    if family == socket.AF_INET:
        return ipaddress.IPv4Address(raw[:4])
    if family == socket.AF_INET6:
        return ipaddress.IPv6Address(raw[:16])
    raise ValueError(f"unknown address family {family}")


def selector_from(raw: dict[str, Any]) -> SelectorSpec | None:
    family = raw["family"]
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    src = addr_from(raw["saddr"], family)
    dst = addr_from(raw["daddr"], family)
    return SelectorSpec(
        src=ipaddress.ip_network((src, raw["prefixlen_s"]), strict=False),
        dst=ipaddress.ip_network((dst, raw["prefixlen_d"]), strict=False),
        proto=raw["proto"],
        sport=raw["sport"] & raw["sport_mask"],
        dport=raw["dport"] & raw["dport_mask"],
    )


KERNEL_DIRECTIONS: Final = frozenset(int(d) for d in Direction)


def _enum_or_int(enum: Any, value: int) -> Any:
    """Kernel values outside our enums (BEET mode, IPcomp) are reported as plain ints."""
    try:
        return enum(value)
    except ValueError:
        return value


def tmpl_from(raw: dict[str, Any]) -> Template:
    family = raw["family"]
    mode = _enum_or_int(XfrmMode, raw["mode"])
    tunnel = mode == XfrmMode.TUNNEL and family in AF_FOR_VERSION.values()
    return Template(
        proto=_enum_or_int(IpProtocol, raw["id"]["proto"]),
        mode=mode,
        reqid=raw["reqid"],
        src=addr_from(raw["saddr"], family) if tunnel else None,
        dst=addr_from(raw["id"]["daddr"], family) if tunnel else None,
        spi=raw["id"]["spi"],
        optional=bool(raw["optional"]),
    )


def attr_map(msg: Any) -> dict[str, Any]:
    """Decoded attributes by name.  pyroute2 decodes NLAs lazily and, on failure,
    logs and hands back raw bytes; a malformed attribute is an error here instead."""
    out: dict[str, Any] = {}
    for slot in msg.get("attrs", ()):
        if slot.name == "UNKNOWN":
            continue
        if not slot.try_to_decode():
            raise ValueError(f"malformed attribute {slot.name}")
        out[slot.name] = slot.value
    return out


def sa_record(msg: Any) -> SaRecord:
    family = msg["family"]
    attrs = attr_map(msg)
    enc = attrs.get("XFRMA_ALG_CRYPT")
    auth = attrs.get("XFRMA_ALG_AUTH_TRUNC") or attrs.get("XFRMA_ALG_AUTH")
    aead = attrs.get("XFRMA_ALG_AEAD")
    encap_raw = attrs.get("XFRMA_ENCAP")
    encap = None
    if encap_raw is not None and encap_raw["encap_sport"] and encap_raw["encap_dport"]:
        encap = Encap(
            sport=encap_raw["encap_sport"],
            dport=encap_raw["encap_dport"],
            type=encap_raw["encap_type"],
        )
    window = msg["replay_window"]
    esn = attrs.get("XFRMA_REPLAY_ESN_VAL")
    if esn is not None:
        window = esn["replay_window"]
    cur = msg["curlft"]
    return SaRecord(
        src=addr_from(msg["saddr"], family),
        dst=addr_from(msg["id"]["daddr"], family),
        proto=msg["id"]["proto"],
        spi=msg["id"]["spi"],
        mode=msg["mode"],
        reqid=msg["reqid"],
        selector=selector_from(msg["sel"]),
        encryption=enc["name"] if enc else None,
        integrity=auth["name"] if auth else None,
        aead=aead["name"] if aead else None,
        encap=encap,
        replay_window=window,
        bytes=cur["bytes"],
        packets=cur["packets"],
        add_time=cur["add_time"],
        use_time=cur["use_time"],
        replay_errors=msg["stats"]["replay"],
        integrity_failures=msg["stats"]["integrity_failed"],
    )


def _policy_record(msg: Any) -> PolicyRecord | None:
    selector = selector_from(msg["sel"])
    if selector is None or msg["dir"] not in KERNEL_DIRECTIONS:
        return None  # socket policies and exotic families are not ours to report
    attrs = attr_map(msg)
    return PolicyRecord(
        selector=selector,
        direction=Direction(msg["dir"]),
        action=PolicyAction(msg["action"] & 1),
        priority=msg["priority"],
        index=msg["index"],
        templates=tuple(tmpl_from(t) for t in attrs.get("XFRMA_TMPL", ())),
        add_time=msg["curlft"]["add_time"],
        use_time=msg["curlft"]["use_time"],
    )


# --------------------------------------------------------------------------
# Netlink transport


def open_socket(groups: Iterable[NlGroup] = ()) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, xm.NETLINK_XFRM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        for opt in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
            try:
                sock.setsockopt(SOL_NETLINK, opt, 1)
            except OSError:
                pass  # older kernels: plain errors are still fine
        sock.bind((0, 0))
        for group in groups:
            sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, int(group))
    except BaseException:
        sock.close()
        raise
    return sock


def wait_readable(sock: socket.socket, timeout: float | None) -> bool:
    """poll(2), not select(2): the parent may hold descriptors numbered above 1024."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000))))


def split_messages(data: bytes) -> Iterator[tuple[int, int, int, int, bytes]]:
    """Yield (type, flags, seq, pid, whole message) for each netlink message in a datagram."""
    offset = 0
    while offset + NLMSG_HDR.size <= len(data):
        length, mtype, flags, seq, pid = NLMSG_HDR.unpack_from(data, offset)
        if length < NLMSG_HDR.size or offset + length > len(data):
            raise XfrmError(errno_mod.EBADMSG, "netlink", "truncated netlink message")
        yield mtype, flags, seq, pid, data[offset : offset + length]
        offset += (length + 3) & ~3


def error_of(msg: bytes, flags: int) -> tuple[int, str]:
    """Decode NLMSG_ERROR: (positive errno or 0, extended-ack text)."""
    if len(msg) < NLMSG_HDR.size + 4:
        return errno_mod.EBADMSG, "short error message"
    (code,) = struct.unpack_from("=i", msg, NLMSG_HDR.size)
    detail = ""
    if flags & NLM_F_ACK_TLVS:
        echoed = NLMSG_HDR.size
        if not flags & NLM_F_CAPPED and len(msg) >= NLMSG_HDR.size + 4 + 4:
            (echoed,) = struct.unpack_from("=I", msg, NLMSG_HDR.size + 4)
        offset = NLMSG_HDR.size + 4 + ((echoed + 3) & ~3)
        while offset + 4 <= len(msg):
            alen, atype = struct.unpack_from("=HH", msg, offset)
            if alen < 4 or offset + alen > len(msg):
                break
            if atype == NLMSGERR_ATTR_MSG:
                detail = (
                    msg[offset + 4 : offset + alen].split(b"\0", 1)[0].decode("ascii", "replace")
                )
            offset += (alen + 3) & ~3
    return -code, detail


def _packed(operation: str, pack: Callable[..., bytearray], *args: Any) -> bytearray:
    """A request packed by xfrm_pack; a value that does not fit is the caller's error."""
    try:
        return pack(*args)
    except (struct.error, ValueError, KeyError, TypeError) as exc:
        raise XfrmError(errno_mod.EINVAL, operation, f"cannot encode: {exc}") from exc


def _sa_dump() -> bytearray:
    return xp.sa_id_message(None, 0, 0, MsgType.GETSA, NLM_F_REQUEST | NLM_F_DUMP)


def _policy_dump() -> bytearray:
    return xp.policy_id_message(None, Direction.IN, MsgType.GETPOLICY, NLM_F_REQUEST | NLM_F_DUMP)


def decode_netlink(msg_class: type[Any], raw: bytes, operation: str) -> Any:
    try:
        msg = msg_class(raw)
        msg.decode()
    except Exception as exc:  # pyroute2 raises a range of types on bad input
        raise XfrmError(errno_mod.EBADMSG, operation, f"undecodable kernel message: {exc}") from exc
    return msg


def _decoder(msg_class: type[Any], operation: str) -> Callable[[bytes], Any]:
    return lambda raw: decode_netlink(msg_class, raw, operation)


def _sa_records(operation: str) -> Callable[[bytes], SaRecord]:
    """One SaRecord per answer, made from its message at once (the message, keys and all,
    goes right after)."""
    return lambda raw: sa_record(decode_netlink(xm.xfrm_usersa_info, raw, operation))


class SaId(NamedTuple):
    """An SA to delete (delete_all)."""

    dst: IPAddress
    spi: int
    proto: IpProtocol


class PolicyId(NamedTuple):
    """A policy to delete (delete_all)."""

    selector: SelectorSpec
    direction: Direction


class SaCounters(NamedTuple):
    spi: int
    bytes: int
    packets: int


# where xfrm_usersa_info (after the netlink header) keeps id.spi and curlft.bytes/packets
_SPI_AT: Final = NLMSG_HDR.size + xm.XfrmSelector.size + 16
_CURLFT_AT: Final = _SPI_AT - 16 + xm.XfrmId.size + 16 + xm.LifetimeCfg.size
_SPI: Final = struct.Struct(">I")
_COUNTS: Final = struct.Struct("=QQ")


def _answered_spi(raw: bytes) -> int:
    """The SPI of the larval SA the kernel answers ALLOCSPI with (its fixed part)."""
    if len(raw) < NLMSG_HDR.size + xm.UsersaInfo.size:
        raise XfrmError(errno_mod.EBADMSG, "alloc_spi", "short SA message")
    (spi,) = _SPI.unpack_from(raw, _SPI_AT)
    return int(spi)


def sa_counters(raw: bytes) -> SaCounters:
    """The SPI and traffic counters of one dumped SA, from its fixed part."""
    if len(raw) < NLMSG_HDR.size + xm.UsersaInfo.size:
        raise XfrmError(errno_mod.EBADMSG, "sa_counters", "short SA message")
    (spi,) = _SPI.unpack_from(raw, _SPI_AT)
    return SaCounters(spi, *_COUNTS.unpack_from(raw, _CURLFT_AT))


class _Channel:
    """One netlink socket and the requests on it, one at a time (a lock): a request packed
    by xfrm_pack is sent, and its answers read until the last one."""

    def __init__(self, timeout: float) -> None:
        self._sock = open_socket()
        self._port: int = self._sock.getsockname()[0]
        self._timeout = timeout
        self._lock = threading.Lock()
        self._seq = int(time.time()) & 0xFFFF

    def close(self) -> None:
        self._sock.close()

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        return self._seq

    def request(
        self,
        operation: str,
        data: bytearray,
        each: Callable[[bytes], _T] | None = None,
    ) -> list[_T]:
        """Send one request packed by xfrm_pack; return `each` of every reply (dump parts
        or one answer), made as it arrives: a dump of thousands of SAs never holds them all
        decoded at once."""
        with self._lock:
            seq = self._next_seq()
            xp.set_sequence(data, seq)
            try:
                self._sock.send(data)
            except OSError as exc:
                raise XfrmError(exc.errno or errno_mod.EIO, operation) from exc
            finally:
                data[:] = bytes(len(data))  # best effort: no key copy lingers here
            try:
                return self._collect(operation, seq, each)
            except XfrmError:
                raise
            except OSError as exc:
                raise XfrmError(exc.errno or errno_mod.EIO, operation) from exc

    def _receive(self, operation: str, deadline: float) -> bytes | None:
        """One datagram from the kernel, or None (another sender's, or nothing yet). The
        kernel answers a request while we send it, so the answer is usually there at once:
        poll(2) only when it is not."""
        try:
            data, (sender, _) = self._sock.recvfrom(RECV_BUFSIZE, socket.MSG_DONTWAIT)
        except BlockingIOError:
            data, sender = None, 0
        if data is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise XfrmError(errno_mod.ETIMEDOUT, operation, "no answer from the kernel")
            wait_readable(self._sock, remaining)
            return None
        return data if sender == 0 else None  # only the kernel answers requests

    def _collect(self, operation: str, seq: int, each: Callable[[bytes], _T] | None) -> list[_T]:
        replies: list[_T] = []
        deadline = time.monotonic() + self._timeout
        while True:
            if time.monotonic() >= deadline:
                raise XfrmError(errno_mod.ETIMEDOUT, operation, "no answer from the kernel")
            data = self._receive(operation, deadline)
            if data is None:
                continue
            for mtype, flags, mseq, pid, raw in split_messages(data):
                if mseq != seq or pid not in (0, self._port):
                    continue  # a stale answer to an earlier, timed-out request
                if mtype == NLMSG_ERROR:
                    code, detail = error_of(raw, flags)
                    if code:
                        raise XfrmError(code, operation, detail)
                    return replies
                if mtype == NLMSG_DONE:
                    return replies
                if mtype == NLMSG_OVERRUN:
                    raise XfrmError(errno_mod.EOVERFLOW, operation, "netlink overrun")
                if each is not None:
                    if len(replies) >= MAX_DUMP_RECORDS:
                        raise XfrmError(errno_mod.E2BIG, operation, "dump too large")
                    replies.append(each(raw))
                if not flags & NLM_F_MULTI:
                    return replies

    def request_batch(self, batch: list[tuple[str, bytearray]]) -> list[XfrmError | None]:
        """Several writes (each asking for an ack) in one datagram, their acks read
        together: one outcome per write, in order. The kernel carries out every message of
        the datagram, a refused one included, so `batch` holds independent writes only."""
        with self._lock:
            seqs: dict[int, int] = {}
            for i, (_, data) in enumerate(batch):
                seqs[self._next_seq()] = i
                xp.set_sequence(data, self._seq)
            outcomes: list[XfrmError | None] = [None] * len(batch)
            try:
                self._sock.send(b"".join(data for _, data in batch))
            except OSError as exc:
                return [XfrmError(exc.errno or errno_mod.EIO, what) for what, _ in batch]
            finally:
                for _, data in batch:
                    data[:] = bytes(len(data))
            try:
                self._acks(batch, seqs, outcomes)
            except OSError as exc:  # the transport failed: the unanswered writes with it
                for i in seqs.values():
                    outcomes[i] = XfrmError(exc.errno or errno_mod.EIO, batch[i][0])
            return outcomes

    def _acks(
        self,
        batch: list[tuple[str, bytearray]],
        waiting: dict[int, int],
        outcomes: list[XfrmError | None],
    ) -> None:
        """Read the acks of a batch until each write has one (`waiting`: seq -> index,
        emptied as they come)."""
        deadline = time.monotonic() + self._timeout
        while waiting:
            if time.monotonic() >= deadline:
                raise XfrmError(errno_mod.ETIMEDOUT, "netlink", "no answer from the kernel")
            data = self._receive("netlink", deadline)
            if data is None:
                continue
            for mtype, flags, mseq, pid, raw in split_messages(data):
                i = waiting.get(mseq)
                if i is None or pid not in (0, self._port) or mtype != NLMSG_ERROR:
                    continue  # a stale answer to an earlier, timed-out request
                del waiting[mseq]
                code, detail = error_of(raw, flags)
                if code:
                    outcomes[i] = XfrmError(code, batch[i][0], detail)


class XfrmKernel:
    """XFRM requests in the network namespace of the calling process.

    Thread-safe: requests are serialised on one socket; dumps (listings) have a socket of
    their own, so that a request from the trio thread (ParentState.kernel_now) never waits
    for a dump in a worker thread. Never flushes anything: the parent deletes exactly the
    SAs and policies it recorded.
    """

    def __init__(self, timeout: float = 5.0) -> None:
        self._channel = _Channel(timeout)
        try:
            self._dumps = _Channel(timeout)
        except BaseException:
            self._channel.close()
            raise

    def close(self) -> None:
        self._channel.close()
        self._dumps.close()

    def __enter__(self) -> XfrmKernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(
        self, operation: str, data: bytearray, each: Callable[[bytes], _T] | None = None
    ) -> list[_T]:
        return self._channel.request(operation, data, each)

    # -- SAs --------------------------------------------------------------

    def alloc_spi(
        self,
        src: IPAddress,
        dst: IPAddress,
        proto: IpProtocol,
        reqid: int,
        mode: XfrmMode = XfrmMode.TUNNEL,
        spi_min: int = MIN_SPI,
        spi_max: int = 0xFFFFFFFF,
        acquire_seq: int = 0,
    ) -> int:
        """Reserve an inbound SPI (dst is the local address); creates a larval SA.

        `acquire_seq` ties the SPI to the kernel's ACQUIRE placeholder for initiators.
        Fill the larval SA with update_sa(); it expires after the kernel's acquire
        timeout (net.core.xfrm_acq_expires, 30 s by default) if never filled.
        """
        if src.version != dst.version:
            raise ValueError("alloc_spi: src and dst families differ")
        if proto not in IPSEC_PROTOCOLS:
            raise ValueError("alloc_spi: protocol must be ESP or AH")
        if not MIN_SPI <= spi_min <= spi_max <= 0xFFFFFFFF:
            raise ValueError("alloc_spi: bad SPI range")
        data = _packed("alloc_spi", xp.spi_message, src, dst, proto, reqid, mode, spi_min,
                       spi_max, acquire_seq)  # fmt: skip
        replies = self._request("alloc_spi", data, _answered_spi)
        if len(replies) != 1:
            raise XfrmError(errno_mod.EBADMSG, "alloc_spi", "no SA in the kernel's answer")
        spi = replies[0]
        if not spi_min <= spi <= spi_max:
            raise XfrmError(errno_mod.EBADMSG, "alloc_spi", "kernel SPI outside the range")
        return spi

    def add_sa(self, spec: SaSpec) -> None:
        """Install a new SA (its SPI must not exist yet: outbound SAs)."""
        self._request("add_sa", _packed("add_sa", xp.sa_message, spec, MsgType.NEWSA))

    def update_sa(self, spec: SaSpec) -> None:
        """Fill a larval SA from alloc_spi(), or replace an existing SA."""
        self._request("update_sa", _packed("update_sa", xp.sa_message, spec, MsgType.UPDSA))

    def delete_sa(self, dst: IPAddress, spi: int, proto: IpProtocol) -> None:
        self._request("delete_sa", xp.sa_id_message(dst, spi, proto, MsgType.DELSA))

    def get_sa(self, dst: IPAddress, spi: int, proto: IpProtocol) -> SaRecord | None:
        data = xp.sa_id_message(dst, spi, proto, MsgType.GETSA, NLM_F_REQUEST)
        try:
            replies = self._request("get_sa", data, _sa_records("get_sa"))
        except XfrmError as exc:
            if exc.errno == errno_mod.ESRCH:
                return None
            raise
        return replies[0] if replies else None

    def list_sas(self) -> list[SaRecord]:
        return self._dumps.request("list_sas", _sa_dump(), _sa_records("list_sas"))

    def sa_counters(self) -> list[SaCounters]:
        """Every SA's SPI and traffic counters, read straight from each dumped message (what
        `ike cmd=list verbose` shows): no attribute is decoded, no key kept."""
        return self._dumps.request("sa_counters", _sa_dump(), sa_counters)

    # -- policies ---------------------------------------------------------

    def add_policy(self, spec: PolicySpec) -> None:
        self._request("add_policy", _packed("add_policy", xp.policy_message, spec,
                                            MsgType.NEWPOLICY))  # fmt: skip

    def update_policy(self, spec: PolicySpec) -> None:
        """Add or replace the policy with this selector and direction."""
        self._request("update_policy", _packed("update_policy", xp.policy_message, spec,
                                               MsgType.UPDPOLICY))  # fmt: skip

    def delete_policy(self, selector: SelectorSpec, direction: Direction) -> None:
        data = xp.policy_id_message(selector, direction, MsgType.DELPOLICY)
        self._request("delete_policy", data)

    def list_policies(self) -> list[PolicyRecord]:
        def each(raw: bytes) -> PolicyRecord | None:
            return _policy_record(decode_netlink(xm.xfrm_userpolicy_info, raw, "list_policies"))

        records = self._dumps.request("list_policies", _policy_dump(), each)
        return [r for r in records if r is not None]

    # -- several deletes at once ------------------------------------------

    def delete_all(self, objects: Sequence[SaId | PolicyId]) -> list[XfrmError | None]:
        """Delete SAs and policies, in this order, several to a datagram: one outcome per
        object (None: deleted), as delete_sa / delete_policy would raise it. Every delete
        is tried whatever the others' outcomes."""
        outcomes: list[XfrmError | None] = []
        for start in range(0, len(objects), DELETE_BATCH):
            batch: list[tuple[str, bytearray]] = []
            for obj in objects[start : start + DELETE_BATCH]:
                if isinstance(obj, SaId):
                    data = xp.sa_id_message(obj.dst, obj.spi, obj.proto, MsgType.DELSA)
                    batch.append(("delete_sa", data))
                else:
                    data = xp.policy_id_message(obj.selector, obj.direction, MsgType.DELPOLICY)
                    batch.append(("delete_policy", data))
            outcomes += self._channel.request_batch(batch)
        return outcomes
