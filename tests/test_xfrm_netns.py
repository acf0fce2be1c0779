"""XfrmKernel and XfrmEvents against the host kernel, each test in its own network namespace.

The host kernel has XFRM but (here) no ESP: policies, SPI allocation, larval SAs and the
ACQUIRE/EXPIRE multicasts all work, SA installation is refused.  The kernel objects are opened
with the calling thread moved into the test namespace; the netlink sockets stay bound to it.
"""

from __future__ import annotations

import errno
import ipaddress
import secrets
import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest
from harness.netns import in_netns, sysctl_set

from ikepriv.isakmp.constants import IpProtocol
from ikepriv.parent_kernel.kernel.client import DELETE_BATCH, PolicyId, SaId, XfrmKernel
from ikepriv.parent_kernel.kernel.events import XfrmEvents
from ikepriv.parent_kernel.kernel.specs import (
    Acquire,
    Encryption,
    Expire,
    Integrity,
    PolicySpec,
    SaSpec,
    SelectorSpec,
    Template,
    XfrmError,
)
from ikepriv.parent_kernel.kernel.xfrm_messages import Direction, PolicyAction, XfrmMode

pytestmark = pytest.mark.root

GW_A = ipaddress.ip_address("192.0.2.1")
GW_B = ipaddress.ip_address("192.0.2.2")
LAN_A = ipaddress.ip_network("198.51.100.0/24")
LAN_B = ipaddress.ip_network("203.0.113.0/24")
GW6_A = ipaddress.ip_address("2001:db8::1")
GW6_B = ipaddress.ip_address("2001:db8::2")
EVENT_WAIT_S = 10.0  # upper bound for a kernel event to arrive, not a speed claim


def ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True)  # noqa: S603, S607


