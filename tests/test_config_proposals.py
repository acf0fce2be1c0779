"""strongSwan proposal strings parse into the IANA-typed transforms ikepriv negotiates."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ikepriv.config.proposals import (
    AhProposal,
    EspProposal,
    IkeProposal,
    ProposalError,
    parse_ah_proposals,
    parse_esp_proposals,
    parse_ike_proposals,
)
from ikepriv.isakmp.constants import (
    AhTransformId,
    AuthAlgorithm,
    EspTransformId,
    GroupId,
    IkeEncryption,
    IkeHash,
)

AES = IkeEncryption.AES_CBC
SHA256 = AuthAlgorithm.HMAC_SHA2_256
SHA384 = AuthAlgorithm.HMAC_SHA2_384


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("aes128-sha256-modp2048", IkeProposal(AES, 128, IkeHash.SHA2_256, GroupId.MODP_2048)),
        ("aes-sha-modp1024", IkeProposal(AES, 128, IkeHash.SHA, GroupId.MODP_1024)),
        ("aes192-sha1-modp1536", IkeProposal(AES, 192, IkeHash.SHA, GroupId.MODP_1536)),
        ("aes256-sha2_256-ecp256", IkeProposal(AES, 256, IkeHash.SHA2_256, GroupId.ECP_256)),
        ("3des-md5-modp768", IkeProposal(IkeEncryption.TRIPLE_DES_CBC, None, IkeHash.MD5,
                                         GroupId.MODP_768)),
        ("aes256-sha384-ecp384", IkeProposal(AES, 256, IkeHash.SHA2_384, GroupId.ECP_384)),
        ("aes256-sha512-modp8192", IkeProposal(AES, 256, IkeHash.SHA2_512, GroupId.MODP_8192)),
        ("aes256-sha2_512-ecp521", IkeProposal(AES, 256, IkeHash.SHA2_512, GroupId.ECP_521)),
        ("aes128-sha256-x25519", IkeProposal(AES, 128, IkeHash.SHA2_256, GroupId.CURVE25519)),
        ("aes128-sha256-curve25519", IkeProposal(AES, 128, IkeHash.SHA2_256,
                                                 GroupId.CURVE25519)),
        ("aes128-prfsha256-modp3072", IkeProposal(AES, 128, IkeHash.SHA2_256, GroupId.MODP_3072)),
        ("AES128-SHA256-MODP4096", IkeProposal(AES, 128, IkeHash.SHA2_256, GroupId.MODP_4096)),
        ("aes128-sha384-sha2_384-modp6144", IkeProposal(AES, 128, IkeHash.SHA2_384,
                                                        GroupId.MODP_6144)),
    ],
)  # fmt: skip
def test_ike_spellings(text: str, expected: IkeProposal) -> None:
    assert parse_ike_proposals([text]) == (expected,)


def test_ike_cross_product_order_encryption_then_integrity_then_group() -> None:
    got = parse_ike_proposals(["aes128-aes256-sha1-sha256-modp2048-modp1024"])
    assert [p.keyword for p in got] == [
        "aes128-sha1-modp2048",
        "aes128-sha1-modp1024",
        "aes128-sha256-modp2048",
        "aes128-sha256-modp1024",
        "aes256-sha1-modp2048",
        "aes256-sha1-modp1024",
        "aes256-sha256-modp2048",
        "aes256-sha256-modp1024",
    ]


def test_proposal_list_keeps_order_and_drops_duplicates() -> None:
    got = parse_ike_proposals(
        ["aes256-sha256-modp2048", "aes-sha1-modp1024", "aes256-sha2_256-modp2048"]
    )
    assert [p.keyword for p in got] == ["aes256-sha256-modp2048", "aes128-sha1-modp1024"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("aes128gcm16-sha256-modp2048", "AEAD"),
        ("aes128-modp2048", "no integrity"),
        ("sha256-modp2048", "no encryption"),
        ("aes128-sha256", "no DH group"),
        ("aes128-sha256-modp1024s160", "'modp1024s160'"),
        ("blowfish-sha256-modp2048", "'blowfish'"),
        ("aes128--sha256-modp2048", "stray '-'"),
        ("", "empty"),
        ("aes128-sha256-prfsha1-modp2048", "prf algorithms must equal"),
        ("-".join(["aes"] * 40), "more than 32 algorithms"),
        ("aes128-" * 40 + "sha1", "longer than 256 characters"),
    ],
)
def test_ike_invalid(text: str, message: str) -> None:
    with pytest.raises(ProposalError) as info:
        parse_ike_proposals([text])
    assert message in str(info.value)


def test_ike_expansion_is_bounded() -> None:
    with pytest.raises(ProposalError, match="at most"):
        parse_ike_proposals(
            ["aes128-aes192-aes256-md5-sha1-sha256-sha384-modp1024-modp2048-modp3072"]
        )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("aes128-sha256", EspProposal(EspTransformId.AES_CBC, 128, SHA256, None)),
        ("aes-sha1", EspProposal(EspTransformId.AES_CBC, 128, AuthAlgorithm.HMAC_SHA, None)),
        ("aes256-sha512-modp2048", EspProposal(EspTransformId.AES_CBC, 256,
                                               AuthAlgorithm.HMAC_SHA2_512, GroupId.MODP_2048)),
        ("3des-md5", EspProposal(EspTransformId.TRIPLE_DES, None, AuthAlgorithm.HMAC_MD5, None)),
        ("aes192-sha384", EspProposal(EspTransformId.AES_CBC, 192, SHA384, None)),
        ("aes128gcm16", EspProposal(EspTransformId.AES_GCM_16, 128, None, None)),
        ("aes256gcm128", EspProposal(EspTransformId.AES_GCM_16, 256, None, None)),
        ("aes256gcm", EspProposal(EspTransformId.AES_GCM_16, 256, None, None)),
        ("aes128gcm12", EspProposal(EspTransformId.AES_GCM_12, 128, None, None)),
        ("aes192gcm96", EspProposal(EspTransformId.AES_GCM_12, 192, None, None)),
        ("aes256gcm8", EspProposal(EspTransformId.AES_GCM_8, 256, None, None)),
        ("aes128gcm64", EspProposal(EspTransformId.AES_GCM_8, 128, None, None)),
        ("aes256gcm16-ecp384", EspProposal(EspTransformId.AES_GCM_16, 256, None, GroupId.ECP_384)),
        ("aes128-sha256-esn", EspProposal(EspTransformId.AES_CBC, 128, SHA256,
                                          None, esn=True)),
        ("aes128-sha256-noesn", EspProposal(EspTransformId.AES_CBC, 128,
                                            SHA256, None, esn=False)),
    ],
)  # fmt: skip
def test_esp_spellings(text: str, expected: EspProposal) -> None:
    assert parse_esp_proposals([text]) == (expected,)
    assert parse_esp_proposals([expected.keyword]) == (expected,)


def test_esp_aead_flag() -> None:
    gcm, cbc = parse_esp_proposals(["aes128gcm16", "aes128-sha1"])
    assert gcm.aead and not cbc.aead


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("aes128gcm16-sha256", "AEAD cipher (GCM) carries its own integrity"),
        ("aes128", "needs an integrity algorithm"),
        ("aes128-aes128gcm16", "needs an integrity algorithm"),
        ("sha256", "no encryption"),
        ("chacha20poly1305", "'chacha20poly1305'"),  # no IKEv1 peer negotiates it
        ("aes128-sha256_96", "'sha256_96'"),
        ("aes128-prfsha256", "prf keywords belong in IKE proposals"),
    ],
)
def test_esp_invalid(text: str, message: str) -> None:
    with pytest.raises(ProposalError) as info:
        parse_esp_proposals([text])
    assert message in str(info.value)


def test_ah_proposals() -> None:
    got = parse_ah_proposals(["sha256-sha1-modp2048"])
    assert got == (
        AhProposal(AhTransformId.SHA2_256, SHA256, GroupId.MODP_2048),
        AhProposal(AhTransformId.SHA, AuthAlgorithm.HMAC_SHA, GroupId.MODP_2048),
    )
    assert [p.keyword for p in got] == ["sha256-modp2048", "sha1-modp2048"]


def test_ah_refuses_encryption() -> None:
    with pytest.raises(ProposalError, match="cannot appear in an AH proposal"):
        parse_ah_proposals(["aes128-sha256"])


def test_empty_list_refused() -> None:
    with pytest.raises(ProposalError, match="no ESP proposals"):
        parse_esp_proposals([])


def test_every_canonical_spelling_reads_back_to_itself() -> None:
    from itertools import product

    ike = [
        IkeProposal(enc, bits, h, g)
        for (enc, bits), h, g in product(
            [(AES, 128), (AES, 192), (AES, 256), (IkeEncryption.TRIPLE_DES_CBC, None)],
            [IkeHash.MD5, IkeHash.SHA, IkeHash.SHA2_256, IkeHash.SHA2_384, IkeHash.SHA2_512],
            [g for g in GroupId if g not in (GroupId.EC2N_155, GroupId.EC2N_185)],
        )
    ]
    for p in ike:
        assert parse_ike_proposals([p.keyword]) == (p,)
    gcm = [EspTransformId.AES_GCM_8, EspTransformId.AES_GCM_12, EspTransformId.AES_GCM_16]
    esp = [EspProposal(t, b, None, g, e) for t, b, g, e in product(
        gcm, [128, 192, 256], [None, GroupId.ECP_256], [False, True])]  # fmt: skip
    esp += [EspProposal(EspTransformId.AES_CBC, b, i, None) for b, i in product(
        [128, 192, 256], [a for a in AuthAlgorithm if a <= AuthAlgorithm.HMAC_SHA2_512
                          and a not in (AuthAlgorithm.DES_MAC, AuthAlgorithm.KPDK)])]  # fmt: skip
    for e in esp:
        assert parse_esp_proposals([e.keyword]) == (e,)


@given(st.text(alphabet="aes0123456789-gcmdhpsx_nobuA", max_size=80))
def test_arbitrary_strings_give_a_result_or_a_proposal_error(text: str) -> None:
    for parse in (parse_ike_proposals, parse_esp_proposals, parse_ah_proposals):
        try:
            parse([text])
        except ProposalError:
            pass


def test_no_keyword_means_two_things_in_one_proposal_kind() -> None:
    """The parsers sort words into algorithm lists by table; a keyword in two tables
    of one kind would land in both lists."""
    import itertools

    from ikepriv.config import proposals as p

    kinds = (
        (p._IKE_CIPHERS, p._HASHES, p._PRFS, p._GROUPS),
        (p._ESP_CIPHERS, p._INTEGRITY, p._GROUPS, p._ESN),
        (p._INTEGRITY, p._GROUPS, p._ESN),
    )
    for tables in kinds:
        for a, b in itertools.combinations(tables, 2):
            assert not set(a) & set(b)
