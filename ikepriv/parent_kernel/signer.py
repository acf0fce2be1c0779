"""Our private keys and the one thing they are used for: signing our own HASH_I/HASH_R.

The keys live here, in the root parent, and nowhere else (docs/security.md, "Where the
private keys live"): the child, which parses everything from the network, never sees them.
It asks for a signature with a SignatureRequest, and this is not a signing oracle: the value
signed is always

    HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b)   (we initiated)
    HASH_R = prf(SKEYID, g^xr | g^xi | CKY-R | CKY-I | SAi_b | IDir_b)   (we responded)

computed here, with our ID_b taken from the definition (the configured local identity,
encoded by `IdPayload.phase1`, the encoder the child sends it with), never from the child.
A compromised child can therefore obtain signatures only over prf outputs that end in our
real identity, which are good for completing an IKEv1 phase 1 as us and for nothing else;
the vetting (vetting.py) limits even that to a definition in a live exchange, at a bounded
rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ikepriv.config.credentials import CredentialError, load_private_key
from ikepriv.config.model import Phase1Definition
from ikepriv.crypto.oakley import hash_i, hash_r
from ikepriv.crypto.signatures import PrivateKey, key_problem, sign
from ikepriv.ipc import messages as m
from ikepriv.isakmp.constants import AuthMethod
from ikepriv.isakmp.id_payload import IdPayload

__all__ = ["SigningKey"]


@dataclass(frozen=True, eq=False)
class SigningKey:
    """One signature definition's private key, method and our ID payload body.

    repr hides the key; equality is identity (two loads of one file are two objects).
    The file's bytes were wiped after parsing (credentials.py); the key object itself lives
    in `cryptography`'s memory, which Python cannot wipe: it goes when the definition does.
    """

    method: AuthMethod
    key: PrivateKey = field(repr=False)
    id_body: bytes  # IDii_b / IDir_b: our configured identity as the child sends it

    @classmethod
    def load(cls, d: Phase1Definition, local_id: m.Identity) -> SigningKey:
        """Read the key of a signature definition with the checks ikedb -p makes (regular
        root-only file, unencrypted, RSA >= 2048 bits or the curve of the stored method).

        `local_id` is the identity the child gets in its Phase1Def (definitions.py makes
        both from the definition). CredentialError names the field and the reason.
        """
        if d.key is None or not d.uses_signatures:
            raise CredentialError("key", str(d.key), "the definition does not use signatures")
        key = load_private_key(d.key)
        problem = key_problem(d.auth, key)
        if problem is not None:
            raise CredentialError("key", d.key, f"{problem} (stored auth is {d.auth.name})")
        body = IdPayload.phase1(local_id.id_type, local_id.data).body
        return cls(d.auth, key, body)

    def auth_hash(self, req: m.SignatureRequest) -> bytes:
        """HASH_I or HASH_R over the request's parts and our own ID_b."""
        compute = hash_i if req.initiator else hash_r
        return compute(req.prf, req.skeyid, req.g_xi, req.g_xr, req.icookie, req.rcookie,
                       req.sa_i_body, self.id_body)  # fmt: skip

    def sign(self, req: m.SignatureRequest) -> bytes:
        """Our SIG payload data for a vetted request."""
        return sign(self.method, self.key, self.auth_hash(req))
