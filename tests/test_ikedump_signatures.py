"""ikedump on captures of real signature-authenticated negotiations (RSA and ECDSA, Main and
Aggressive Mode): two in-process cores negotiate with certificates from tests/pki.py and an
intermediate CA, every datagram is written to a pcap and the DH secrets to a secrets file
(harness/sig_capture.py). ikedump must verify the good ones and say precisely which check
failed for the bad ones: a tampered SIG byte, a wrong --cert, an ID not in the
certificate, an untrusted chain, a certificate expired at the time of capture, a missing
certificate, missing secrets.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pki
import pytest
from cryptography import x509
from harness.sig_capture import Capture, record_phase1
from test_core_signatures import AM, INTER, MM, OTHER_ROOT, ROOT, WALL, End, _entity, fqdn, make_sim

from ikepriv.cli.ikedump import main
from ikepriv.ipc.messages import Fragmentation, SendCert
from ikepriv.isakmp import CertPayload, SigPayload, decode_message, encode_message
from ikepriv.isakmp.constants import IkeHash

MODES = {"main": MM, "aggressive": AM}
SIGNED = ("SIG_I", "SIG_R")
ALL_OK = ["certificate ok", "signature ok", "ID ok", "chain ok"]


@dataclass
class Run:
    capture: Capture
    left: End
    right: End


def negotiate(left: End, right: End, mode: str, **kw: Any) -> Run:
    """A phase 1 between LEFT and RIGHT, whole messages (no IKE fragmentation: ikedump
    shows fragments but does not reassemble them)."""
    sim = make_sim(left, right, MODES[mode], fragmentation=Fragmentation.NO, **kw)
    return Run(record_phase1(sim), left, right)


def good(kind: str, slot: int, name: str) -> End:
    return End(_entity(name, kind, slot=slot))


_RUNS: dict[tuple[str, str, IkeHash], Run] = {}


def good_run(mode: str, kind: str = "rsa2048", hash_alg: IkeHash = IkeHash.SHA2_256) -> Run:
    """One good negotiation per (mode, key kind, prf), shared by the tests that read it."""
    key = (mode, kind, hash_alg)
    if key not in _RUNS:
        _RUNS[key] = negotiate(good(kind, 10, "left"), good(kind, 11, "right"), mode,
                               hash_alg=hash_alg)  # fmt: skip
    return _RUNS[key]


def files(tmp_path: Path, capture: Capture, *, secrets: bool = True, **pcap: Any) -> list[str]:
    path = capture.write_pcap(tmp_path / "sig.pcap", pcap.pop("when", WALL), **pcap)
    args = [str(path)]
    if secrets:
        secret_file = tmp_path / "secrets"
        secret_file.write_text(capture.secrets_lines())
        args += ["--secrets", str(secret_file)]
    return args


def pem(tmp_path: Path, name: str, issued: pki.Issued) -> str:
    return str(pki.write(tmp_path / f"{name}.pem", issued.pem))


def ikedump(
    capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, list[dict[str, Any]], str]:
    rc = main([*args, "--json"])
    out, err = capsys.readouterr()
    return rc, [json.loads(line) for line in out.splitlines()], err


def signature_checks(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """SIG_I / SIG_R -> its JSON "signature" object (each signer signs once here)."""
    found = {o["signature"]["label"]: o["signature"] for o in objs if o["signature"]}
    assert found, objs
    return found


def outcome(sig: dict[str, Any], check: str) -> dict[str, Any]:
    return next(c for c in sig["checks"] if c["check"] == check)


# ---------------------------------------------------------------------------- good


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("kind", "hash_alg"),
    [("rsa2048", IkeHash.SHA2_256), ("p256", IkeHash.SHA), ("p384", IkeHash.SHA2_256)],
)
def test_good_exchanges_verify(
    mode: str, kind: str, hash_alg: IkeHash, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every check passes; ECDSA under a SHA-1 (or SHA-256) proposal hashes with the
    method's own SHA-2, as the negotiator does."""
    run = good_run(mode, kind, hash_alg)
    rc, objs, err = ikedump(
        capsys, *files(tmp_path, run.capture), "--ca", pem(tmp_path, "root", ROOT)
    )
    assert rc == 0, err
    sigs = signature_checks(objs)
    assert sorted(sigs) == sorted(SIGNED)
    for label, end in (("SIG_I", run.left), ("SIG_R", run.right)):
        sig = sigs[label]
        assert [f"{c['check']} ok" for c in sig["checks"] if c["ok"]] == ALL_OK, sig
        assert sig["certificate"]["subject"] == end.entity.cert.subject.rfc4514_string()
        assert sig["certificate"]["issuer"] == INTER.cert.subject.rfc4514_string()
        assert sig["certificate"]["source"] == "the capture"
    checks = [c for o in objs for c in o["checks"]]
    assert [c for c in checks if c.startswith("SIG_I")] == [f"SIG_I {c}" for c in ALL_OK]
    assert all(not o["problems"] for o in objs)


