"""Published IKEv1 key-derivation vectors.

Sources:
* NIST CAVP "IKEv1 KDF" (SP 800-135) samples, as used by libreswan's CAVP test driver and by
  NSS's pk11_ike_unittest (SHA-1, SHA-256, SHA-384): SKEYID for signatures and for
  pre-shared keys, SKEYID_d/_a/_e.
* NSS's RFC 2409 Appendix B vectors (encryption key expansion) and its KEYMAT-style
  expansion vectors (K1 = prf(key, seed), Kn = prf(key, Kn-1 | seed)) with seed 0x00.
* NIST SP 800-38A F.2 (AES-CBC), for the phase 1 cipher.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ikepriv.crypto import oakley
from ikepriv.crypto.ciphers import IkeCipher
from ikepriv.crypto.keymat import expand_keymat
from ikepriv.isakmp.constants import IkeEncryption, IkeHash

h = bytes.fromhex


@dataclass(frozen=True)
class SigVector:
    alg: IkeHash
    gxy: str
    ni: str
    nr: str
    cky_i: str
    cky_r: str
    skeyid: str
    skeyid_d: str
    skeyid_a: str
    skeyid_e: str


# Signature-authentication chain (SKEYID = prf(Ni_b | Nr_b, g^xy), then d/a/e).
# In the CAVP files SKEYID and its children come from separate samples with different
# nonces/cookies but the same SKEYID and g^xy, so both sets are kept.
SIG_VECTORS = [
    SigVector(
        IkeHash.SHA,
        gxy="8ba4cbc73c0187301dc19a975823854dbd641c597f637f8d053a83b9514673eb",
        ni="69a62284195f1680",
        nr="80c94ba25c8abda5",
        cky_i="8c3bcd3a69831d7f",
        cky_r="d2d9a7ff4fbe95a7",
        skeyid="707197817fb2d90cf54d1842606bdea59b9f4823",
        skeyid_d="384be709a8a5e63c3ed160cfe3921c4b37d5b32d",
        skeyid_a="48b327575abe3adba0f279849e289022a13e2b47",
        skeyid_e="a4a415c8e0c38c0da847c356cc61c24df8025560",
    ),
    SigVector(
        IkeHash.SHA2_256,
        gxy="a1ff3dc6cf9b4c04709943cb4ca1f1789bcf360b03f1d027de3ae8ee039e9155",
        ni=(
            "b1dee62505b47b223bae14ce7a5b757402ad1587511618d09f94950d47f1d8d4ce86aca12"
            "d78db9854d86019ad735757ae79d8932ac0c7db842c85060150ca875ea5d47e3cfcb2a059"
            "22ebb7959d49b9797a2289676ee79a1d9a18b790f87e4771ddaf4be3376057a553162f68f"
            "e429aca73b07234543801ba2122b1bde82251770d05df813cf556a11ca4dc43ffcb85a97d"
            "bed16e2fda6985e07e31be6364899e63c507c7c616e5eb7765a53560f76772de43918ba07"
            "badfe85244dcdcd917cb065afb60e3b7e68b54dd94bfc7c31c8b752892781ed3cc4b7f28f"
            "bc0ab9af908f5ae1f09f893f80100a7b3135993161b51fbba3bbb24b9f88c6147de82cd6f"
            "0"
        ),
        nr=(
            "f0acfef2ad1f7add0eaafda78c1cf1097d9fc91cb04a7c145069ac426fd164cbe661b1dd2"
            "df0fb84e19512181f0d8ea50b7860845f332757a8e56d2a3b7be436b5718a2d49baa996a4"
            "616684a208c2d611cd65e605dca6e3d3f116859b4410fe13679696bb2e23c08a40c7e1316"
            "d54b4c9c0286701c221151b3642cb4112ca1a53e0e597a7e29c634caed86ca3c31973d37b"
            "4c346134fd6784cd99913feedf3d29d89a0a02a5a750f02f5738109dcc670bb27701fb59f"
            "78e83b76860c3fec079a1fc8c937ddb58ae7500422b7e49ce63759c65b6bc439381d56bcc"
            "159edede894b073841036ebfa050a5b3e7c876a3f18def26b1768a263ac66c9d83b680eb5"
            "e"
        ),
        cky_i="6c6beb72631ddc3d",
        cky_r="b84e24b22cffbd14",
        skeyid="750c5c94b9c2ec20b68033e024dadf0fa87e8b48c6561b21c72478451a06583d",
        skeyid_d="a4f7ca7de913814813e3312099e7c943bd293483f387532330237f1b20957310",
        skeyid_a="1d4b705746c43b0a6fcbb8db33983c0f24ff6f8b6543e3779fed227c6067f004",
        skeyid_e="03e6f16cd9ce9f64b5cdc5b34cca7163483ba5389a30afebef3d14640b0a815e",
    ),
    SigVector(
        IkeHash.SHA2_384,
        gxy="1724dbd893523764bfef8c6fa927856fccfb77ae254358cce29c2769a32915c1",
        ni="cec89d845add83ef",
        nr="cebd43ab71d17db9",
        cky_i="1c8aba986a00af0f",
        cky_r="b049d9672f73c920",
        skeyid=(
            "6e4514610bf82d0ab7bf0260096f6146a153c712071abb633ced813c572156c7"
            "83e36874a65a64690ca701d40d56ea18"
        ),
        skeyid_d=(
            "b083234e9ed7745911f93eb31faa66fcf88906266830eb17ef166d295cb1f86a"
            "3543b8b8efa5df918533df537e9c809c"
        ),
        skeyid_a=(
            "938295a374aceb4147a8024c9a007dd313403fd8fd7070dbd0cfbe1ccd308dbf"
            "bb7b9e9c64049e4df44ff551016cb7b5"
        ),
        skeyid_e=(
            "8595b249dc1fa8599729f87eb6b9dd13bfbfdfd4f9ebd78929bab6ecc402539a"
            "d32cb6e7ef4ba6a0f53da14e4df07ed4"
        ),
    ),
]


@pytest.mark.parametrize("v", SIG_VECTORS, ids=lambda v: v.alg.name)
def test_signature_skeyid_chain(v: SigVector) -> None:
    skeyid = oakley.skeyid_signature(v.alg, h(v.ni), h(v.nr), h(v.gxy))
    assert skeyid.hex() == v.skeyid
    keys = oakley.derive_phase1_keys(v.alg, skeyid, h(v.gxy), h(v.cky_i), h(v.cky_r), 16)
    assert keys.skeyid_d.hex() == v.skeyid_d
    assert keys.skeyid_a.hex() == v.skeyid_a
    assert keys.skeyid_e.hex() == v.skeyid_e


# (alg, psk, Ni, Nr, SKEYID)
PSK_SKEYID = [
    (IkeHash.SHA, "c0", "03a6f25a83c8c2a3", "9d958a6618f77e7f",
     "ab3be41bc62f2ef0c41a3076d58768be77fadd2e"),
    (IkeHash.SHA2_256, "a0", "ead9ced494868f41", "f1aff4f425a94f18",
     "558a99b299773d267cf7c8ef073bf3b7af362c206c75a538403c5ef884d4cace"),
    (IkeHash.SHA2_384, "9e", "d6596b7e5b398534", "136fbdfa8d0ceb8e",
     "b54fa27cb4251051e44a659d73591845691d11f1874bf4e4088e5df6462d28e5"
     "7a3a2af3ab4f9b746a8f5766f8785f2b"),
]  # fmt: skip


@pytest.mark.parametrize(("alg", "psk", "ni", "nr", "skeyid"), PSK_SKEYID)
def test_psk_skeyid(alg: IkeHash, psk: str, ni: str, nr: str, skeyid: str) -> None:
    assert oakley.skeyid_psk(alg, h(psk), h(ni), h(nr)).hex() == skeyid


def test_psk_full_chain_cavp_sha1() -> None:
    """The CAVP PSK sample that libreswan's test suite publishes with its whole chain."""
    skeyid = oakley.skeyid_psk(IkeHash.SHA, h("75"), h("b9a2d0e922dc66dd"), h("2130166863b5ddef"))
    assert skeyid.hex() == "62b04d112877e442fc3282fc37c076997718a0b9"
    gxy = h("739003ba2c11c982946c65e26acf661fbf8ebb78011a9fead79efa12fe3e71cc")
    keys = oakley.derive_phase1_keys(
        IkeHash.SHA, skeyid, gxy, h("83d374c30b3b5082"), h("5afc0da06c728029"), 24
    )
    assert keys.skeyid_d.hex() == "369e5aad1bdb5faf6a3d929d500cdc236710a9ab"
    assert keys.skeyid_a.hex() == "588e957d8d790d093b3a39f121473473af78e9bb"
    assert keys.skeyid_e.hex() == "cd74b0c048219db81384d3fda8f6cda51e398a2b"
    # 3DES needs 24 bytes > 20: Appendix B expansion, so Ka is not a prefix of SKEYID_e.
    assert len(keys.enc_key) == 24
    assert bytes(keys.enc_key) == bytes(
        oakley.expand_encryption_key(IkeHash.SHA, keys.skeyid_e, 24)
    )
    assert keys.enc_key[:20] != keys.skeyid_e


