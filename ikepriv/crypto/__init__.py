"""Cryptography for ikepriv: IKEv1 (RFC 2409) key derivation, hashes, ciphers, IPsec keymat.

Modules, each with its public API in its docstring:

* ``prf``      negotiated hash table, HMAC prf, plain hash, NAT-D, constant-time compare
* ``ciphers``  phase 1 CBC ciphers (AES, 3DES), padding
* ``oakley``   SKEYID*, Ka, HASH_I/HASH_R, Quick Mode/Informational hashes, IV chain
* ``keymat``   phase 2 KEYMAT and the ESP/AH algorithm table (key lengths, XFRM names)
* ``errors``   exception hierarchy
* ``dh``/``groups``  Diffie-Hellman (separate section below)

The functions ``prf.prf`` and ``keymat.keymat`` are not re-exported (they would shadow
their modules); import them from the submodules.

Everything here is pure (no I/O, no randomness): nonces, IVs and secrets come from callers.
"""

from __future__ import annotations

# --- key derivation, hashes, ciphers (prf, ciphers, oakley, keymat, errors) ---
from ikepriv.crypto.ciphers import (
    IKE_CIPHERS,
    CipherSpec,
    IkeCipher,
    key_length_bytes,
    pad_plaintext,
)
from ikepriv.crypto.crypto_errors import (
    CryptoError,
    InvalidInput,
    InvalidKeyLength,
    UnsupportedAlgorithm,
)
from ikepriv.crypto.keymat import (
    AH_TRANSFORMS,
    ESP_CIPHERS,
    INTEGRITY,
    KeymatLayout,
    SaKeys,
    ah_layout,
    derive_sa_keys,
    esp_layout,
)
from ikepriv.crypto.oakley import (
    IvChain,
    Phase1Keys,
    derive_phase1_keys,
    fixed_length_secret,
    hash_i,
    hash_r,
    informational_hash,
    phase1_iv,
    phase2_iv,
    quick_mode_hash1,
    quick_mode_hash2,
    quick_mode_hash3,
    skeyid_psk,
    skeyid_signature,
)
from ikepriv.crypto.prf import (
    HASHES,
    digest,
    digests_equal,
    hash_spec,
    nat_d_hash,
)

__all__ = [
    "AH_TRANSFORMS",
    "ESP_CIPHERS",
    "HASHES",
    "IKE_CIPHERS",
    "INTEGRITY",
    "CipherSpec",
    "CryptoError",
    "IkeCipher",
    "InvalidInput",
    "InvalidKeyLength",
    "IvChain",
    "KeymatLayout",
    "Phase1Keys",
    "SaKeys",
    "UnsupportedAlgorithm",
    "ah_layout",
    "derive_phase1_keys",
    "derive_sa_keys",
    "digest",
    "digests_equal",
    "esp_layout",
    "fixed_length_secret",
    "hash_i",
    "hash_r",
    "hash_spec",
    "informational_hash",
    "key_length_bytes",
    "nat_d_hash",
    "pad_plaintext",
    "phase1_iv",
    "phase2_iv",
    "quick_mode_hash1",
    "quick_mode_hash2",
    "quick_mode_hash3",
    "skeyid_psk",
    "skeyid_signature",
]

# --- Diffie-Hellman (dh.py / groups.py): that helper appends its imports and
# `__all__ += [...]` below this line ---
from ikepriv.crypto.dh import (
    DHError,
    DHPrivateKey,
    RandomBytes,
    generate,
    prepare,
    public_length,
    validate_public,
)
from ikepriv.crypto.groups import GROUPS, DHGroup, EcpGroup, ModpGroup, X25519Group

__all__ += [
    "GROUPS",
    "DHError",
    "DHGroup",
    "DHPrivateKey",
    "EcpGroup",
    "ModpGroup",
    "RandomBytes",
    "X25519Group",
    "generate",
    "prepare",
    "public_length",
    "validate_public",
]
