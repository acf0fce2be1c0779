"""Signature definitions in files and rows: the fields, their rules, and the checks of the
credential files that `ikedb -p` runs before it stores anything (issue 10)."""

from __future__ import annotations

import os
from pathlib import Path

import pki
import pytest
from cryptography.hazmat.primitives import serialization

from ikepriv.cli import ikedb
from ikepriv.config import load_definitions
from ikepriv.config.errors import ConfigError
from ikepriv.config.model import Fragmentation, SendCert
from ikepriv.config.store import TunnelDB, TunnelDBError
from ikepriv.config.writer import dump_definitions
from ikepriv.isakmp.constants import AuthMethod

SIG = """\
[[phase1]]
name = "to-siteB"
local_addr = "192.0.2.1"
remote_addr = "{remote}"
local_id = "C=CH, O=ikepriv test, CN=gw-a"
remote_id = "C=CH, O=ikepriv test, CN=gw-b"
mode = "{mode}"
auth = "{auth}"
{files}proposals = ["aes128-sha256-modp2048"]
"""


def sig(files: pki.CredentialFiles | str, auth: str = "rsa-sig", *, remote: str = "192.0.2.2",
        mode: str = "main", extra: str = "") -> str:  # fmt: skip
    text = files if isinstance(files, str) else files.toml()
    return SIG.format(remote=remote, mode=mode, auth=auth, files=text + extra)


def creds(tmp_path: Path, key_kind: str = "rsa2048", **kwargs: object) -> pki.CredentialFiles:
    ca = pki.make_ca()
    ee = pki.make_end_entity(ca, "C=CH, O=ikepriv test, CN=gw-a", key_kind=key_kind)
    return pki.write_credentials(tmp_path, ee, ca, **kwargs)  # type: ignore[arg-type]


def problems(text: str, **kwargs: object) -> list[tuple[int | None, str | None, str]]:
    with pytest.raises(ConfigError) as info:
        load_definitions(text, "t.toml", **kwargs)  # type: ignore[arg-type]
    return [(p.line, p.field, p.message) for p in info.value.problems]


def line(text: str, prefix: str) -> int:
    return next(n for n, t in enumerate(text.splitlines(), 1) if t.startswith(prefix))


@pytest.mark.parametrize(
    ("key_kind", "method"),
    [
        ("rsa2048", AuthMethod.RSA_SIGNATURES),
        ("p256", AuthMethod.ECDSA_SHA256_P256),
        ("p384", AuthMethod.ECDSA_SHA384_P384),
        ("p521", AuthMethod.ECDSA_SHA512_P521),
    ],
)
def test_the_stored_method_is_exact_and_ecdsa_follows_the_key(
    tmp_path: Path, key_kind: str, method: AuthMethod
) -> None:
    files = creds(tmp_path, key_kind)
    auth = "rsa-sig" if key_kind.startswith("rsa") else "ecdsa-sig"
    (p1,) = load_definitions(sig(files, auth), check_files=True).phase1
    assert p1.auth is method and p1.psk is None
    assert (p1.cert, p1.key, p1.ca, p1.crl) == (str(files.cert), str(files.key),
                                                (str(files.ca),), ())  # fmt: skip
    assert (p1.send_cert, p1.fragmentation, p1.fragment_size) == (
        SendCert.IF_ASKED, Fragmentation.YES, 1280,
    )  # fmt: skip


def test_signature_definitions_round_trip_through_the_database_and_ikedb_g(
    tmp_path: Path,
) -> None:
    files = creds(tmp_path, "p384", crl=pki.make_crl(pki.make_ca()))
    extra = 'send_cert = "always"\nfragmentation = "force"\nfragment_size = 576\n'
    text = sig(files, "ecdsa-sig", remote="%any", extra=extra)
    defs = load_definitions(text, check_files=True)
    with TunnelDB(tmp_path / "t.db") as db:
        stored = db.put(defs)
        back = db.phase1("to-siteB")
    assert back == stored.phase1[0]
    assert back is not None and back.remote_addr is None  # %any in Main Mode: signatures
    assert (back.send_cert, back.fragmentation, back.fragment_size) == (
        SendCert.ALWAYS, Fragmentation.FORCE, 576,
    )  # fmt: skip
    printed = dump_definitions(stored)
    assert 'auth = "ecdsa-sig"' in printed and "psk" not in printed
    again = load_definitions(printed)
    assert again.phase1[0] == stored.phase1[0].__class__(**{
        **{f: getattr(stored.phase1[0], f) for f in stored.phase1[0].__dataclass_fields__},
        "number": None,
    })  # fmt: skip


