"""The parent's configuration push with certificate files, into the real negotiator core:
the blobs arrive per definition, in index order, counted by ConfigEnd, and a sequence that
does not add up leaves the previous configuration in place (issue 10)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pki
import pytest

from ikepriv.child_negotiator.core.config_snapshot import Credentials
from ikepriv.child_negotiator.core.engine import Negotiator
from ikepriv.config import load_definitions
from ikepriv.config.store import TunnelDB
from ikepriv.ipc import messages as m
from ikepriv.ipc.schema import Message
from ikepriv.isakmp.constants import AuthMethod
from ikepriv.parent_kernel.definitions import DbView

DEFS = """\
[[phase1]]
name = "sig"
local_addr = "192.0.2.1"
remote_addr = "%any"
local_id = "C=CH, O=ikepriv test, CN=gw-a"
remote_id = "C=CH, O=ikepriv test, CN=road"
auth = "ecdsa-sig"
{files}proposals = ["aes128-sha256-ecp256"]

[[phase1]]
name = "psk"
local_addr = "192.0.2.1"
remote_addr = "192.0.2.3"
psk = "a long random shared secret for the tests"
proposals = ["aes128-sha256-modp2048"]
"""


@pytest.fixture
def view(tmp_path: Path) -> tuple[DbView, pki.CredentialFiles]:
    ca = pki.make_ca()
    inter = pki.make_intermediate(ca)
    ee = pki.make_end_entity(inter, "C=CH, O=ikepriv test, CN=gw-a", key_kind="p256")
    files = pki.write_credentials(tmp_path, ee, ca, inter, crl=pki.make_crl(inter))
    with TunnelDB(tmp_path / "t.db") as db:
        db.put(load_definitions(DEFS.format(files=files.toml()), check_files=True))
        return DbView.load(db), files


def feed(core: Negotiator, messages: list[Message]) -> None:
    for msg in messages:
        core.handle(msg, 0.0)


def test_the_core_keeps_each_definitions_files_as_sent(
    view: tuple[DbView, pki.CredentialFiles],
) -> None:
    db_view, files = view
    core = Negotiator(None, 0.0, os.urandom)
    feed(core, db_view.config_messages())
    assert core.config.generation == db_view.generation and sorted(core.config.phase1) == [1, 2]
    assert files.crl is not None
    assert dict(core.config.credentials) == {
        1: Credentials(
            own_cert=(files.cert.read_bytes(),),  # end entity and intermediate, one file
            trust_anchors=(files.ca.read_bytes(),),
            crls=(files.crl.read_bytes(),),
        )
    }
    assert core.config.phase1[1].auth_method is AuthMethod.ECDSA_SHA256_P256


def _spoiled(messages: list[Message], how: str) -> list[Message]:
    out = list(messages)
    creds = [i for i, msg in enumerate(out) if isinstance(msg, m.ConfigCredential)]
    if how == "lost":
        del out[creds[-1]]
    elif how == "extra":
        out.insert(creds[-1] + 1, out[creds[-1]])  # the CRL twice: index 0 again
    elif how == "orphan":  # a credential before any definition
        out.insert(1, out.pop(creds[0]))
    elif how == "other-definition":
        first = out[creds[0]]
        assert isinstance(first, m.ConfigCredential)
        out[creds[0]] = dataclasses.replace(first, phase1_number=2)
    elif how == "gap":
        last = out[creds[-1]]
        assert isinstance(last, m.ConfigCredential)
        out[creds[-1]] = dataclasses.replace(last, index=1)
    return out


@pytest.mark.parametrize("how", ["lost", "extra", "orphan", "other-definition", "gap"])
def test_a_credential_sequence_that_does_not_add_up_keeps_the_old_configuration(
    view: tuple[DbView, pki.CredentialFiles], how: str
) -> None:
    db_view, _ = view
    core = Negotiator(None, 0.0, os.urandom)
    feed(core, db_view.config_messages())
    good = core.config
    later = dataclasses.replace(db_view, generation=db_view.generation + 1)
    feed(core, _spoiled(later.config_messages(), how))
    assert core.config is good