# RFC 2409 Appendix B (Ka expansion): (alg, SKEYID_e, length, expected Ka)
APPENDIX_B = [
    (IkeHash.SHA, "63e81194946ebd05df7df5ebf5d8750056bf1f1d", 132,
     "933347a07de5782247dd36d1562ffe0eecade1eb4134165257e3af1000af8ae3f16506382"
     "8cbb60d910b7db38fa3c7f62c4afaaf3203da065c841729853edb23e9e7ac8286ae65c8cb"
     "6c667d79268c0bd6705abb9131698eb822b1c1f9dd142fc7be2c1010ee0152e10195add98"
     "999c6b6d42c8fe9c1b134d56ad5f2c6f20e815bd25c52"),
    (IkeHash.SHA, "63e81194946ebd05df7df5ebf5d8750056bf1f1d", 40,
     "933347a07de5782247dd36d1562ffe0eecade1eb4134165257e3af1000af8ae3f16506382"
     "8cbb60d"),
    (IkeHash.SHA, "63e81194946ebd05df7df5ebf5d8750056bf1f1d", 15,
     "63e81194946ebd05df7df5ebf5d875"),
    (IkeHash.SHA2_256, "5f00d1bd2c58ec224b1e6b71fa0f19a1faa7a193952c444411b47c1a9d8ba6fe", 132,
     "b10fff32cbeaa1e7afe6ab0b191e0bd63cd524849a4b56019146d232a24cf9af6b89494d2"
     "a360b06825db8bb0324c15cecf47fc0bc99e39bf1171a7f4bf1733dc49ef64c642e73b054"
     "b2e82456e34fa3c822da475e27e403b3da3929da50e6aa9e7f9252c68fa069b4b0edd374e"
     "80d35378c4f5e8ec285a1b169c92bbb5353d05ba94165"),
    (IkeHash.SHA2_256, "5f00d1bd2c58ec224b1e6b71fa0f19a1faa7a193952c444411b47c1a9d8ba6fe", 32,
     "5f00d1bd2c58ec224b1e6b71fa0f19a1faa7a193952c444411b47c1a9d8ba6fe"),
    (IkeHash.SHA2_256, "5f00d1bd2c58ec224b1e6b71fa0f19a1faa7a193952c444411b47c1a9d8ba6fe", 15,
     "5f00d1bd2c58ec224b1e6b71fa0f19"),
    (IkeHash.SHA2_384,
     "69fe7a1ac94adaeb711295f5fe004b1a8d6a0b65d05692758ce8ad2f7a45f59d7d0b596f51f7dfcf3330061888f6a94f",
     132,
     "9b9a56a512cc2c5d5bcee66d03974f2701d4634b3241df132b1d2fd31fb23f003969dd787"
     "3425f771aae298871672cbfc908596c4d18165331b9fdff350cff787e700a140e123f2066"
     "d8d8527f53e701d23abdb3b0bc713109e33dc233c6989fa64b95720495c859505c5c7a748"
     "7778aab59365dafe60c7264ccde55829f60143a4bb095"),
    (IkeHash.SHA2_384,
     "69fe7a1ac94adaeb711295f5fe004b1a8d6a0b65d05692758ce8ad2f7a45f59d7d0b596f51f7dfcf3330061888f6a94f",
     48,
     "69fe7a1ac94adaeb711295f5fe004b1a8d6a0b65d05692758ce8ad2f7a45f59d7d0b596f51f7dfcf3330061888f6a94f"),
]  # fmt: skip


