"""IANA numbers for ISAKMP/IKEv1 and the IPsec DOI, as tables.

Every other module (codec, crypto, configuration, negotiation, kernel) names algorithms and
payloads through these enums, so a number is written down exactly once. Sources: RFC 2407,
2408, 2409 (Appendix A), 3526, 3602, 3706, 3947, 4106, 4304, 5903, and the IANA "Internet Key
Exchange (IKE) Attributes" and "ISAKMP" registries.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

ISAKMP_VERSION = 0x10  # major 1, minor 0
HEADER_LENGTH = 28
GENERIC_HEADER_LENGTH = 4
NON_ESP_MARKER = b"\x00\x00\x00\x00"  # RFC 3948: precedes IKE on UDP 4500
NATT_KEEPALIVE = b"\xff"  # RFC 3948 section 2.3
IKE_PORT = 500
NATT_PORT = 4500


class ExchangeType(IntEnum):
    NONE = 0
    BASE = 1
    IDENTITY_PROTECTION = 2  # Main Mode
    AUTHENTICATION_ONLY = 3
    AGGRESSIVE = 4
    INFORMATIONAL = 5
    TRANSACTION = 6  # Mode Config
    QUICK_MODE = 32
    NEW_GROUP_MODE = 33


class HeaderFlag(IntFlag):
    NONE = 0
    ENCRYPTION = 0x01
    COMMIT = 0x02
    AUTHENTICATION_ONLY = 0x04


class PayloadType(IntEnum):
    NONE = 0
    SA = 1
    PROPOSAL = 2
    TRANSFORM = 3
    KE = 4
    ID = 5
    CERT = 6
    CR = 7
    HASH = 8
    SIG = 9
    NONCE = 10
    NOTIFY = 11
    DELETE = 12
    VENDOR_ID = 13
    ATTRIBUTE = 14  # Mode Config (draft-dukes-ike-mode-cfg)
    NAT_D = 20  # RFC 3947
    NAT_OA = 21  # RFC 3947
    NAT_D_DRAFT = 130  # draft-ietf-ipsec-nat-t-ike-02/03
    NAT_OA_DRAFT = 131
    FRAGMENT = 132  # IKEv1 fragmentation (Cisco/Microsoft; strongSwan PLV1_FRAGMENT)


class DOI(IntEnum):
    ISAKMP = 0
    IPSEC = 1


class Situation(IntFlag):
    IDENTITY_ONLY = 0x01
    SECRECY = 0x02
    INTEGRITY = 0x04


class ProtocolId(IntEnum):
    ISAKMP = 1
    IPSEC_AH = 2
    IPSEC_ESP = 3
    IPCOMP = 4


class IkeTransformId(IntEnum):
    KEY_IKE = 1


class EspTransformId(IntEnum):
    DES = 2
    TRIPLE_DES = 3
    NULL = 11
    AES_CBC = 12
    AES_CTR = 13
    AES_CCM_8 = 14
    AES_CCM_12 = 15
    AES_CCM_16 = 16
    AES_GCM_8 = 18
    AES_GCM_12 = 19
    AES_GCM_16 = 20
    NULL_AUTH_AES_GMAC = 21
    CAMELLIA = 22


class AhTransformId(IntEnum):
    MD5 = 2
    SHA = 3
    DES = 4
    SHA2_256 = 5
    SHA2_384 = 6
    SHA2_512 = 7


class IkeAttr(IntEnum):
    """Phase 1 SA attribute classes (RFC 2409 Appendix A). B = basic (TV), V = variable."""

    ENCRYPTION_ALGORITHM = 1  # B
    HASH_ALGORITHM = 2  # B
    AUTHENTICATION_METHOD = 3  # B
    GROUP_DESCRIPTION = 4  # B
    GROUP_TYPE = 5  # B
    GROUP_PRIME = 6  # V
    GROUP_GENERATOR_ONE = 7  # V
    GROUP_GENERATOR_TWO = 8  # V
    GROUP_CURVE_A = 9  # V
    GROUP_CURVE_B = 10  # V
    LIFE_TYPE = 11  # B
    LIFE_DURATION = 12  # V (may be sent as TV when it fits)
    PRF = 13  # B
    KEY_LENGTH = 14  # B
    FIELD_SIZE = 15  # B
    GROUP_ORDER = 16  # V


class IkeEncryption(IntEnum):
    DES_CBC = 1
    IDEA_CBC = 2
    BLOWFISH_CBC = 3
    RC5_CBC = 4
    TRIPLE_DES_CBC = 5
    CAST_CBC = 6
    AES_CBC = 7
    CAMELLIA_CBC = 8


class IkeHash(IntEnum):
    MD5 = 1
    SHA = 2
    TIGER = 3
    SHA2_256 = 4
    SHA2_384 = 5
    SHA2_512 = 6


class AuthMethod(IntEnum):
    PRE_SHARED_KEY = 1
    DSS_SIGNATURES = 2
    RSA_SIGNATURES = 3
    RSA_ENCRYPTION = 4
    RSA_ENCRYPTION_REVISED = 5
    ECDSA_SHA256_P256 = 9  # RFC 4754
    ECDSA_SHA384_P384 = 10
    ECDSA_SHA512_P521 = 11
    XAUTH_INIT_PRE_SHARED = 65001
    XAUTH_RESP_PRE_SHARED = 65002
    XAUTH_INIT_RSA = 65005
    XAUTH_RESP_RSA = 65006


SIGNATURE_METHODS = frozenset(
    {
        AuthMethod.RSA_SIGNATURES,
        AuthMethod.ECDSA_SHA256_P256,
        AuthMethod.ECDSA_SHA384_P384,
        AuthMethod.ECDSA_SHA512_P521,
    }
)
"""Methods where the parent signs and the child verifies the peer's certificate
(crypto/signatures.py has how each signs)."""


class GroupId(IntEnum):
    MODP_768 = 1
    MODP_1024 = 2
    EC2N_155 = 3
    EC2N_185 = 4
    MODP_1536 = 5
    MODP_2048 = 14
    MODP_3072 = 15
    MODP_4096 = 16
    MODP_6144 = 17
    MODP_8192 = 18
    ECP_256 = 19
    ECP_384 = 20
    ECP_521 = 21
    CURVE25519 = 31


class GroupType(IntEnum):
    MODP = 1
    ECP = 2
    EC2N = 3


class LifeType(IntEnum):
    SECONDS = 1
    KILOBYTES = 2


class IpsecAttr(IntEnum):
    """Phase 2 SA attribute classes (RFC 2407 section 4.5)."""

    SA_LIFE_TYPE = 1  # B
    SA_LIFE_DURATION = 2  # V
    GROUP_DESCRIPTION = 3  # B
    ENCAPSULATION_MODE = 4  # B
    AUTHENTICATION_ALGORITHM = 5  # B
    KEY_LENGTH = 6  # B
    KEY_ROUNDS = 7  # B
    COMPRESS_DICTIONARY_SIZE = 8  # B
    COMPRESS_PRIVATE_ALGORITHM = 9  # V
    ECN_TUNNEL = 10  # B, RFC 3168
    EXTENDED_SEQUENCE_NUMBER = 11  # B, RFC 4304


class EncapsulationMode(IntEnum):
    TUNNEL = 1
    TRANSPORT = 2
    UDP_ENCAPSULATED_TUNNEL = 3  # RFC 3947
    UDP_ENCAPSULATED_TRANSPORT = 4
    UDP_ENCAPSULATED_TUNNEL_DRAFT = 61443  # draft-ietf-ipsec-nat-t-ike-00..03
    UDP_ENCAPSULATED_TRANSPORT_DRAFT = 61444


class AuthAlgorithm(IntEnum):
    HMAC_MD5 = 1
    HMAC_SHA = 2
    DES_MAC = 3
    KPDK = 4
    HMAC_SHA2_256 = 5
    HMAC_SHA2_384 = 6
    HMAC_SHA2_512 = 7
    HMAC_RIPEMD = 8
    AES_XCBC_MAC = 9
    SIG_RSA = 10
    AES_128_GMAC = 11
    AES_192_GMAC = 12
    AES_256_GMAC = 13


class IdType(IntEnum):
    IPV4_ADDR = 1
    FQDN = 2
    USER_FQDN = 3
    IPV4_ADDR_SUBNET = 4
    IPV6_ADDR = 5
    IPV6_ADDR_SUBNET = 6
    IPV4_ADDR_RANGE = 7
    IPV6_ADDR_RANGE = 8
    DER_ASN1_DN = 9
    DER_ASN1_GN = 10
    KEY_ID = 11
    LIST = 12  # RFC 3554


class CertEncoding(IntEnum):
    PKCS7 = 1
    PGP = 2
    DNS_SIGNED_KEY = 3
    X509_SIGNATURE = 4
    X509_KEY_EXCHANGE = 5
    KERBEROS_TOKENS = 6
    CRL = 7
    ARL = 8
    SPKI = 9
    X509_ATTRIBUTE = 10


class NotifyType(IntEnum):
    """RFC 2408 3.14.1 error types, RFC 2407 4.6.3 status types, RFC 3706 DPD."""

    INVALID_PAYLOAD_TYPE = 1
    DOI_NOT_SUPPORTED = 2
    SITUATION_NOT_SUPPORTED = 3
    INVALID_COOKIE = 4
    INVALID_MAJOR_VERSION = 5
    INVALID_MINOR_VERSION = 6
    INVALID_EXCHANGE_TYPE = 7
    INVALID_FLAGS = 8
    INVALID_MESSAGE_ID = 9
    INVALID_PROTOCOL_ID = 10
    INVALID_SPI = 11
    INVALID_TRANSFORM_ID = 12
    ATTRIBUTES_NOT_SUPPORTED = 13
    NO_PROPOSAL_CHOSEN = 14
    BAD_PROPOSAL_SYNTAX = 15
    PAYLOAD_MALFORMED = 16
    INVALID_KEY_INFORMATION = 17
    INVALID_ID_INFORMATION = 18
    INVALID_CERT_ENCODING = 19
    INVALID_CERTIFICATE = 20
    CERT_TYPE_UNSUPPORTED = 21
    INVALID_CERT_AUTHORITY = 22
    INVALID_HASH_INFORMATION = 23
    AUTHENTICATION_FAILED = 24
    INVALID_SIGNATURE = 25
    ADDRESS_NOTIFICATION = 26
    NOTIFY_SA_LIFETIME = 27
    CERTIFICATE_UNAVAILABLE = 28
    UNSUPPORTED_EXCHANGE_TYPE = 29
    UNEQUAL_PAYLOAD_LENGTHS = 30
    CONNECTED = 16384
    RESPONDER_LIFETIME = 24576
    REPLAY_STATUS = 24577
    INITIAL_CONTACT = 24578
    R_U_THERE = 36136
    R_U_THERE_ACK = 36137


class ModeCfgType(IntEnum):
    """ATTRIBUTE payload message types (draft-dukes-ike-mode-cfg)."""

    REQUEST = 1
    REPLY = 2
    SET = 3
    ACK = 4


class IpProtocol(IntEnum):
    """IP protocol numbers that ID payloads and selectors commonly carry (0 = any)."""

    ANY = 0
    ICMP = 1
    TCP = 6
    UDP = 17
    ESP = 50
    AH = 51
    ICMPV6 = 58