@pytest.mark.parametrize(
    ("files", "extra", "field", "words"),
    [
        ("", "", "cert", "needs our certificate"),
        ('cert = "/c.pem"\n', "", "key", "needs our private key"),
        ('cert = "/c.pem"\nkey = "/k.pem"\n', "", "ca", "at least one CA"),
        ('cert = "c.pem"\nkey = "/k.pem"\nca = ["/ca.pem"]\n', "", "cert", "not an absolute"),
        ('cert = "/c.pem"\nkey = "/k.pem"\nca = ["/a", "/a"]\n', "", "ca", "names a file twice"),
        ('cert = "/c.pem"\nkey = "/k.pem"\nca = "/ca.pem"\n', "", "ca", "array of file paths"),
        ('cert = "/c.pem"\nkey = "/k.pem"\nca = ["/ca.pem"]\n', 'psk = "x"\n', "psk",
         "must be absent with auth = 'rsa-sig'"),
        ('cert = "/c.pem"\nkey = "/k.pem"\nca = ["/ca.pem"]\n', 'send_cert = "sometimes"\n',
         "send_cert", "not one of: always, ifasked, never"),
        ('cert = "/c.pem"\nkey = "/k.pem"\nca = ["/ca.pem"]\n', 'fragmentation = "on"\n',
         "fragmentation", "not one of: yes, accept, force, no"),
        ('cert = "/c.pem"\nkey = "/k.pem"\nca = ["/ca.pem"]\n', "fragment_size = 575\n",
         "fragment_size", "out of range (576..65535)"),
    ],
)  # fmt: skip
def test_signature_field_rules_name_the_field(
    files: str, extra: str, field: str, words: str
) -> None:
    got = problems(sig(files, extra=extra))
    assert any(f == field and words in msg for _, f, msg in got), got


def test_psk_definitions_refuse_certificate_fields_and_keep_the_any_rule() -> None:
    psk = 'psk = "a long random shared secret"\n'
    got = problems(sig(psk + 'ca = ["/ca.pem"]\n', "psk"))
    assert any(f == "ca" and "only for signature authentication" in m for _, f, m in got), got
    got = problems(sig(psk, "psk", remote="%any"))
    assert any(f == "remote_addr" and 'needs mode = "aggressive"' in m for _, f, m in got), got


def test_ecdsa_sig_with_an_rsa_key_is_refused_at_the_key(tmp_path: Path) -> None:
    files = creds(tmp_path, "rsa2048")
    text = sig(files, "rsa-sig").replace('auth = "rsa-sig"', 'auth = "ecdsa-sig"')
    got = problems(text)
    assert any(f == "key" and "needs an EC key" in m for _, f, m in got), got


# --- ikedb -p: the files themselves -------------------------------------------------------


def file_problems(text: str) -> list[tuple[int | None, str | None, str]]:
    return problems(text, check_files=True)


def test_files_are_checked_with_file_line_and_field(tmp_path: Path) -> None:
    files = creds(tmp_path)
    os.chmod(files.key, 0o640)
    os.chmod(files.ca, 0o664)
    text = sig(files)
    got = file_problems(text)
    assert (line(text, "key ="), "key") in [(n, f) for n, f, _ in got]
    assert (line(text, "ca ="), "ca") in [(n, f) for n, f, _ in got]
    messages = " | ".join(m for _, _, m in got)
    assert "chmod 600" in messages and "writable by group or others" in messages


