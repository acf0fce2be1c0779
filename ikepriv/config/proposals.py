"""strongSwan-style proposal strings ("aes128-sha256-modp2048") parsed into typed values.

Operators already write proposals this way for strongSwan, so ikepriv reads the same
keywords (strongSwan's proposal keyword table, restricted to what ikepriv negotiates in
IKEv1). A string names algorithms joined by '-'. IKEv1 carries exactly one algorithm of each
kind per transform, so a string that lists several algorithms of a kind expands into the
cross product, most preferred first: encryption varies slowest, then integrity, then the DH
group, then ESN ("aes128-aes256-sha1-sha256-modp2048" gives aes128-sha1, aes128-sha256,
aes256-sha1, aes256-sha256, each with modp2048). Every expanded proposal has one canonical
spelling (`keyword`), which is what the writer emits, so a file written by `ikedb -g` reads
back to equal values.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ikepriv.isakmp.constants import (
    AhTransformId,
    AuthAlgorithm,
    EspTransformId,
    GroupId,
    IkeEncryption,
    IkeHash,
)

_T = TypeVar("_T")
_V = TypeVar("_V")

MAX_PROPOSAL_CHARS = 256
MAX_TOKENS = 32
MAX_PROPOSALS = 32  # after expansion, per list: bounds the SA payload we build

__all__ = [
    "AhProposal",
    "EspProposal",
    "IkeProposal",
    "ProposalError",
    "keyword_catalogue",
    "parse_ah_proposals",
    "parse_esp_proposals",
    "parse_ike_proposals",
]


class ProposalError(ValueError):
    """A proposal string names an unknown algorithm or an impossible combination."""


# --- keyword tables (spellings as in strongSwan's proposal_keywords_static.txt) -------------

_IKE_CIPHERS: dict[str, tuple[IkeEncryption, int | None]] = {
    "aes128": (IkeEncryption.AES_CBC, 128),  # first spelling of a value is canonical
    "aes": (IkeEncryption.AES_CBC, 128),
    "aes192": (IkeEncryption.AES_CBC, 192),
    "aes256": (IkeEncryption.AES_CBC, 256),
    "3des": (IkeEncryption.TRIPLE_DES_CBC, None),
}

_HASHES: dict[str, IkeHash] = {
    "md5": IkeHash.MD5,
    "sha1": IkeHash.SHA,
    "sha": IkeHash.SHA,
    "sha256": IkeHash.SHA2_256,
    "sha2_256": IkeHash.SHA2_256,
    "sha384": IkeHash.SHA2_384,
    "sha2_384": IkeHash.SHA2_384,
    "sha512": IkeHash.SHA2_512,
    "sha2_512": IkeHash.SHA2_512,
}

# IKEv1 has one hash for both integrity and prf; strongSwan's prf keywords name the same.
_PRFS: dict[str, IkeHash] = {
    "prfmd5": IkeHash.MD5,
    "prfsha1": IkeHash.SHA,
    "prfsha256": IkeHash.SHA2_256,
    "prfsha384": IkeHash.SHA2_384,
    "prfsha512": IkeHash.SHA2_512,
}

_GROUPS: dict[str, GroupId] = {
    "modp768": GroupId.MODP_768,
    "modp1024": GroupId.MODP_1024,
    "modp1536": GroupId.MODP_1536,
    "modp2048": GroupId.MODP_2048,
    "modp3072": GroupId.MODP_3072,
    "modp4096": GroupId.MODP_4096,
    "modp6144": GroupId.MODP_6144,
    "modp8192": GroupId.MODP_8192,
    "ecp256": GroupId.ECP_256,
    "ecp384": GroupId.ECP_384,
    "ecp521": GroupId.ECP_521,
    "curve25519": GroupId.CURVE25519,
    "x25519": GroupId.CURVE25519,
}

_GCM_ICV: dict[str, EspTransformId] = {
    "8": EspTransformId.AES_GCM_8,
    "64": EspTransformId.AES_GCM_8,
    "12": EspTransformId.AES_GCM_12,
    "96": EspTransformId.AES_GCM_12,
    "16": EspTransformId.AES_GCM_16,
    "128": EspTransformId.AES_GCM_16,
    "": EspTransformId.AES_GCM_16,
}

_ESP_CIPHERS: dict[str, tuple[EspTransformId, int | None]] = {
    "aes128": (EspTransformId.AES_CBC, 128),
    "aes": (EspTransformId.AES_CBC, 128),
    "aes192": (EspTransformId.AES_CBC, 192),
    "aes256": (EspTransformId.AES_CBC, 256),
    "3des": (EspTransformId.TRIPLE_DES, None),
    "aes128ctr": (EspTransformId.AES_CTR, 128),  # RFC 3686
    "aes192ctr": (EspTransformId.AES_CTR, 192),
    "aes256ctr": (EspTransformId.AES_CTR, 256),
} | {f"aes{bits}gcm{icv}": (tid, bits) for bits in (128, 192, 256) for icv, tid in _GCM_ICV.items()}

_AEAD = frozenset({EspTransformId.AES_GCM_8, EspTransformId.AES_GCM_12, EspTransformId.AES_GCM_16})

_INTEGRITY: dict[str, AuthAlgorithm] = {
    "md5": AuthAlgorithm.HMAC_MD5,
    "sha1": AuthAlgorithm.HMAC_SHA,
    "sha": AuthAlgorithm.HMAC_SHA,
    "sha256": AuthAlgorithm.HMAC_SHA2_256,
    "sha2_256": AuthAlgorithm.HMAC_SHA2_256,
    "sha384": AuthAlgorithm.HMAC_SHA2_384,
    "sha2_384": AuthAlgorithm.HMAC_SHA2_384,
    "sha512": AuthAlgorithm.HMAC_SHA2_512,
    "sha2_512": AuthAlgorithm.HMAC_SHA2_512,
}

# AH names its transform by the integrity algorithm (RFC 2407 4.4.3 and 4.5).
_AH_TRANSFORM: dict[AuthAlgorithm, AhTransformId] = {
    AuthAlgorithm.HMAC_MD5: AhTransformId.MD5,
    AuthAlgorithm.HMAC_SHA: AhTransformId.SHA,
    AuthAlgorithm.HMAC_SHA2_256: AhTransformId.SHA2_256,
    AuthAlgorithm.HMAC_SHA2_384: AhTransformId.SHA2_384,
    AuthAlgorithm.HMAC_SHA2_512: AhTransformId.SHA2_512,
}

_ESN: dict[str, bool] = {"esn": True, "noesn": False}


def _first_spelling(table: dict[str, _V]) -> dict[_V, str]:
    """Canonical spelling of each value: the first keyword in its table that names it."""
    out: dict[_V, str] = {}
    for word, value in table.items():
        out.setdefault(value, word)
    return out


_IKE_CIPHER_NAME = _first_spelling(_IKE_CIPHERS)
_HASH_NAME = _first_spelling(_HASHES)
_GROUP_NAME = _first_spelling(_GROUPS)
_ESP_CIPHER_NAME = _first_spelling(_ESP_CIPHERS)
_INTEGRITY_NAME = _first_spelling(_INTEGRITY)


def keyword_catalogue() -> dict[str, list[str]]:
    """The canonical keywords of each algorithm kind, in table order: what a user interface
    offers as pick lists (ikedb --schema), so no other place retypes the algorithm tables."""
    aead = [name for (tid, _bits), name in _ESP_CIPHER_NAME.items() if tid in _AEAD]
    return {
        "ike_encryption": list(_IKE_CIPHER_NAME.values()),
        "ike_hash": list(_HASH_NAME.values()),
        "dh_group": list(_GROUP_NAME.values()),
        "esp_encryption": list(_ESP_CIPHER_NAME.values()),
        "esp_aead": aead,
        "integrity": list(_INTEGRITY_NAME.values()),
        "esn": list(_ESN),
    }


def _known(value: object, names: Mapping[_V, str], what: str) -> None:
    if value not in names:
        raise ProposalError(f"{what} {value!r} is not supported")


def _flag(value: object) -> None:
    if type(value) is not bool:
        raise ProposalError("esn must be true or false")


# --- typed proposals --------------------------------------------------------------------


@dataclass(frozen=True)
class IkeProposal:
    """One IKEv1 phase 1 transform: cipher (+ key length in bits), hash (= prf), DH group."""

    encryption: IkeEncryption
    key_length: int | None
    hash: IkeHash
    group: GroupId

    def __post_init__(self) -> None:
        if (self.encryption, self.key_length) not in _IKE_CIPHER_NAME:
            raise ProposalError(f"IKE cipher {self.encryption!r} with key length "
                                f"{self.key_length} is not supported")  # fmt: skip
        _known(self.hash, _HASH_NAME, "IKE hash")
        _known(self.group, _GROUP_NAME, "DH group")

    @property
    def keyword(self) -> str:
        return "-".join(
            (
                _IKE_CIPHER_NAME[(self.encryption, self.key_length)],
                _HASH_NAME[self.hash],
                _GROUP_NAME[self.group],
            )
        )


@dataclass(frozen=True)
class EspProposal:
    """One ESP transform; integrity is None exactly for AEAD ciphers, group None = no PFS."""

    transform: EspTransformId
    key_length: int | None
    integrity: AuthAlgorithm | None
    group: GroupId | None
    esn: bool = False

    def __post_init__(self) -> None:
        if (self.transform, self.key_length) not in _ESP_CIPHER_NAME:
            raise ProposalError(f"ESP cipher {self.transform!r} with key length "
                                f"{self.key_length} is not supported")  # fmt: skip
        if self.aead:
            if self.integrity is not None:
                raise ProposalError("an AEAD cipher (GCM) carries its own integrity")
        elif self.integrity is None:
            raise ProposalError("a non-AEAD cipher needs an integrity algorithm")
        else:
            _known(self.integrity, _INTEGRITY_NAME, "integrity algorithm")
        if self.group is not None:
            _known(self.group, _GROUP_NAME, "DH group")
        _flag(self.esn)

    @property
    def aead(self) -> bool:
        return self.transform in _AEAD

    @property
    def keyword(self) -> str:
        parts = [_ESP_CIPHER_NAME[(self.transform, self.key_length)]]
        if self.integrity is not None:
            parts.append(_INTEGRITY_NAME[self.integrity])
        if self.group is not None:
            parts.append(_GROUP_NAME[self.group])
        if self.esn:
            parts.append("esn")
        return "-".join(parts)


@dataclass(frozen=True)
class AhProposal:
    """One AH transform: the AH transform id and the matching integrity attribute."""

    transform: AhTransformId
    integrity: AuthAlgorithm
    group: GroupId | None
    esn: bool = False

    def __post_init__(self) -> None:
        _known(self.integrity, _INTEGRITY_NAME, "integrity algorithm")
        if self.transform is not _AH_TRANSFORM[self.integrity]:
            raise ProposalError(f"AH transform {self.transform!r} does not match the "
                                f"integrity algorithm {self.integrity!r}")  # fmt: skip
        if self.group is not None:
            _known(self.group, _GROUP_NAME, "DH group")
        _flag(self.esn)

    @property
    def keyword(self) -> str:
        parts = [_INTEGRITY_NAME[self.integrity]]
        if self.group is not None:
            parts.append(_GROUP_NAME[self.group])
        if self.esn:
            parts.append("esn")
        return "-".join(parts)


# --- parsing ------------------------------------------------------------------------------


def _tokens(text: str, what: str) -> list[str]:
    if not text.strip():
        raise ProposalError(f"empty {what} proposal")
    if len(text) > MAX_PROPOSAL_CHARS:
        raise ProposalError(f"{what} proposal longer than {MAX_PROPOSAL_CHARS} characters")
    words = text.strip().lower().split("-")
    if len(words) > MAX_TOKENS:
        raise ProposalError(f"{what} proposal has more than {MAX_TOKENS} algorithms")
    if "" in words:
        raise ProposalError(f"{what} proposal {text!r} has an empty algorithm name (stray '-')")
    out: list[str] = []
    for w in words:  # a repeated keyword adds nothing to the cross product
        if w not in out:
            out.append(w)
    return out


def _words(
    text: str, what: str, tables: Sequence[Mapping[str, object]], accepted: Iterable[Iterable[str]]
) -> list[str]:
    """The proposal's keywords, each known to one of `tables`; the tables of one
    proposal kind share no keyword, so _pick can sort the words by table."""
    words = _tokens(text, what)
    for word in words:
        if not any(word in table for table in tables):
            raise _unknown(word, text, what, accepted)
    return words


def _pick(words: Iterable[str], table: Mapping[str, _T]) -> list[_T]:
    return [table[word] for word in words if word in table]


def _unknown(word: str, text: str, what: str, accepted: Iterable[Iterable[str]]) -> ProposalError:
    hint = ""
    if word in _ESP_CIPHERS and what == "IKE":
        hint = " (AEAD ciphers such as GCM are not defined for IKEv1 phase 1)"
    elif word in _IKE_CIPHERS or word in _ESP_CIPHERS:
        hint = " (an encryption algorithm cannot appear in an AH proposal)"
    elif word in _PRFS:
        hint = " (prf keywords belong in IKE proposals)"
    return ProposalError(
        f"unknown or unsupported algorithm {word!r} in {what} proposal {text!r}{hint}; "
        f"known: {' '.join(name for table in accepted for name in table)}"
    )


def _dedupe(items: Iterable[_T]) -> tuple[_T, ...]:
    seen: list[_T] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return tuple(seen)


def _bounded(items: tuple[_T, ...], what: str) -> tuple[_T, ...]:
    if not items:
        raise ProposalError(f"no {what} proposals given")
    if len(items) > MAX_PROPOSALS:
        raise ProposalError(
            f"{what} proposals expand to {len(items)} transforms; at most {MAX_PROPOSALS}"
        )
    return items


def parse_ike_proposal(text: str) -> tuple[IkeProposal, ...]:
    """One strongSwan IKE proposal string, expanded into IKEv1 phase 1 transforms."""
    accepted = [_IKE_CIPHER_NAME.values(), _HASH_NAME.values(), _GROUP_NAME.values()]
    words = _words(text, "IKE", (_IKE_CIPHERS, _HASHES, _PRFS, _GROUPS), accepted)
    ciphers = _pick(words, _IKE_CIPHERS)
    hashes = _pick(words, _HASHES)
    prfs = _pick(words, _PRFS)
    groups = _pick(words, _GROUPS)
    if prfs and hashes and _dedupe(prfs) != _dedupe(hashes):
        raise ProposalError(
            f"IKE proposal {text!r}: IKEv1 uses one hash as integrity and prf, "
            "so prf algorithms must equal the integrity algorithms"
        )
    hashes = hashes or prfs
    for kind, found in (("encryption", ciphers), ("integrity", hashes), ("DH group", groups)):
        if not found:
            raise ProposalError(f"IKE proposal {text!r} names no {kind} algorithm")
    return _dedupe(
        IkeProposal(enc, bits, h, g)
        for (enc, bits), h, g in itertools.product(_dedupe(ciphers), _dedupe(hashes), groups)
    )


def parse_esp_proposal(text: str) -> tuple[EspProposal, ...]:
    """One strongSwan ESP proposal string, expanded into IKEv1 ESP transforms."""
    accepted = [_ESP_CIPHER_NAME.values(), _INTEGRITY_NAME.values(), _GROUP_NAME.values()]
    words = _words(text, "ESP", (_ESP_CIPHERS, _INTEGRITY, _GROUPS, _ESN), accepted)
    ciphers = _pick(words, _ESP_CIPHERS)
    integs = _pick(words, _INTEGRITY)
    groups = _pick(words, _GROUPS)
    esns = _pick(words, _ESN)
    if not ciphers:
        raise ProposalError(f"ESP proposal {text!r} names no encryption algorithm")
    aead = [c for c in ciphers if c[0] in _AEAD]
    if aead and integs:
        raise ProposalError(
            f"ESP proposal {text!r}: an AEAD cipher (GCM) carries its own integrity; "
            "remove the integrity algorithm or write a separate proposal"
        )
    if len(aead) != len(ciphers) and not integs:
        raise ProposalError(
            f"ESP proposal {text!r}: a non-AEAD cipher needs an integrity algorithm "
            "(for example aes128-sha256)"
        )
    integ_options: list[AuthAlgorithm | None] = list(integs) or [None]
    group_options: list[GroupId | None] = list(groups) or [None]
    return _dedupe(
        EspProposal(tid, bits, integ, group, esn)
        for (tid, bits), integ, group, esn in itertools.product(
            ciphers, integ_options, group_options, esns or [False]
        )
    )


def parse_ah_proposal(text: str) -> tuple[AhProposal, ...]:
    """One strongSwan AH proposal string (integrity algorithms, optional DH group)."""
    accepted = [_INTEGRITY_NAME.values(), _GROUP_NAME.values()]
    words = _words(text, "AH", (_INTEGRITY, _GROUPS, _ESN), accepted)
    integs = _pick(words, _INTEGRITY)
    groups = _pick(words, _GROUPS)
    esns = _pick(words, _ESN)
    if not integs:
        raise ProposalError(f"AH proposal {text!r} names no integrity algorithm")
    group_options: list[GroupId | None] = list(groups) or [None]
    return _dedupe(
        AhProposal(_AH_TRANSFORM[integ], integ, group, esn)
        for integ, group, esn in itertools.product(integs, group_options, esns or [False])
    )


def parse_ike_proposals(texts: Sequence[str]) -> tuple[IkeProposal, ...]:
    """A list of IKE proposal strings, expanded, in order, duplicates dropped."""
    return _bounded(_dedupe(p for t in texts for p in parse_ike_proposal(t)), "IKE")


def parse_esp_proposals(texts: Sequence[str]) -> tuple[EspProposal, ...]:
    """A list of ESP proposal strings, expanded, in order, duplicates dropped."""
    return _bounded(_dedupe(p for t in texts for p in parse_esp_proposal(t)), "ESP")


def parse_ah_proposals(texts: Sequence[str]) -> tuple[AhProposal, ...]:
    """A list of AH proposal strings, expanded, in order, duplicates dropped."""
    return _bounded(_dedupe(p for t in texts for p in parse_ah_proposal(t)), "AH")
