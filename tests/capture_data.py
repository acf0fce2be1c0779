"""What the tests on the real strongSwan 5.9.8 captures (tests/data/{mm,am}_qm_psk.*) share:
where they are, the pre-shared key they were made with, the Quick Mode DH secrets charon
logged, and readers for the .keys and .pcap files."""

from __future__ import annotations

import tempfile
from pathlib import Path

import dpkt

DATA = Path(__file__).resolve().parent / "data"
PSK = "lab-ikev1-psk-0123456789"

# Quick Mode DH shared secrets (PFS, MODP-2048), from the charon initiator logs
# ("[CHD] DH secret => 256 bytes"); the .keys files only hold the phase 1 secret.
QM_GXY = {
    "mm_qm_psk": (
        "f681df8916c2e504a12a86d4993d24e45def980b2cacdc083807caecd69f54a62db50259dd7d6bb9"
        "c09bcfe711948f394b04b14a6e2af018a83709f162ad9988b768aa3d37f881603b156fe66c2507e3"
        "9f5b24001d46ac6094631bd32b1617be7cfd48d8af33ad2f029a24852b222749e5698a80ad2b0d0d"
        "c12842d66fd56a0c2ca4b2764868e8d85058a3e8d8eac57b3b931cbd88a87a6cdcf96466da82a712"
        "e27443c95ab7e347a0c408cedbd917aa725efb0f2dff5ad5f9da19da0a2b8d616ba4e5e5f6ea41dd"
        "4902fd33a953072261d84035992aaa97fafa5b4328e51b0795aa8a7979b0f2c086d07bf8530ceff4"
        "09c897438d8f79375b001630a3ce32e3"
    ),
    "am_qm_psk": (
        "945e711610a13e76d272a84653958aee4336db9a43f283aae008eb82f4ffa9b2ed67a533ff9ef704"
        "0c18252cef0c7d5038e97d6e256a2cbf25a12ba20d2880542a0def60ae48d3dfff50a8742456b396"
        "b398fdc24b481c01298de12d003e2d17997ab31bdcc358ec048647faa34331a72c0141fc96f14200"
        "41fed9f0339882ad50343707147d7fc46a7848c977306a114cdc44536f27686845e133966e0d5a56"
        "965ecd60ff639a8202894d031b797f6fcff4e8b5c7b04a9b0cd55606537f676f908172dffb54292d"
        "3f8f9e097f4ba24df1adcccef7799327f5bfebaa4922a0b54e8c134dfb3dd2ee1004767dd2b3f612"
        "44e38650f1640a8dcfd42242c5f5fd5e"
    ),
}


def read_keys(name: str) -> dict[str, str]:
    """The key=value lines of a capture's .keys file (comments and log lines skipped)."""
    out = {}
    for line in (DATA / f"{name}.keys").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#") and " " not in key:
            out[key] = value.strip()
    return out


def frames(name: str) -> list[bytes]:
    """The link-layer frames of a capture's .pcap file, in order."""
    with (DATA / f"{name}.pcap").open("rb") as handle:
        return [bytes(buf) for _ts, buf in dpkt.pcap.Reader(handle)]


def secrets_file(args: list[str]) -> list[str]:
    """`--psk X --dh-secret Y ...` as `--secrets FILE` (arguments show in /proc/PID/cmdline)."""
    lines = [f"{args[i][2:]} {args[i + 1]}" for i in range(0, len(args), 2)]
    handle = tempfile.NamedTemporaryFile(
        "w", prefix="ikedump-secrets-", suffix=".txt", delete=False
    )
    with handle:
        handle.write("\n".join(lines) + "\n")
    return ["--secrets", handle.name]