@pytest.mark.parametrize(("alg", "skeyid_e", "length", "ka"), APPENDIX_B)
def test_appendix_b_encryption_key(alg: IkeHash, skeyid_e: str, length: int, ka: str) -> None:
    out = oakley.expand_encryption_key(alg, h(skeyid_e), length)
    assert isinstance(out, bytearray)
    assert out.hex() == ka


# KEYMAT-style expansion with seed 0x00: (alg, key, length, expected). Unlike Appendix B,
# a request that fits in one block still yields prf(key, seed), not the key itself.
KEYMAT_EXPANSION = [
    (IkeHash.SHA, "63e81194946ebd05df7df5ebf5d8750056bf1f1d", 132,
     "933347a07de5782247dd36d1562ffe0eecade1ebaeaa476a5f578c34a9b2b7101a621202f"
     "61db924c5ef9efa3bb2698095841603b7ac8a880329a927ecd4ad53a944b607a5ac2f3d15"
     "4e2748c188d7370d76be83fc204fdacf0f66b99dd760ba619ffac65eda1420c8a936dac5a"
     "599afaf4043b29ef2b65dc042724355b550875316c6fd"),
    (IkeHash.SHA, "63e81194946ebd05df7df5ebf5d8750056bf1f1d", 15,
     "933347a07de5782247dd36d1562ffe"),
    (IkeHash.SHA2_256, "5f00d1bd2c58ec224b1e6b71fa0f19a1faa7a193952c444411b47c1a9d8ba6fe", 132,
     "b10fff32cbeaa1e7afe6ab0b191e0bd63cd524849a4b56019146d232a24cf9af59f18ed9a"
     "abbb2dbbafecf48d72a34a8f72fab2ff4f37e5c917288a78ce00933612e9531a7469995c7"
     "f7cc33c7627cac3efbc819330c4fe3bfa3788799630f37bcb74800d82bbebd17b1906e304"
     "a786f4f810c266c15be1a30576039c293272748d65966"),
    (IkeHash.SHA2_256, "5f00d1bd2c58ec224b1e6b71fa0f19a1faa7a193952c444411b47c1a9d8ba6fe", 32,
     "b10fff32cbeaa1e7afe6ab0b191e0bd63cd524849a4b56019146d232a24cf9af"),
    (IkeHash.SHA2_384,
     "69fe7a1ac94adaeb711295f5fe004b1a8d6a0b65d05692758ce8ad2f7a45f59d7d0b596f51f7dfcf3330061888f6a94f",
     132,
     "9b9a56a512cc2c5d5bcee66d03974f2701d4634b3241df132b1d2fd31fb23f003969dd787"
     "3425f771aae298871672cbf0e0b966f3e961d3d94c2205decc285afae5aad6abe9ca6f5fb"
     "8420fb940bc7760c63c45bd577f561f3643fc98bff8e26663f40f225865e79cca504f527f"
     "abcfc24bd1ba8e2dbd022120f0fd9fb2caa28b031607b"),
]  # fmt: skip


@pytest.mark.parametrize(("alg", "key", "length", "expected"), KEYMAT_EXPANSION)
def test_keymat_expansion(alg: IkeHash, key: str, length: int, expected: str) -> None:
    assert expand_keymat(alg, h(key), b"\x00", length).hex() == expected


def test_aes_cbc_sp800_38a() -> None:
    """SP 800-38A F.2.1/F.2.2 (CBC-AES128), first two blocks, chained through one call."""
    cipher = IkeCipher(IkeEncryption.AES_CBC, h("2b7e151628aed2a6abf7158809cf4f3c"))
    iv = h("000102030405060708090a0b0c0d0e0f")
    pt = h("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51")
    ct = h("7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2")
    assert cipher.encrypt(iv, pt) == ct
    assert cipher.decrypt(iv, ct) == pt
    # CBC chaining across messages: the second block alone, with the first block as IV.
    assert cipher.decrypt(ct[:16], ct[16:]) == pt[16:]