@pytest.mark.parametrize(
    ("spoil", "field", "words"),
    [
        (lambda f: f.cert.unlink(), "cert", "No such file"),
        (lambda f: (f.cert.unlink(), f.cert.mkdir()), "cert", "not a regular file"),
        (lambda f: (f.cert.unlink(), f.cert.symlink_to(f.ca)), "cert", "symbolic link"),
        (lambda f: f.cert.write_bytes(b"x" * 60001), "cert", "larger than 60000 bytes"),
        (lambda f: f.cert.write_bytes(b"not a certificate"), "cert", "is not a certificate"),
        (lambda f: f.ca.write_bytes(b""), "ca", "is empty"),
        (lambda f: f.key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nxx\n"), "key",
         "is not a private key"),
        (lambda f: os.chown(f.key, 1000, 0), "key", "not root"),
    ],
)  # fmt: skip
def test_unusable_files_are_refused(tmp_path: Path, spoil: object, field: str, words: str) -> None:
    files = creds(tmp_path)
    spoil(files)  # type: ignore[operator]
    got = file_problems(sig(files))
    assert any(f == field and words in m for _, f, m in got), got


def test_a_key_that_is_not_the_certificates_key_is_refused(tmp_path: Path) -> None:
    files = creds(tmp_path)
    other = pki.new_key("rsa2048")
    pki.write(files.key, pki.private_pem(other), 0o600)
    got = file_problems(sig(files))
    assert any(f == "cert" and "does not match the key" in m for _, f, m in got), got


def test_short_rsa_keys_and_encrypted_keys_are_refused(tmp_path: Path) -> None:
    files = creds(tmp_path, "rsa1024")
    got = file_problems(sig(files))
    assert any(f == "key" and "at least 2048" in m for _, f, m in got), got
    k = pki.key("rsa2048")
    pki.write(files.key, k.private_bytes(serialization.Encoding.PEM,
              serialization.PrivateFormat.PKCS8,
              serialization.BestAvailableEncryption(b"pw")), 0o600)  # fmt: skip
    got = file_problems(sig(files))
    assert any(f == "key" and "is encrypted" in m for _, f, m in got), got


def test_der_files_and_a_crl_are_accepted(tmp_path: Path) -> None:
    files = creds(tmp_path, "p256", der=True, crl=pki.make_crl(pki.make_ca()))
    (p1,) = load_definitions(sig(files, "ecdsa-sig"), check_files=True).phase1
    assert p1.auth is AuthMethod.ECDSA_SHA256_P256 and p1.crl == (str(files.crl),)
    pki.write(files.crl, b"garbage")  # type: ignore[arg-type]
    got = file_problems(sig(files, "ecdsa-sig"))
    assert any(f == "crl" and "is not a CRL" in m for _, f, m in got), got


@pytest.mark.root
def test_ikedb_p_reports_file_line_field_and_stores_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = creds(tmp_path)
    os.chmod(files.key, 0o644)
    text = sig(files)
    conf = tmp_path / "defs.toml"
    conf.write_text(text)
    db = tmp_path / "t.db"
    assert ikedb.main(["--db", str(db), "-p", str(conf)]) == ikedb.EXIT_REFUSED
    err = capsys.readouterr().err
    assert f"{conf}:{line(text, 'key =')}: phase1 'to-siteB': field 'key': {files.key}:" in err
    assert not db.exists()
    os.chmod(files.key, 0o600)
    assert ikedb.main(["--db", str(db), "-p", str(conf)]) == 0
    assert ikedb.main(["--db", str(db), "-g"]) == 0
    out = capsys.readouterr().out
    assert f'key = "{files.key}"' in out and 'auth = "rsa-sig"' in out


def test_the_documented_certificate_example_is_a_valid_definition() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "tunnel-definitions.md").read_text()
    example = doc.split("## Example with certificates", 1)[1].split("```toml\n", 1)[1]
    defs = load_definitions(example.split("```", 1)[0])
    (p1,) = defs.phase1
    assert p1.auth is AuthMethod.RSA_SIGNATURES and p1.ca and p1.crl and p1.psk is None


def test_two_any_signature_definitions_for_one_remote_id_are_ambiguous(tmp_path: Path) -> None:
    files = creds(tmp_path)
    one = sig(files, remote="%any")
    other = one.replace('name = "to-siteB"', 'name = "other"')
    psk = sig('psk = "a long random shared secret"\n', "psk", remote="%any", mode="aggressive")
    with TunnelDB(tmp_path / "t.db") as db:
        db.put(load_definitions(one))
        # a PSK definition for the same identity is told apart by its method: accepted
        db.put(load_definitions(psk.replace('name = "to-siteB"', 'name = "psk"')))
        with pytest.raises(TunnelDBError, match="ambiguous"):
            db.put(load_definitions(other))
