"""The ikedump program: options, the frame loop, output and exit status.

Signature-authenticated phase 1 exchanges (RSA, ECDSA) are checked message by message: for
each SIG_I/SIG_R, the signer's certificate (a --cert certificate naming the signer's ID,
else the CERT payload of its message), the signature over HASH_I/HASH_R (this needs the
phase 1 DH secret: 'dh-secret' in --secrets; Main Mode needs it to decrypt as well), the ID
against the certificate (subject DN or subjectAltName) and, with --ca, the chain at the time
of capture. Each failed check is one problem that says which: "signature does not verify
with the certificate's key", "ID not in certificate", "chain: <reason>", "no certificate
for the signer", "cannot decrypt: no DH secret ...".

Exit status: 0 every IKE message parsed (and, with keys, decrypted and verified); 1 some
message did not (the first failure is the one-line summary on stderr); 2 a bad command line,
key, certificate or CA file; 3 the capture cannot be read. Nothing escapes as a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from ikepriv.dump.capture import CaptureError, FrameError, Skip, classify, open_capture
from ikepriv.dump.keys import (
    MAX_KEY_FILE_BYTES,
    KeyInputError,
    KeyMaterial,
    parse_hex,
    parse_key_table,
    parse_selected,
)
from ikepriv.dump.render import record_dict, record_text
from ikepriv.dump.session import CaptureProblem, Dumper
from ikepriv.dump.signed import Trust, load_trust

PROG = "ikedump"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREADABLE = 3
MAX_PSK_BYTES = 1024


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _parser() -> _Parser:
    p = _Parser(
        prog=PROG,
        description="Decode, decrypt and verify IKEv1 traffic in a pcap or pcapng capture.",
    )
    p.add_argument("capture", help="pcap or pcapng file")
    secret = p.add_mutually_exclusive_group()
    secret.add_argument("--psk", help="pre-shared key (text)")
    secret.add_argument("--psk-hex", metavar="HEX", help="pre-shared key (hex)")
    p.add_argument(
        "--dh-secret",
        action="append",
        default=[],
        metavar="[ICOOKIE=]HEX",
        help="phase 1 DH shared secret g^xy (with a PSK for PSK SAs, alone for signature "
        "SAs); repeat for several SAs (in capture order)",
    )
    p.add_argument(
        "--qm-dh-secret",
        action="append",
        default=[],
        metavar="[MSGID=]HEX",
        help="Quick Mode (PFS) DH shared secret; repeat for several Quick Modes",
    )
    p.add_argument(
        "--keys",
        metavar="FILE",
        help="Wireshark IKEv1 decryption table: icookie_hex,Ka_hex per line (decrypt only)",
    )
    p.add_argument(
        "--secrets",
        metavar="FILE",
        help="read the secrets from FILE ('-': standard input), one per line: 'psk TEXT', "
        "'psk-hex HEX', 'dh-secret [ICOOKIE=]HEX', 'qm-dh-secret [MSGID=]HEX'; '#' comments. "
        "Secrets given as arguments are visible to every user in /proc/PID/cmdline",
    )
    p.add_argument(
        "--cert",
        action="append",
        default=[],
        metavar="FILE",
        help="a peer's certificate (PEM, one or more, or DER) to check signatures with: "
        "preferred to the capture's CERT payloads for the signer whose ID it names; repeat",
    )
    p.add_argument(
        "--ca",
        action="append",
        default=[],
        metavar="FILE",
        help="trust anchor (PEM or DER): also validate each signer's chain at the time of "
        "capture; repeat",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per IKE message")
    return p


SECRET_OPTIONS = ("psk", "psk_hex", "dh_secret", "qm_dh_secret")


def _read_bytes(name: str) -> bytes:
    """A key, secrets or certificate file, at most MAX_KEY_FILE_BYTES."""
    try:
        with Path(name).open("rb") as handle:
            raw = handle.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise KeyInputError(f"{name}: {exc.strerror or exc}") from None
    if len(raw) > MAX_KEY_FILE_BYTES:
        raise KeyInputError(f"{name}: larger than {MAX_KEY_FILE_BYTES} bytes")
    return raw


def _read_text(name: str) -> str:
    try:
        return _read_bytes(name).decode("utf-8")
    except UnicodeDecodeError:
        raise KeyInputError(f"{name}: not UTF-8 text") from None


def _read_bounded(name: str, stdin: TextIO) -> str:
    if name == "-":
        text = stdin.read(MAX_KEY_FILE_BYTES + 1)
        if len(text) > MAX_KEY_FILE_BYTES:
            raise KeyInputError(f"secrets on standard input: more than {MAX_KEY_FILE_BYTES} bytes")
        return text
    return _read_text(name)


def _merge_secrets(args: argparse.Namespace, stdin: TextIO) -> None:
    """Fold the lines of --secrets into the options, as if given there (never both)."""
    where = "standard input" if args.secrets == "-" else args.secrets
    for number, line in enumerate(_read_bounded(args.secrets, stdin).splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition(" ")
        value = value.strip()
        option = name.replace("-", "_")
        if option not in SECRET_OPTIONS or not value:
            raise KeyInputError(f"{where} line {number}: expected 'psk', 'psk-hex', "
                                "'dh-secret' or 'qm-dh-secret' and a value")  # fmt: skip
        if option in ("psk", "psk_hex"):
            if args.psk is not None or args.psk_hex is not None:
                raise UsageError(f"{where} line {number}: a second pre-shared key")
            setattr(args, option, value)
        else:
            getattr(args, option).append(value)


def secret_arguments(args: argparse.Namespace) -> list[str]:
    """The secret options given on the command line itself (each named once)."""
    return [
        "--" + o.replace("_", "-") for o in SECRET_OPTIONS if getattr(args, o) not in (None, [])
    ]


def _key_material(args: argparse.Namespace) -> KeyMaterial:
    keys = KeyMaterial()
    if args.psk is not None:
        keys.psk = args.psk.encode()
    elif args.psk_hex is not None:
        keys.psk = parse_hex(args.psk_hex, "--psk-hex", max_bytes=MAX_PSK_BYTES)
    if keys.psk is not None and not keys.psk:
        raise KeyInputError("--psk is empty")
    if keys.psk is not None and len(keys.psk) > MAX_PSK_BYTES:
        raise KeyInputError("--psk is too long")
    if keys.psk is not None and not args.dh_secret:
        raise UsageError("--psk needs --dh-secret (the phase 1 DH shared secret)")
    if args.qm_dh_secret and not args.dh_secret:
        raise UsageError("--qm-dh-secret needs --dh-secret")
    if args.keys is not None and keys.psk is not None:
        raise UsageError("--keys and --psk exclude each other")
    if args.keys is not None and args.dh_secret:
        raise UsageError("--keys and --dh-secret exclude each other")
    keys.dh_secrets = [parse_selected(s, "--dh-secret", 8) for s in args.dh_secret]
    keys.qm_dh_secrets = [parse_selected(s, "--qm-dh-secret", 4) for s in args.qm_dh_secret]
    if args.keys is not None:
        keys.ka_table = parse_key_table(_read_text(args.keys))
        if not keys.ka_table:
            raise KeyInputError(f"{args.keys}: no keys")
    return keys


def _trust(args: argparse.Namespace) -> Trust:
    """The --cert and --ca files, parsed (a file that is not a certificate: usage error)."""
    return load_trust(
        [(name, _read_bytes(name)) for name in args.cert],
        [(name, _read_bytes(name)) for name in args.ca],
    )


def _dump(
    args: argparse.Namespace, keys: KeyMaterial, trust: Trust, out: TextIO
) -> list[CaptureProblem]:
    problems: list[CaptureProblem] = []
    counts: Counter[str] = Counter()
    dumper = Dumper(keys, trust)
    try:
        handle = Path(args.capture).open("rb")
    except OSError as exc:
        raise CaptureError(f"{args.capture}: {exc.strerror or exc}") from None
    with handle:
        linktype, frames = open_capture(handle)
        for frame in frames:
            try:
                item = classify(frame.number, frame.time, frame.data, linktype)
            except FrameError as exc:
                offset = exc.offset if exc.offset >= 0 else None
                problem = CaptureProblem(frame.number, exc.reason)
                problems.append(problem)
                counts["unusable frames"] += 1
                _emit_frame_problem(args, out, problem, offset)
                continue
            if isinstance(item, Skip):
                counts[item.value] += 1
                continue
            record = dumper.feed(item)
            counts["IKEv2 messages" if record.ikev2 else "IKEv1 messages"] += 1
            if record.retransmission_of is not None:
                counts["retransmissions"] += 1
            problems.extend(record.problems)
            if args.json:
                out.write(json.dumps(record_dict(record), sort_keys=False) + "\n")
            else:
                out.write("\n".join(record_text(record)) + "\n\n")
    if not args.json:
        summary = ", ".join(f"{n} {what}" for what, n in counts.items()) or "no frames"
        status = "ok" if not problems else f"{len(problems)} problem(s)"
        out.write(f"summary: {summary}; {status}\n")
    return problems


def _emit_frame_problem(
    args: argparse.Namespace, out: TextIO, problem: CaptureProblem, frame_offset: int | None
) -> None:
    if args.json:
        return  # JSON output has one object per IKE message; the summary line says it
    where = f" (frame byte {frame_offset})" if frame_offset is not None else ""
    out.write(f"frame {problem.frame}\n  PROBLEM {problem}{where}\n\n")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        given = secret_arguments(args)
        if given:
            print(f"{PROG}: warning: secrets on the command line ({', '.join(given)}) are "
                  "visible to every user in /proc/PID/cmdline; use --secrets FILE or "
                  "--secrets - (standard input)", file=sys.stderr)  # fmt: skip
        if args.secrets is not None:
            _merge_secrets(args, sys.stdin)
        keys = _key_material(args)
        trust = _trust(args)
    except (UsageError, KeyInputError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        problems = _dump(args, keys, trust, sys.stdout)
    except CaptureError as exc:
        sys.stdout.flush()
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    except BrokenPipeError:
        return EXIT_FAILED
    except Exception as exc:  # never a traceback: one line, and the class for bug reports
        print(f"{PROG}: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    sys.stdout.flush()
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        print(f"{PROG}: {problems[0]}{more}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