def test_text_output_names_the_certificate_and_each_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = good_run("main")
    assert main([*files(tmp_path, run.capture), "--ca", pem(tmp_path, "root", ROOT)]) == 0
    text = capsys.readouterr().out
    assert "check SIG_I signature ok" in text and "check SIG_R chain ok" in text
    assert "SIG_R RSA_SIGNATURES certificate CN=right,O=ikepriv test,C=CH" in text
    assert "from the capture" in text and text.rstrip().endswith("; ok")


def test_peer_certificates_given_with_cert_replace_the_capture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The responder never sends its certificate: its SIG_R is unverifiable from the capture
    alone, and verifies with --cert (the initiator refused it: no certificate)."""
    left, right = good("p256", 10, "left"), End(_entity("right", "p256", slot=11),
                                                send_cert=SendCert.NEVER)  # fmt: skip
    run = negotiate(left, right, "main")
    args = files(tmp_path, run.capture)
    rc, objs, err = ikedump(capsys, *args)
    assert rc == 1
    sigs = signature_checks(objs)
    assert outcome(sigs["SIG_I"], "signature")["ok"] is True
    assert sigs["SIG_R"]["checks"] == [{
        "check": "certificate", "ok": False,
        "text": "no certificate for the signer (no CERT payload in its message, no --cert given)",
    }]  # fmt: skip
    assert "SIG_R no certificate for the signer" in err
    given = pem(tmp_path, "right", right.entity)
    rc, objs, err = ikedump(capsys, *args, "--cert", given)
    assert rc == 0, err
    sig = signature_checks(objs)["SIG_R"]
    assert sig["certificate"]["source"] == given
    assert [c["ok"] for c in sig["checks"]] == [True, True, True]


# ---------------------------------------------------------------------------- bad


def _flip_sig_byte(message: bytes) -> bytes:
    decoded = decode_message(message)
    assert not decoded.encrypted
    payloads = [
        SigPayload(p.data[:-1] + bytes([p.data[-1] ^ 0x01])) if isinstance(p, SigPayload) else p
        for p in decoded.payloads
    ]
    return encode_message(replace(decoded, payloads=tuple(payloads)))


def _break_leaf_subject(message: bytes) -> bytes:
    """The first CERT payload with its subject's first string retagged as an INTEGER: the
    certificate loads, and its subject fails when read (the library parses names lazily)."""
    decoded = decode_message(message)
    index = next(i for i, p in enumerate(decoded.payloads) if isinstance(p, CertPayload))
    cert = decoded.payloads[index]
    assert isinstance(cert, CertPayload)
    subject = x509.load_der_x509_certificate(cert.data).subject.public_bytes()
    at = cert.data.index(subject) + subject.index(bytes.fromhex("0603550406")) + 5
    data = cert.data[:at] + b"\x02" + cert.data[at + 1 :]
    payloads = list(decoded.payloads)
    payloads[index] = CertPayload(cert.encoding, data)
    return encode_message(replace(decoded, payloads=tuple(payloads)))


def test_a_certificate_whose_subject_does_not_parse_is_a_certificate_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by fuzz_decrypt.py: hostile CERT bytes end in an outcome, never a traceback."""
    run = good_run("aggressive", "p256", IkeHash.SHA)
    args = files(tmp_path, run.capture, change=lambda n, m: _break_leaf_subject(m) if n == 2 else m)
    rc, objs, err = ikedump(capsys, *args, "--ca", pem(tmp_path, "root", ROOT))
    assert rc == 1
    sig = signature_checks(objs)["SIG_R"]
    assert sig["certificate"] is None
    assert sig["checks"] == [{
        "check": "certificate", "ok": False,
        "text": "the signer's certificate (from the capture) has a subject or issuer that does "
        "not parse",
    }]  # fmt: skip
    assert "internal error" not in err


