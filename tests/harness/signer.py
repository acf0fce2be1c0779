"""The parent's signing service in the simulations: the real one
(ikepriv/parent_kernel/signer.py `SigningKey`), given a key object instead of a file.

Not an oracle, like in the daemon: the hash is computed by the parent's code from the
request's parts and the definition's *configured* local identity, so a core that sent
another ID fails the peer's check.
"""

from __future__ import annotations

from ikepriv.child_negotiator.core.identities import phase1_id
from ikepriv.crypto import signatures
from ikepriv.ipc.messages import Identity, SignatureRequest
from ikepriv.isakmp.constants import AuthMethod
from ikepriv.parent_kernel.signer import SigningKey


def signing_key(method: AuthMethod, key: signatures.PrivateKey, local_id: Identity) -> SigningKey:
    """What SigningKey.load makes of a definition, from a key already in memory."""
    return SigningKey(method, key, phase1_id(local_id).body)


def sign_request(
    msg: SignatureRequest, signer: SigningKey, *, deterministic: bool = False
) -> bytes:
    """The SIG payload data the parent answers a vetted SignatureRequest with;
    `deterministic`: RFC 6979 ECDSA over the parent's own hash, for replayable runs (the
    core fuzzer rebuilds a pair and replays an input against it)."""
    if not deterministic:
        return signer.sign(msg)
    return signatures.sign(signer.method, signer.key, signer.auth_hash(msg), deterministic=True)
