"""MODP Diffie-Hellman speed: ikepriv's C extension against OpenSSL and Python's pow().

Run:  .venv/bin/python bench/dh.py [--seconds S] [--groups 2,14,15,16]

Each cell runs for about S CPU seconds in total (default 0.6, split into
--rounds interleaved rounds; the best round counts; the default run takes about
half a minute) and prints operations per CPU second of the calling thread,
with the ratio to OpenSSL doing the same modular exponentiation.  Use e.g.
--seconds 5 --rounds 10 for a long run.

What is measured, all through the public Python APIs (so each figure includes its
own binding overhead):

- `_dh` keygen: ikepriv.crypto.dh.generate(group, os.urandom): draws the
  exponent, runs the fixed-base comb in C, returns the public value.  Shown for
  each C path this CPU can run, forced with dh.set_modp_impl(): "gmp" and
  "openssl" share the portable comb (same code, two rows), "ifma" has its own.
- `_dh` shared: key.shared(peer) with a valid peer value (validation included):
  "gmp" is GMP's mpn_sec_powm, "openssl" the system libcrypto's
  BN_mod_exp_mont_consttime, "ifma" the AVX-512 IFMA fixed window.  Groups under
  1536 bits have no IFMA set-up; their "ifma" row is left out.
- OpenSSL (the copy linked into `cryptography`), two ways for keygen, because
  `cryptography` does not let us set the private exponent length of
  generate_private_key():
    * "OpenSSL keygen, default": params.generate_private_key() plus reading the
      public value.  OpenSSL picks the exponent length itself (printed, e.g. 223
      bits for MODP-2048, which it recognises as a named group).
    * "OpenSSL g^x, same x length": loading DHPrivateNumbers(x, ...) does *not*
      compute g^x (it takes the public value we hand it), so to time the modexp
      honestly we call exchange() with the generator 2 as the peer value: that
      is exactly g^x mod p with our exponent length.
  and for the shared secret: exchange() with the same peer value as ours.
- Python: pow(2, x, p) and pow(y, x, p) with the same x.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
import warnings
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import dh as ossl_dh

from ikepriv.crypto import dh
from ikepriv.crypto.groups import GROUPS, ModpGroup
from ikepriv.isakmp.constants import GroupId

warnings.filterwarnings("ignore", message=".*Diffie-Hellman.*")  # cryptography's FFDH notice

Row = tuple[str, str, float]


def rate_once(fn: Callable[[], object], seconds: float) -> float:
    """Operations per CPU second: repeat fn for about `seconds` (at least 3 calls).

    CPU time of this thread, not wall time: on a shared machine the wall clock
    also counts the time other processes held the core, which hits whichever
    cell happens to run then.  Every implementation runs in this thread, so
    the comparison stays fair (cache sharing with neighbours still shows).
    """
    count = 0
    start = time.thread_time()
    elapsed = 0.0
    while count < 3 or elapsed < seconds:
        fn()
        count += 1
        elapsed = time.thread_time() - start
    return count / elapsed


Cell = tuple[str, str, Callable[[], object], Callable[[], None]]
"""(operation, implementation, the call to time, set-up run before each round)"""


def nothing() -> None:
    return None


def measure(cells: list[Cell], seconds: float, rounds: int) -> list[Row]:
    """Best-of-rounds rate per cell, with the rounds interleaved across cells.

    Interleaving means a burst of load from elsewhere on the machine hits every
    implementation alike instead of one column; the best round is the figure
    least disturbed by it.
    """
    for _, _, fn, setup in cells:
        setup()
        fn()  # warm-up (group tables, caches)
    best = [0.0] * len(cells)
    for _ in range(rounds):
        for i, (_, _, fn, setup) in enumerate(cells):
            setup()
            best[i] = max(best[i], rate_once(fn, seconds / rounds))
    dh.set_modp_impl("auto")
    return [(op, name, r) for (op, name, _, _), r in zip(cells, best, strict=True)]


def bench_group(grp: ModpGroup, seconds: float, rounds: int) -> list[Row]:
    """Rows of (operation, implementation, ops/s)."""
    cells: list[Cell] = []
    p, n = grp.prime, grp.length
    x = secrets.randbits(grp.exponent_bits) | 2
    peer_int = pow(2, secrets.randbits(grp.exponent_bits), p)
    peer = peer_int.to_bytes(n, "big")

    def forcing(impl: str) -> Callable[[], None]:
        return lambda: dh.set_modp_impl(impl)

    for impl in dh.modp_impls():
        dh.set_modp_impl(impl)
        if dh.modp_impl(grp.group_id) != impl:
            continue  # "ifma" below 1536 bits: the same as "openssl"
        name = f"_dh ({impl})"
        key = dh.generate(grp.group_id, os.urandom)
        keygen = lambda: dh.generate(grp.group_id, os.urandom)  # noqa: E731
        cells.append(("keygen", name, keygen, forcing(impl)))
        cells.append(("shared", name, lambda k=key: k.shared(peer), forcing(impl)))
    dh.set_modp_impl("auto")

    pn = ossl_dh.DHParameterNumbers(p, grp.generator)
    params = pn.parameters()
    priv = ossl_dh.DHPrivateNumbers(x, ossl_dh.DHPublicNumbers(pow(2, x, p), pn)).private_key()
    g_pub = ossl_dh.DHPublicNumbers(grp.generator, pn).public_key()
    peer_pub = ossl_dh.DHPublicNumbers(peer_int, pn).public_key()
    assert priv.exchange(g_pub) == pow(2, x, p).to_bytes(n, "big")
    default_bits = params.generate_private_key().private_numbers().x.bit_length()

    def ossl_default_keygen() -> bytes:
        k = params.generate_private_key()
        return k.public_key().public_numbers().y.to_bytes(n, "big")

    cells.append(("keygen", "OpenSSL g^x, same x length", lambda: priv.exchange(g_pub), nothing))
    label = f"OpenSSL keygen, default (~{default_bits}-bit x)"
    cells.append(("keygen", label, ossl_default_keygen, nothing))
    cells.append(("shared", "OpenSSL exchange", lambda: priv.exchange(peer_pub), nothing))
    cells.append(("keygen", "Python pow", lambda: pow(2, x, p), nothing))
    cells.append(("shared", "Python pow", lambda: pow(peer_int, x, p), nothing))
    return measure(cells, seconds, rounds)


def ratios(rows: list[Row]) -> dict[tuple[str, str], float]:
    """(operation, implementation) -> speed relative to OpenSSL doing the same modexp."""
    ref = {
        "keygen": next(r for o, i, r in rows if o == "keygen" and i.startswith("OpenSSL g^x")),
        "shared": next(r for o, i, r in rows if o == "shared" and i.startswith("OpenSSL")),
    }
    return {(o, i): r / ref[o] for o, i, r in rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--seconds", type=float, default=0.6, help="time per cell (all rounds)")
    ap.add_argument("--rounds", type=int, default=4, help="interleaved rounds per cell")
    ap.add_argument("--groups", default="2,14,15,16", help="comma-separated group numbers")
    args = ap.parse_args(argv)

    impls = dh.modp_impls()
    print(f"C paths on this CPU: {', '.join(impls)} (auto picks {dh.modp_impl(GroupId(14))})")
    summary: list[tuple[str, dict[tuple[str, str], float]]] = []
    for gid in (GroupId(int(g)) for g in args.groups.split(",")):
        grp = GROUPS[gid]
        if not isinstance(grp, ModpGroup):
            print(f"group {int(gid)} is not MODP, skipped", file=sys.stderr)
            continue
        rows = bench_group(grp, args.seconds, args.rounds)
        rel = ratios(rows)
        title = f"MODP-{grp.prime.bit_length()} (group {int(gid)})"
        summary.append((title, rel))
        print(f"\n{title}, {grp.exponent_bits}-bit exponent")
        print(f"  {'op':7} {'implementation':38} {'ops/s':>10} {'us/op':>9} {'vs OpenSSL':>10}")
        for op in ("keygen", "shared"):
            for o, impl, r in rows:
                if o == op:
                    print(f"  {o:7} {impl:38} {r:10.0f} {1e6 / r:9.1f} {rel[o, impl]:9.2f}x")

    print("\nSpeed relative to OpenSSL (cryptography), same exponent length; '-' = not run")
    heads = [f"{op} {impl}" for impl in impls for op in ("keygen", "shared")]
    print(f"  {'group':26}" + "".join(f"{h:>16}" for h in heads))
    for title, rel in summary:
        cells = [
            f"{rel[op, f'_dh ({impl})']:.2f}x" if (op, f"_dh ({impl})") in rel else "-"
            for impl in impls
            for op in ("keygen", "shared")
        ]
        print(f"  {title:26}" + "".join(f"{c:>16}" for c in cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
