"""ACQUIRE / EXPIRE / POLEXPIRE multicast events from the kernel, as plain records.

The parent forwards them to the child (ACQUIRE starts a negotiation, a soft EXPIRE a rekey,
a hard one reports an SA gone). A lost event (ENOBUFS) is reported as EventsLost so the
parent can resynchronise from its own records.
"""

from __future__ import annotations

import errno as errno_mod
import struct
from collections.abc import Iterable
from typing import Any, Final

from ikepriv.parent_kernel.kernel import xfrm_messages as xm
from ikepriv.parent_kernel.kernel.client import (
    KERNEL_DIRECTIONS,
    RECV_BUFSIZE,
    addr_from,
    attr_map,
    decode_netlink,
    open_socket,
    selector_from,
    split_messages,
    tmpl_from,
    wait_readable,
)
from ikepriv.parent_kernel.kernel.specs import (
    AF_FOR_VERSION,
    Acquire,
    Event,
    EventsLost,
    Expire,
    PolicyExpire,
    XfrmError,
)
from ikepriv.parent_kernel.kernel.xfrm_messages import (
    Direction,
    MsgType,
    NlGroup,
)

# --------------------------------------------------------------------------
# Events


def acquire_event(msg: Any) -> Acquire | None:
    selector = selector_from(msg["sel"])
    policy_dir = msg["policy"]["dir"]
    family = msg["sel"]["family"]
    templates = tuple(tmpl_from(t) for t in attr_map(msg).get("XFRMA_TMPL", ()))
    # the SA's family is the template's (tunnel endpoints may differ from the selector's)
    for tmpl in templates:
        if tmpl.dst is not None:
            family = AF_FOR_VERSION[tmpl.dst.version]
            break
    if selector is None or policy_dir not in KERNEL_DIRECTIONS:
        return None
    return Acquire(
        selector=selector,
        src=addr_from(msg["saddr"], family),
        dst=addr_from(msg["id"]["daddr"], family),
        proto=msg["id"]["proto"],
        seq=msg["seq"],
        policy_index=msg["policy"]["index"],
        policy_direction=Direction(policy_dir),
        templates=templates,
    )


def expire_event(msg: Any) -> Expire:
    state = msg["state"]
    family = state["family"]
    return Expire(
        src=addr_from(state["saddr"], family),
        dst=addr_from(state["id"]["daddr"], family),
        proto=state["id"]["proto"],
        spi=state["id"]["spi"],
        reqid=state["reqid"],
        hard=bool(msg["hard"]),
        bytes=state["curlft"]["bytes"],
        packets=state["curlft"]["packets"],
    )


def polexpire_event(msg: Any) -> PolicyExpire | None:
    pol = msg["pol"]
    selector = selector_from(pol["sel"])
    if selector is None or pol["dir"] not in KERNEL_DIRECTIONS:
        return None
    return PolicyExpire(
        selector=selector,
        direction=Direction(pol["dir"]),
        index=pol["index"],
        hard=bool(msg["hard"]),
    )


_EVENT_DECODERS: Final[dict[int, tuple[type[Any], Any]]] = {
    MsgType.ACQUIRE: (xm.xfrm_user_acquire, acquire_event),
    MsgType.EXPIRE: (xm.xfrm_user_expire, expire_event),
    MsgType.POLEXPIRE: (xm.xfrm_user_polexpire, polexpire_event),
}


class XfrmEvents:
    """Subscription to the kernel's ACQUIRE and EXPIRE multicasts in this namespace.

    Use fileno() with trio.lowlevel.wait_readable (or select), then recv_events(0).
    """

    def __init__(self, groups: Iterable[NlGroup] = (NlGroup.ACQUIRE, NlGroup.EXPIRE)) -> None:
        self._sock = open_socket(groups)
        self._sock.setblocking(False)

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> XfrmEvents:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def recv_events(self, timeout: float | None = None) -> list[Event]:
        """Events that arrived; waits up to `timeout` seconds (None: forever) for the first."""
        events: list[Event] = []
        readable = wait_readable(self._sock, timeout)
        while readable:
            try:
                data, (sender, _) = self._sock.recvfrom(RECV_BUFSIZE)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno_mod.ENOBUFS:
                    events.append(EventsLost())
                    continue
                raise XfrmError(exc.errno or errno_mod.EIO, "recv_events") from exc
            if sender != 0:
                continue  # multicast from anyone but the kernel is not an event
            for mtype, _flags, _seq, _pid, raw in split_messages(data):
                decoder = _EVENT_DECODERS.get(mtype)
                if decoder is None:
                    continue
                msg_class, convert = decoder
                msg = decode_netlink(msg_class, raw, "recv_events")
                try:
                    event = convert(msg)
                except (KeyError, ValueError, struct.error) as exc:
                    raise XfrmError(errno_mod.EBADMSG, "recv_events", str(exc)) from exc
                if event is not None:
                    events.append(event)
        return events
