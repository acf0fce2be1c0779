"""Strict ISAKMP (RFC 2408) / IPsec DOI (RFC 2407) wire codec for IKEv1.

Decoding, for every message the child receives::

    message = decode_message(data)          # data: UDP 500 payload, or UDP 4500 after the marker
    if message.encrypted:
        plaintext = ...decrypt(message.ciphertext)...
        payloads = decode_payload_chain(message.header.next_payload, plaintext,
                                        allow_padding=True)
    else:
        payloads = message.payloads

Every rejection raises IsakmpError(notify, offset, reason), and nothing else escapes the
decoders whatever the bytes. Accepted input re-encodes to identical bytes: reserved fields
must be zero, lengths must match their containers exactly, TV/TLV form and TLV lengths are
kept. Encoding::

    data = encode_message(build_message(icookie, rcookie, ExchangeType.IDENTITY_PROTECTION,
                                        0, [SAPayload.ipsec([...]), VendorIdPayload(vid)]))
    plaintext = encode_payload_chain(payloads)   # next-payload fields computed

Port 4500 framing lives in ikepriv.isakmp.natt_framing; number names in ikepriv.isakmp.names;
bounds in ikepriv.isakmp.limits; IANA numbers in ikepriv.isakmp.constants.
"""

from ikepriv.isakmp.attributes import (
    Attribute,
    ike_attributes,
    ike_attributes_to_dict,
    ike_lifetimes,
    ipsec_attributes,
    ipsec_attributes_to_dict,
    ipsec_lifetimes,
)
from ikepriv.isakmp.header import Header, decode_header, encode_header
from ikepriv.isakmp.id_payload import IdPayload, NatOaPayload
from ikepriv.isakmp.isakmp_error import IsakmpError
from ikepriv.isakmp.message import (
    Message,
    Payload,
    build_encrypted_message,
    build_message,
    decode_message,
    decode_payload_chain,
    encode_message,
    encode_payload_chain,
)
from ikepriv.isakmp.modecfg import AttributePayload
from ikepriv.isakmp.names import (
    attribute_name,
    attribute_value_name,
    notify_type_name,
    number_name,
    payload_type_name,
    transform_id_name,
)
from ikepriv.isakmp.natt_framing import (
    Udp4500Kind,
    add_non_esp_marker,
    classify_4500,
    is_natt_keepalive,
    isakmp_from_udp,
    strip_non_esp_marker,
)
from ikepriv.isakmp.notify import DeletePayload, NotifyPayload
from ikepriv.isakmp.payloads import (
    CertPayload,
    CertRequestPayload,
    HashPayload,
    KePayload,
    NatDPayload,
    NoncePayload,
    SigPayload,
    UnknownPayload,
    VendorIdPayload,
)
from ikepriv.isakmp.sa import Proposal, SAPayload, Transform

__all__ = [
    "Attribute",
    "AttributePayload",
    "CertPayload",
    "CertRequestPayload",
    "DeletePayload",
    "HashPayload",
    "Header",
    "IdPayload",
    "IsakmpError",
    "KePayload",
    "Message",
    "NatDPayload",
    "NatOaPayload",
    "NoncePayload",
    "NotifyPayload",
    "Payload",
    "Proposal",
    "SAPayload",
    "SigPayload",
    "Transform",
    "Udp4500Kind",
    "UnknownPayload",
    "VendorIdPayload",
    "add_non_esp_marker",
    "attribute_name",
    "attribute_value_name",
    "build_encrypted_message",
    "build_message",
    "classify_4500",
    "decode_header",
    "decode_message",
    "decode_payload_chain",
    "encode_header",
    "encode_message",
    "encode_payload_chain",
    "ike_attributes",
    "ike_attributes_to_dict",
    "ike_lifetimes",
    "ipsec_attributes",
    "ipsec_attributes_to_dict",
    "ipsec_lifetimes",
    "is_natt_keepalive",
    "isakmp_from_udp",
    "notify_type_name",
    "number_name",
    "payload_type_name",
    "strip_non_esp_marker",
    "transform_id_name",
]
