"""ikedump internals: capture reading, IKEv1 decryption and verification, rendering.

* ``capture``    pcap/pcapng frames -> ISAKMP datagrams on UDP 500/4500 (dpkt containers)
* ``decrypt``    one ISAKMP SA's cipher and IV chain, and every HASH check (the decryption
                 itself is ikepriv.crypto.protected, shared with the negotiator)
* ``session``    follows SAs and exchanges through a capture; records and problems
* ``keys``       command-line secrets and Wireshark's IKEv1 decryption table
* ``render``     JSON objects and text lines
* ``run``        the ikedump program (ikepriv.cli.ikedump is its entry point)

Vendor ID names come from ikepriv.isakmp.vendor_ids, shared with the negotiator.
"""