def test_a_tampered_sig_byte_in_aggressive_mode_is_a_signature_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = good_run("aggressive", "p256", IkeHash.SHA)
    am2 = 2
    args = files(tmp_path, run.capture, change=lambda n, m: _flip_sig_byte(m) if n == am2 else m)
    rc, objs, err = ikedump(capsys, *args, "--ca", pem(tmp_path, "root", ROOT))
    assert rc == 1
    sig = signature_checks(objs)["SIG_R"]
    assert [c["ok"] for c in sig["checks"]] == [True, False, True, True]
    reason = outcome(sig, "signature")["text"]
    assert reason.startswith("signature does not verify with the certificate's key")
    assert err.startswith("ikedump: frame 2: SIG_R signature does not verify")
    assert outcome(signature_checks(objs)["SIG_I"], "signature")["ok"] is True


def test_a_bad_signature_in_main_mode_is_reported_inside_the_encryption(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The responder's parent signs another HASH_R (over an ID it does not send): MM6
    decrypts, and its SIG_R is what fails."""
    left = good("rsa2048", 10, "left")
    right = End(_entity("liar", "rsa2048", slot=20), sign_id=fqdn("elsewhere.example.org"))
    run = negotiate(left, right, "main")
    rc, objs, err = ikedump(capsys, *files(tmp_path, run.capture))
    assert rc == 1
    sigs = signature_checks(objs)
    assert outcome(sigs["SIG_R"], "signature")["ok"] is False
    assert outcome(sigs["SIG_R"], "ID")["ok"] is True
    assert outcome(sigs["SIG_I"], "signature")["ok"] is True
    assert "SIG_R signature does not verify with the certificate's key (RSA_SIGNATURES" in err


def test_a_wrong_certificate_given_with_cert_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A certificate for the responder's very name with another key: --cert wins over the
    capture's CERT, and the signature does not verify with it."""
    run = good_run("main")
    impostor = pki.make_end_entity(INTER, "C=CH, O=ikepriv test, CN=right", (), "rsa2048", slot=30)
    given = pem(tmp_path, "impostor", impostor)
    rc, objs, _ = ikedump(capsys, *files(tmp_path, run.capture), "--cert", given)
    assert rc == 1
    sig = signature_checks(objs)["SIG_R"]
    assert sig["certificate"]["source"] == given
    assert outcome(sig, "signature")["text"].startswith(
        "signature does not verify with the certificate's key"
    )
    assert outcome(signature_checks(objs)["SIG_I"], "signature")["ok"] is True  # from the capture
    # one certificate of someone else entirely: its ID check says so too
    stranger = pem(tmp_path, "stranger", good("rsa2048", 31, "stranger").entity)
    silent = End(_entity("right", "rsa2048", slot=11), send_cert=SendCert.NEVER)
    run = negotiate(good("rsa2048", 10, "left"), silent, "main")
    rc, objs, _ = ikedump(capsys, *files(tmp_path, run.capture), "--cert", stranger)
    sig = signature_checks(objs)["SIG_R"]
    assert rc == 1
    assert [c["ok"] for c in sig["checks"]] == [True, False, False]
    assert outcome(sig, "ID")["text"].startswith(
        "ID not in certificate (DER_ASN1_DN C=CH, O=ikepriv test, CN=right;"
    )


@pytest.mark.parametrize("mode", MODES)
def test_an_id_not_in_the_certificate_is_reported(
    mode: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The initiator claims an FQDN its certificate does not name (the responder refuses
    it); ikedump says the ID check failed and the signature itself is good."""
    bad = End(_entity("nosan", "p256", slot=20, sans=("other.example.org",)),
              local_id=fqdn("claimed.example.org"))  # fmt: skip
    run = negotiate(bad, good("p256", 11, "right"), mode, responder_remote_id=None)
    rc, objs, err = ikedump(capsys, *files(tmp_path, run.capture))
    assert rc == 1
    sig = signature_checks(objs)["SIG_I"]
    assert [c["ok"] for c in sig["checks"]] == [True, True, False]
    assert outcome(sig, "ID")["text"] == (
        "ID not in certificate (FQDN claimed.example.org; certificate CN=nosan,O=ikepriv test,C=CH)"
    )
    assert "SIG_I ID not in certificate" in err


def test_an_untrusted_chain_is_reported_with_ca(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = good_run("aggressive", "p256", IkeHash.SHA)
    rc, objs, err = ikedump(capsys, *files(tmp_path, run.capture),
                            "--ca", pem(tmp_path, "other", OTHER_ROOT))  # fmt: skip
    assert rc == 1
    for sig in signature_checks(objs).values():
        assert [c["ok"] for c in sig["checks"]] == [True, True, True, False]
        assert outcome(sig, "chain")["text"].startswith(
            "chain: no path to a trusted CA (unknown CA)"
        )
    assert "SIG_R chain: no path to a trusted CA" in err


def test_the_chain_is_judged_at_the_time_of_capture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same messages, captured two years later: the end entities had expired."""
    run = good_run("main")
    later = WALL + 2 * 365 * 86400
    rc, objs, _ = ikedump(capsys, *files(tmp_path, run.capture, when=later),
                          "--ca", pem(tmp_path, "root", ROOT))  # fmt: skip
    assert rc == 1
    for sig in signature_checks(objs).values():
        assert outcome(sig, "chain")["text"].startswith("chain: certificate expired (not after ")
        assert outcome(sig, "signature")["ok"] is True


# ---------------------------------------------------------------------------- secrets


def test_main_mode_without_secrets_says_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = good_run("main")
    icookie = next(iter(run.capture.dh_secrets)).hex()
    rc, objs, err = ikedump(capsys, *files(tmp_path, run.capture, secrets=False),
                            "--ca", pem(tmp_path, "root", ROOT))  # fmt: skip
    assert rc == 1
    problems = [p["reason"] for o in objs for p in o["problems"]]
    expected = (f"cannot decrypt: no DH secret for ISAKMP SA {icookie} (give its 'dh-secret'): "
                "its SIG cannot be checked")  # fmt: skip
    assert problems == [expected, expected]  # MM5 and MM6
    assert err == f"ikedump: frame 5: {expected} (+1 more)\n"
    # with nothing given at all, the capture is only shown (as before)
    rc, objs, err = ikedump(capsys, *files(tmp_path, run.capture, secrets=False))
    assert rc == 0 and err == ""


def test_aggressive_mode_without_secrets_checks_what_it_can(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """AM2 travels in the clear: its certificate, ID and chain are checked; the signature
    needs SKEYID, and ikedump says the DH secret is missing."""
    run = good_run("aggressive", "p256", IkeHash.SHA)
    rc, objs, err = ikedump(capsys, *files(tmp_path, run.capture, secrets=False),
                            "--ca", pem(tmp_path, "root", ROOT))  # fmt: skip
    assert rc == 1
    sig = signature_checks(objs)["SIG_R"]
    assert [c["ok"] for c in sig["checks"]] == [True, None, True, True]
    assert outcome(sig, "signature")["text"].startswith(
        "signature cannot be checked: no DH secret for ISAKMP SA "
    )
    # nothing given: the same, as notes, exit 0
    rc, objs, err = ikedump(capsys, *files(tmp_path, run.capture, secrets=False))
    assert rc == 0, err
    notes = [n for o in objs for n in o["notes"]]
    assert any(n.startswith("SIG_R signature cannot be checked: no DH secret") for n in notes)


def test_a_key_table_decrypts_but_cannot_check_signatures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = good_run("main")
    rc, objs, _ = ikedump(capsys, *files(tmp_path, run.capture))
    assert rc == 0
    ka = next(o["phase1_keys"]["Ka"] for o in objs if o["phase1_keys"])
    table = tmp_path / "table"
    table.write_text(f"{objs[0]['icookie']},{ka}\n")
    path = run.capture.write_pcap(tmp_path / "sig.pcap", WALL)
    rc, objs, _ = ikedump(capsys, str(path), "--keys", str(table))
    assert rc == 1
    for sig in signature_checks(objs).values():
        assert outcome(sig, "signature")["text"] == (
            "signature cannot be checked: SKEYID unknown: a key table (--keys) only decrypts; "
            "give the DH secret"
        )
        assert outcome(sig, "ID")["ok"] is True


# ---------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("option", "content", "message"),
    [
        ("--cert", None, "No such file or directory"),
        ("--cert", b"not a certificate", "--cert {path}: not a PEM or DER certificate"),
        ("--ca", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
         "--ca {path}: not a PEM or DER certificate"),
        ("--ca", b"", "--ca {path}: not a PEM or DER certificate"),
        ("--cert", b"x" * ((1 << 20) + 1), "larger than"),
    ],
)  # fmt: skip
def test_bad_certificate_files_are_one_line_exit_2(
    option: str, content: bytes | None, message: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    path = tmp_path / "file.pem"
    if content is not None:
        path.write_bytes(content)
    assert main([str(tmp_path / "none.pcap"), option, str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("ikedump: ")
    assert message.format(path=path) in err, err
