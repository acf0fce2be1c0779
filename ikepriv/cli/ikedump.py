"""`ikedump CAPTURE [--secrets FILE|- | --keys FILE] [--cert FILE]... [--ca FILE]... [--json]`

(`--psk S --dh-secret HEX [--qm-dh-secret HEX]...` still work, with a warning: arguments are
visible to every user in /proc/PID/cmdline.)

Decodes every IKEv1 message on UDP 500/4500 in a pcap or pcapng file and, with keys,
decrypts it and checks every HASH and every signature (RSA, ECDSA: certificate, signature, ID,
chain); see ikepriv.dump.run for options and exit codes.
"""

from __future__ import annotations

from collections.abc import Sequence

from ikepriv.dump.run import main as _main


def main(argv: Sequence[str] | None = None) -> int:
    return _main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
