"""A minimal client for strongSwan's vici protocol and a closed-loop initiation driver.

Standard library only (the `vici` package from PyPI is not needed). Wire format: u32 length,
u8 type (0 CMD_REQUEST, 1 CMD_RESPONSE, 2 CMD_UNKNOWN, 7 EVENT); named types carry u8 name
length + name; message elements: 1 SECTION_START, 2 SECTION_END, 3 KEY_VALUE (u8 klen, key,
u16 vlen, value), 4 LIST_START, 5 LIST_ITEM, 6 LIST_END.

`drive()` runs WINDOW threads, each with its own vici connection, each sending blocking
`initiate` requests for the next configured connection name until the deadline passes or the
names run out: every name is a distinct peer config, so charon starts a new IKE SA for each.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

CMD_REQUEST, CMD_RESPONSE, CMD_UNKNOWN, EVENT = 0, 1, 2, 7
SECTION_START, SECTION_END, KEY_VALUE, LIST_START, LIST_ITEM, LIST_END = 1, 2, 3, 4, 5, 6


def _encode(values: dict[str, str | int]) -> bytes:
    out = bytearray()
    for key, value in values.items():
        kb, vb = key.encode(), str(value).encode()
        out += bytes([KEY_VALUE, len(kb)]) + kb + struct.pack(">H", len(vb)) + vb
    return bytes(out)


def _decode_top(body: bytes) -> dict[str, str]:
    """The top-level key/values of a message (sections and lists are skipped)."""
    values: dict[str, str] = {}
    i, depth = 0, 0
    while i < len(body):
        kind = body[i]
        i += 1
        if kind in (SECTION_START, LIST_START):
            i += 1 + body[i]
            depth += 1
        elif kind in (SECTION_END, LIST_END):
            depth -= 1
        elif kind == KEY_VALUE:
            klen = body[i]
            key = body[i + 1 : i + 1 + klen].decode()
            i += 1 + klen
            (vlen,) = struct.unpack(">H", body[i : i + 2])
            if depth == 0:
                values[key] = body[i + 2 : i + 2 + vlen].decode(errors="replace")
            i += 2 + vlen
        elif kind == LIST_ITEM:
            (vlen,) = struct.unpack(">H", body[i : i + 2])
            i += 2 + vlen
        else:
            raise ValueError(f"vici: unknown element type {kind}")
    return values


class Session:
    """One vici connection (blocking)."""

    def __init__(self, path: str, timeout: float = 60.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        for attempt in range(100):  # charon's listen backlog is short: retry a full one
            try:
                self.sock.connect(path)
                break
            except BlockingIOError:
                if attempt == 99:
                    raise
                time.sleep(0.02)
        self.sock.settimeout(timeout)

    def close(self) -> None:
        self.sock.close()

    def _recv(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("vici: connection closed")
            buf += chunk
        return bytes(buf)

    def request(self, command: str, values: dict[str, str | int] | None = None) -> dict[str, str]:
        name = command.encode()
        packet = bytes([CMD_REQUEST, len(name)]) + name + _encode(values or {})
        self.sock.sendall(struct.pack(">I", len(packet)) + packet)
        while True:
            (length,) = struct.unpack(">I", self._recv(4))
            packet = self._recv(length)
            if packet[0] == CMD_RESPONSE:
                return _decode_top(packet[1:])
            if packet[0] == CMD_UNKNOWN:
                raise RuntimeError(f"vici: unknown command {command}")
            # EVENT (log messages of the initiation, when asked for): skipped


@dataclass
class DriveResult:
    started: int = 0
    ok: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)  # seconds, successful initiations
    elapsed: float = 0.0
    counters: dict[str, int] = field(default_factory=dict)  # the initiator's own, if known

    def percentile(self, q: float) -> float | None:
        """Latency in ms at quantile q (nearest rank), None without successes."""
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def drive(
    path: str,
    names: Sequence[str],
    window: int,
    duration: float,
    child: str | None = None,
    timeout_ms: int = 15000,
    result: DriveResult | None = None,
) -> DriveResult:
    """Initiate `names` in order, `window` at a time, until `duration` s have passed (then the
    initiations under way finish) or the names run out. Pass `result` to watch the counts
    while it runs (another thread may read them)."""
    lock = threading.Lock()
    result = result if result is not None else DriveResult()
    queue = iter(names)
    t0 = time.monotonic()
    deadline = t0 + duration

    def worker() -> None:
        session = Session(path, timeout=timeout_ms / 1000 + 30)
        try:
            while time.monotonic() < deadline:
                with lock:
                    name = next(queue, None)
                    if name is None:
                        return
                    result.started += 1
                req: dict[str, str | int] = {"ike": name, "timeout": timeout_ms, "loglevel": -1}
                if child:
                    req["child"] = child
                a = time.monotonic()
                reply = session.request("initiate", req)
                b = time.monotonic()
                with lock:
                    if reply.get("success") == "yes":
                        result.ok += 1
                        result.latencies.append(b - a)
                    else:
                        result.failed += 1
                        err = reply.get("errmsg", "?")
                        result.errors[err] = result.errors.get(err, 0) + 1
        finally:
            session.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(window)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + timeout_ms / 1000 + 30)
    result.elapsed = time.monotonic() - t0
    return result
