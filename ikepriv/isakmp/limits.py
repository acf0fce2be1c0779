"""Bounds on everything a peer controls in an ISAKMP message.

The values are generous for real IKEv1 traffic (strongSwan, libreswan, Cisco, AIX) and small
enough that a hostile datagram cannot make the child allocate or loop much.
"""

from __future__ import annotations

MAX_MESSAGE_SIZE = 65535  # the 16-bit length field of the header
# Default cap for decode_message/decode_header. Certificate-based Main Mode messages stay well
# under this; larger messages would need IKE fragmentation, which IKEv1 gateways use anyway.
DEFAULT_MAX_MESSAGE_SIZE = 16384

MAX_PAYLOADS = 32  # payloads in one message (or one decrypted chain)
MAX_PROPOSALS = 16  # proposals in one SA payload
MAX_TRANSFORMS = 32  # transforms in one proposal
MAX_ATTRIBUTES = 32  # data attributes in one transform (or RESPONDER-LIFETIME notify)
MAX_ATTRIBUTE_LENGTH = 1024  # variable SA attribute value; an 8192-bit MODP prime is 1024
MAX_CFG_ATTRIBUTES = 64  # attributes in one Mode Config ATTRIBUTE payload
MAX_CFG_ATTRIBUTE_LENGTH = 2048  # one Mode Config attribute value (banners are the longest)
MAX_SPI_SIZE = 16
MAX_DELETE_SPIS = 256
MAX_PADDING = 255  # trailing bytes allowed after a decrypted chain (cipher block padding)
NONCE_MIN = 8  # RFC 2409 section 5: nonce data 8..256 bytes
NONCE_MAX = 256
MAX_NAME_LENGTH = 255  # ID_FQDN / ID_USER_FQDN
MAX_FRAGMENT_NUMBER = 255  # the fragment payload's one-byte number (reassembly caps lower)
