"""The parent's signing service as tests need it: what ikepriv/parent_kernel/signer.py
computes for a SignatureRequest, in one small function.

Not an oracle, like the real one: the hash is computed here from the request's parts and
the definition's *configured* local identity, encoded by the child's own encoder
(`identities.phase1_id`), so a core that sent another ID fails the peer's check.
"""

from __future__ import annotations

from dataclasses import dataclass

from ikepriv.child_negotiator.core.identities import phase1_id
from ikepriv.crypto import signatures
from ikepriv.crypto.oakley import hash_i, hash_r
from ikepriv.ipc.messages import Identity, SignatureRequest
from ikepriv.isakmp.constants import AuthMethod


@dataclass(frozen=True)
class SigningKey:
    """One definition's signing side: its method, private key and configured local ID."""

    method: AuthMethod
    key: signatures.PrivateKey
    local_id: Identity


def auth_hash(msg: SignatureRequest, local_id: Identity) -> bytes:
    """HASH_I (we initiated) or HASH_R over the request's parts and our configured ID."""
    which = hash_i if msg.initiator else hash_r
    id_body = phase1_id(local_id).body
    return which(msg.prf, msg.skeyid, msg.g_xi, msg.g_xr, msg.icookie, msg.rcookie,
                 msg.sa_i_body, id_body)  # fmt: skip


def sign_request(
    msg: SignatureRequest, signer: SigningKey, *, deterministic: bool = False
) -> bytes:
    """The SIG payload data the parent answers a vetted SignatureRequest with
    (`deterministic`: RFC 6979 ECDSA, for replayable runs such as the core fuzzer's)."""
    digest = auth_hash(msg, signer.local_id)
    return signatures.sign(signer.method, signer.key, digest, deterministic=deterministic)