@pytest.fixture
def ns() -> Iterator[str]:
    name = f"ikeprivtest-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)  # noqa: S603, S607
    try:
        ip(name, "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)  # noqa: S603, S607


@pytest.fixture
def kernel(ns: str) -> Iterator[XfrmKernel]:
    with in_netns(ns):
        k = XfrmKernel()
    try:
        yield k
    finally:
        k.close()


def tunnel_policies(reqid: int = 5) -> list[PolicySpec]:
    """gwA's view: out LAN_A -> LAN_B through gwA -> gwB, in and fwd the other way."""
    out_sel = SelectorSpec(LAN_A, LAN_B)
    in_sel = SelectorSpec(LAN_B, LAN_A)
    return [
        PolicySpec(
            out_sel,
            Direction.OUT,
            priority=100,
            templates=(Template(src=GW_A, dst=GW_B, reqid=reqid),),
        ),
        PolicySpec(
            in_sel,
            Direction.IN,
            priority=100,
            templates=(Template(src=GW_B, dst=GW_A, reqid=reqid),),
        ),
        PolicySpec(
            in_sel,
            Direction.FWD,
            priority=100,
            templates=(Template(src=GW_B, dst=GW_A, reqid=reqid),),
        ),
    ]


def summary(k: XfrmKernel) -> set[tuple[object, ...]]:
    return {(p.selector, p.direction, p.action, p.priority, p.templates) for p in k.list_policies()}


def test_policies_add_list_delete(kernel: XfrmKernel) -> None:
    v6 = PolicySpec(
        SelectorSpec(
            ipaddress.ip_network("2001:db8:1::/48"),
            ipaddress.ip_network("2001:db8:2::/48"),
            proto=IpProtocol.TCP,
            dport=443,
        ),
        Direction.OUT,
        priority=7,
        templates=(Template(src=GW6_A, dst=GW6_B, reqid=6),),
    )
    transport = PolicySpec(
        SelectorSpec(
            ipaddress.ip_network("192.0.2.1/32"),
            ipaddress.ip_network("192.0.2.2/32"),
            proto=IpProtocol.UDP,
            sport=500,
            dport=500,
        ),
        Direction.OUT,
        action=PolicyAction.BLOCK,
    )
    specs = [*tunnel_policies(), v6, transport]
    for spec in specs:
        kernel.add_policy(spec)
    assert summary(kernel) == {
        (s.selector, s.direction, s.action, s.priority, s.templates) for s in specs
    }
    assert all(p.index > 0 for p in kernel.list_policies())

    with pytest.raises(XfrmError) as dup:
        kernel.add_policy(specs[0])
    assert dup.value.errno == errno.EEXIST and dup.value.operation == "add_policy"

    # update replaces in place (same selector and direction)
    raised = PolicySpec(specs[0].selector, Direction.OUT, priority=50, templates=specs[0].templates)
    kernel.update_policy(raised)
    assert {
        p.priority
        for p in kernel.list_policies()
        if p.selector == raised.selector and p.direction == Direction.OUT
    } == {50}

    for spec in specs:
        kernel.delete_policy(spec.selector, spec.direction)
    assert kernel.list_policies() == []
    with pytest.raises(XfrmError) as gone:
        kernel.delete_policy(specs[0].selector, Direction.OUT)
    assert gone.value.errno == errno.ENOENT
    assert "delete_policy" in str(gone.value)


def test_transport_template_has_no_endpoints(kernel: XfrmKernel) -> None:
    sel = SelectorSpec(ipaddress.ip_network("192.0.2.1/32"), ipaddress.ip_network("192.0.2.2/32"))
    spec = PolicySpec(
        sel,
        Direction.OUT,
        templates=(Template(proto=IpProtocol.ESP, mode=XfrmMode.TRANSPORT, reqid=3),),
    )
    kernel.add_policy(spec)
    [record] = kernel.list_policies()
    assert record.templates == spec.templates


def test_alloc_spi_creates_larval_sa(kernel: XfrmKernel) -> None:
    spi = kernel.alloc_spi(GW_B, GW_A, IpProtocol.ESP, reqid=11)
    assert 0x100 <= spi <= 0xFFFFFFFF
    exact = kernel.alloc_spi(GW_B, GW_A, IpProtocol.ESP, reqid=12, spi_min=0x4242, spi_max=0x4242)
    assert exact == 0x4242
    v6 = kernel.alloc_spi(GW6_B, GW6_A, IpProtocol.AH, reqid=13)

    records = {(r.dst, r.spi): r for r in kernel.list_sas()}
    assert set(records) == {(GW_A, spi), (GW_A, 0x4242), (GW6_A, v6)}
    larval = records[(GW_A, spi)]
    assert larval.larval and larval.src == GW_B and larval.reqid == 11
    assert larval.proto == IpProtocol.ESP and larval.mode == XfrmMode.TUNNEL
    assert records[(GW6_A, v6)].proto == IpProtocol.AH

    got = kernel.get_sa(GW_A, 0x4242, IpProtocol.ESP)
    assert got is not None and got.reqid == 12

    kernel.delete_sa(GW_A, 0x4242, IpProtocol.ESP)
    assert kernel.get_sa(GW_A, 0x4242, IpProtocol.ESP) is None
    with pytest.raises(XfrmError) as gone:
        kernel.delete_sa(GW_A, 0x4242, IpProtocol.ESP)
    assert gone.value.errno == errno.ESRCH

    # the range is exhausted while 0x4242 is taken
    kernel.alloc_spi(GW_B, GW_A, IpProtocol.ESP, reqid=12, spi_min=0x4242, spi_max=0x4242)
    with pytest.raises(XfrmError) as busy:
        kernel.alloc_spi(GW_B, GW_A, IpProtocol.ESP, reqid=14, spi_min=0x4242, spi_max=0x4242)
    assert busy.value.operation == "alloc_spi"


def test_several_deletes_in_one_go_each_get_their_outcome(kernel: XfrmKernel) -> None:
    """delete_all sends deletes several to a datagram: each object deleted or refused on its
    own, a refused one (already gone) stops none of the others, in batches beyond
    DELETE_BATCH too."""
    spis = [kernel.alloc_spi(GW_B, GW_A, IpProtocol.ESP, reqid=20 + i) for i in range(3)]
    many = [PolicySpec(SelectorSpec(ipaddress.ip_network(f"10.{i // 256}.{i % 256}.0/24"), LAN_B),
                       Direction.OUT, priority=100) for i in range(DELETE_BATCH + 10)]  # fmt: skip
    for spec in [*tunnel_policies(), *many]:
        kernel.add_policy(spec)
    gone_sa, gone_pol = SaId(GW_A, 0x4321, IpProtocol.ESP), PolicyId(SelectorSpec(LAN_A, LAN_A),
                                                                     Direction.IN)  # fmt: skip
    objects: list[SaId | PolicyId] = [
        SaId(GW_A, spis[0], IpProtocol.ESP), gone_pol, SaId(GW_A, spis[1], IpProtocol.ESP),
        *(PolicyId(p.selector, p.direction) for p in tunnel_policies()), gone_sa,
        *(PolicyId(p.selector, p.direction) for p in many),
    ]  # fmt: skip
    outcomes = kernel.delete_all(objects)
    assert len(outcomes) == len(objects)
    failed = {i: o.errno for i, o in enumerate(outcomes) if o is not None}
    assert failed == {1: errno.ENOENT, 6: errno.ESRCH}
    assert outcomes[1] is not None and outcomes[1].operation == "delete_policy"
    assert outcomes[6] is not None and outcomes[6].operation == "delete_sa"
    assert kernel.list_policies() == []
    assert [r.spi for r in kernel.list_sas()] == [spis[2]]  # the one not asked for stays
    # the socket is in step afterwards: single requests get their own answers
    kernel.delete_sa(GW_A, spis[2], IpProtocol.ESP)
    assert kernel.list_sas() == [] and kernel.delete_all([]) == []


def esp_spec(spi: int) -> SaSpec:
    return SaSpec(
        src=GW_B,
        dst=GW_A,
        proto=IpProtocol.ESP,
        spi=spi,
        mode=XfrmMode.TUNNEL,
        reqid=11,
        encryption=Encryption("cbc(aes)", bytes(range(16))),
        integrity=Integrity("hmac(sha256)", bytes(range(32)), 128),
    )


def test_sa_install_without_esp_fails_clearly(kernel: XfrmKernel) -> None:
    spi = kernel.alloc_spi(GW_B, GW_A, IpProtocol.ESP, reqid=11)
    try:
        kernel.update_sa(esp_spec(spi))
    except XfrmError as exc:
        assert exc.errno == errno.EPROTONOSUPPORT
        assert exc.operation == "update_sa"
        assert str(exc).startswith("update_sa: Protocol not supported (EPROTONOSUPPORT)")
        assert "no support for this IPsec protocol" in str(exc)
        with pytest.raises(XfrmError) as add:
            kernel.add_sa(esp_spec(0x5000))
        assert add.value.errno == errno.EPROTONOSUPPORT and add.value.operation == "add_sa"
        # the refused fill leaves the larval SA as it was
        larval = kernel.get_sa(GW_A, spi, IpProtocol.ESP)
        assert larval is not None and larval.larval
    else:  # a host kernel with ESP: then the SA must be there, keys not reported back
        record = kernel.get_sa(GW_A, spi, IpProtocol.ESP)
        assert record is not None
        assert (record.encryption, record.integrity) == ("cbc(aes)", "hmac(sha256)")


def test_calls_from_other_threads_stay_in_the_namespace(kernel: XfrmKernel) -> None:
    """trio.to_thread runs calls on pool threads that are in the daemon's namespace, not
    necessarily the one the socket was opened in: the socket decides."""
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            kernel.add_policy(tunnel_policies()[0])
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert errors == []
    assert [p.direction for p in kernel.list_policies()] == [Direction.OUT]
    # and the host namespace saw nothing of it
    with XfrmKernel() as host:
        assert tunnel_policies()[0].selector not in {p.selector for p in host.list_policies()}


def test_acquire_event_on_traffic_without_sa(ns: str, kernel: XfrmKernel) -> None:
    # both veth ends stay in the namespace: nothing can leave it
    ip(ns, "link", "add", "d0", "type", "veth", "peer", "name", "d1")
    ip(ns, "addr", "add", "192.0.2.1/24", "dev", "d0")
    ip(ns, "link", "set", "d0", "up")
    ip(ns, "link", "set", "d1", "up")
    ip(ns, "route", "add", "203.0.113.0/24", "via", "192.0.2.2", "dev", "d0")
    target = ipaddress.ip_address("203.0.113.5")
    sel = SelectorSpec(
        ipaddress.ip_network("192.0.2.1/32"),
        ipaddress.ip_network("203.0.113.5/32"),
        proto=IpProtocol.UDP,
        dport=9,
    )
    kernel.add_policy(
        PolicySpec(sel, Direction.OUT, templates=(Template(src=GW_A, dst=GW_B, reqid=77),))
    )
    [policy] = kernel.list_policies()

    with in_netns(ns):
        events = XfrmEvents()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        udp.bind(("192.0.2.1", 0))
        sport = udp.getsockname()[1]
        try:
            udp.sendto(b"trigger", (str(target), 9))
        except OSError as exc:  # the packet waits for the SA: EAGAIN with larval drop
            assert exc.errno in (errno.EAGAIN, errno.EHOSTUNREACH)
        got = events.recv_events(timeout=EVENT_WAIT_S)
    finally:
        udp.close()
        events.close()

    acquires = [e for e in got if isinstance(e, Acquire)]
    assert len(acquires) == 1, got
    acq = acquires[0]
    assert (acq.src, acq.dst, acq.proto) == (GW_A, GW_B, IpProtocol.ESP)
    assert acq.selector.src == ipaddress.ip_network("192.0.2.1/32")
    assert acq.selector.dst == ipaddress.ip_network("203.0.113.5/32")
    assert (acq.selector.proto, acq.selector.sport, acq.selector.dport) == (17, sport, 9)
    assert acq.policy_index == policy.index and acq.policy_direction == Direction.OUT
    assert [(t.reqid, t.src, t.dst, t.mode) for t in acq.templates] == [
        (77, GW_A, GW_B, XfrmMode.TUNNEL)
    ]
    assert acq.seq != 0

    # the kernel holds a placeholder SA for the acquire; alloc_spi with its seq gives it an SPI
    # instead of creating a second larval SA
    placeholders = [r for r in kernel.list_sas() if r.dst == GW_B]
    assert len(placeholders) == 1 and placeholders[0].spi == 0
    spi = kernel.alloc_spi(GW_A, GW_B, IpProtocol.ESP, reqid=77, acquire_seq=acq.seq)
    assert [(r.spi, r.reqid) for r in kernel.list_sas() if r.dst == GW_B] == [(spi, 77)]


def test_hard_expire_event_for_unfilled_spi(ns: str, kernel: XfrmKernel) -> None:
    """An SPI that is never filled expires after net.core.xfrm_acq_expires seconds."""
    sysctl_set(ns, "net.core.xfrm_acq_expires", "1")
    with in_netns(ns):
        events = XfrmEvents()
    try:
        spi = kernel.alloc_spi(GW_B, GW_A, IpProtocol.ESP, reqid=21)
        got = events.recv_events(timeout=EVENT_WAIT_S)
    finally:
        events.close()
    expires = [e for e in got if isinstance(e, Expire)]
    assert expires == [
        Expire(
            src=GW_B,
            dst=GW_A,
            proto=IpProtocol.ESP,
            spi=spi,
            reqid=21,
            hard=True,
            bytes=0,
            packets=0,
        )
    ]
    assert kernel.get_sa(GW_A, spi, IpProtocol.ESP) is None


def test_events_socket_waits_quietly(ns: str) -> None:
    with in_netns(ns):
        events = XfrmEvents()
    try:
        assert events.recv_events(timeout=0) == []
    finally:
        events.close()
