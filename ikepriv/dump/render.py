"""Turning records into JSON objects and text lines.

`record_dict` is the one description of a message; the JSON output prints it as is (field
names are part of ikedump's interface: add, never rename) and the text output formats the
same dict, so both always show the same facts.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from ikepriv import isakmp
from ikepriv.dump.session import Record
from ikepriv.dump.signed import SignatureReport
from ikepriv.isakmp.constants import (
    IkeAttr,
    IpsecAttr,
    ModeCfgType,
    NotifyType,
    ProtocolId,
)
from ikepriv.isakmp.fragment import FragmentPayload
from ikepriv.isakmp.vendor_ids import vendor_id_name

Json = dict[str, Any]


def _attribute(protocol: int, attr: isakmp.Attribute) -> Json:
    out: Json = {"type": isakmp.attribute_name(protocol, attr.type), "class": attr.type}
    if isinstance(attr.value, int):
        out["value"] = attr.value
        name = isakmp.attribute_value_name(protocol, attr.type, attr.value)
        if name is not None:
            out["name"] = name
    else:
        out["value_hex"] = attr.value.hex()
        if attr.type in (IkeAttr.LIFE_DURATION, IpsecAttr.SA_LIFE_DURATION) and (
            1 <= len(attr.value) <= 8
        ):
            out["value"] = int.from_bytes(attr.value, "big")
    return out


def _sa(p: isakmp.SAPayload) -> Json:
    return {
        "doi": p.doi,
        "situation": p.situation,
        "proposals": [
            {
                "number": prop.number,
                "protocol": prop.protocol_id.name,
                "spi": prop.spi.hex(),
                "transforms": [
                    {
                        "number": t.number,
                        "id": isakmp.transform_id_name(prop.protocol_id, t.transform_id),
                        "transform_id": t.transform_id,
                        "attributes": [_attribute(prop.protocol_id, a) for a in t.attributes],
                    }
                    for t in prop.transforms
                ],
            }
            for prop in p.proposals
        ],
    }


def _id_value(p: isakmp.IdPayload) -> str:
    try:
        value = p.value
    except ValueError:
        return p.data.hex()
    if isinstance(value, tuple):
        return f"{value[0]}-{value[1]}"
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _id(p: isakmp.IdPayload) -> Json:
    return {
        "id_type": p.id_type.name,
        "protocol": p.protocol,
        "port": p.port,
        "value": _id_value(p),
    }


def _notify(p: isakmp.NotifyPayload) -> Json:
    out: Json = {
        "doi": p.doi,
        "protocol": isakmp.number_name(ProtocolId, p.protocol_id),
        "spi": p.spi.hex(),
        "notify_type": isakmp.notify_type_name(p.notify_type),
        "notify_number": p.notify_type,
        "data": p.data.hex(),
    }
    if p.notify_type in (NotifyType.R_U_THERE, NotifyType.R_U_THERE_ACK) and len(p.data) == 4:
        out["dpd_sequence"] = int.from_bytes(p.data, "big")
    return out


def _delete(p: isakmp.DeletePayload) -> Json:
    return {
        "doi": p.doi,
        "protocol": p.protocol_id.name,
        "spi_size": p.spi_size,
        "spis": [s.hex() for s in p.spis],
    }


def _vendor_id(p: isakmp.VendorIdPayload) -> Json:
    return {"data": p.data.hex(), "name": vendor_id_name(p.data)}


_DataPayload = (
    isakmp.KePayload
    | isakmp.HashPayload
    | isakmp.SigPayload
    | isakmp.NoncePayload
    | isakmp.NatDPayload
)


def _data(p: _DataPayload) -> Json:
    return {"length": len(p.data), "data": p.data.hex()}


def _nat_oa(p: isakmp.NatOaPayload) -> Json:
    return {"id_type": p.id_type.name, "address": str(p.address)}


def _cert(p: isakmp.CertPayload) -> Json:
    return {"encoding": p.encoding, "length": len(p.data), "data": p.data.hex()}


def _cr(p: isakmp.CertRequestPayload) -> Json:
    return {"encoding": p.encoding, "authority": p.authority.hex()}


def _modecfg(p: isakmp.AttributePayload) -> Json:
    return {
        "cfg_type": isakmp.number_name(ModeCfgType, p.cfg_type),
        "identifier": p.identifier,
        "attributes": [
            {"class": a.type, "value": a.value}
            if isinstance(a.value, int)
            else {"class": a.type, "value_hex": a.value.hex()}
            for a in p.attributes
        ],
    }


def _fragment(p: FragmentPayload) -> Json:
    # one slice of a larger message; ikedump shows it as such (it does not reassemble)
    return {"fragment_id": p.fragment_id, "number": p.number, "last": p.last, "length": len(p.data)}


def _unknown(p: isakmp.UnknownPayload) -> Json:
    return {"length": len(p.body), "data": p.body.hex()}


# Payload class -> its fields. Every class the codec produces is listed.
_PAYLOAD_FIELDS: dict[type, Callable[[Any], Json]] = {
    isakmp.SAPayload: _sa,
    isakmp.KePayload: _data,
    isakmp.IdPayload: _id,
    isakmp.CertPayload: _cert,
    isakmp.CertRequestPayload: _cr,
    isakmp.HashPayload: _data,
    isakmp.SigPayload: _data,
    isakmp.NoncePayload: _data,
    isakmp.NotifyPayload: _notify,
    isakmp.DeletePayload: _delete,
    isakmp.VendorIdPayload: _vendor_id,
    isakmp.AttributePayload: _modecfg,
    isakmp.NatDPayload: _data,
    isakmp.NatOaPayload: _nat_oa,
    FragmentPayload: _fragment,
    isakmp.UnknownPayload: _unknown,
}


def payload_dict(payload: isakmp.Payload) -> Json:
    out: Json = {"type": isakmp.payload_type_name(payload.payload_type)}
    out.update(_PAYLOAD_FIELDS[type(payload)](payload))
    return out


def signature_dict(report: SignatureReport | None) -> Json | None:
    """The checks of a SIG payload: which certificate, and each check's outcome (ok true,
    false, or null when it could not be made: `text` says what is missing)."""
    if report is None:
        return None
    return {
        "label": report.label,
        "method": report.method.name,
        "certificate": None
        if report.subject is None
        else {"subject": report.subject, "issuer": report.issuer, "source": report.source},
        "checks": [{"check": o.check, "ok": o.ok, "text": o.text} for o in report.outcomes],
    }


def record_dict(record: Record) -> Json:
    dg = record.datagram
    out: Json = {
        "frame": dg.frame,
        "time": dg.time,
        "src": str(dg.src),
        "sport": dg.sport,
        "dst": str(dg.dst),
        "dport": dg.dport,
        "length": len(dg.message),
    }
    header = record.header
    if header is not None:
        out.update(
            exchange=header.exchange_type.name,
            exchange_type=int(header.exchange_type),
            flags=[f.name for f in type(header.flags) if f and f in header.flags],
            message_id=f"{header.message_id:08x}",
            icookie=header.icookie.hex(),
            rcookie=header.rcookie.hex(),
            encrypted=header.encrypted,
        )
    out["ikev2"] = record.ikev2
    out["retransmission_of"] = record.retransmission_of
    out["decrypted"] = record.decrypted
    if record.ciphertext_length:
        out["ciphertext_length"] = record.ciphertext_length
        out["padding"] = record.padding
    out["payloads"] = [payload_dict(p) for p in record.payloads]
    out["checks"] = list(record.checks)
    out["phase1_keys"] = {k: v.hex() for k, v in record.phase1_keys.items()}
    out["ipsec_keys"] = [
        {
            "protocol": k.protocol,
            "spi": k.spi.hex(),
            "src": str(k.src),
            "dst": str(k.dst),
            "cipher": k.cipher,
            "enc_key": k.enc_key.hex(),
            "integrity": k.integrity,
            "integ_key": k.integ_key.hex(),
        }
        for k in record.sa_keys
    ]
    out["signature"] = signature_dict(record.signature)
    out["notes"] = list(record.notes)
    out["problems"] = [
        {"reason": p.reason, "offset": p.offset, "text": str(p)} for p in record.problems
    ]
    return out


# --- text --------------------------------------------------------------------------------


def _endpoint(address: str, port: int) -> str:
    return (
        f"[{address}]:{port}"
        if ipaddress.ip_address(address).version == 6
        else (f"{address}:{port}")
    )


def _attr_text(a: Json) -> str:
    if "name" in a:
        return f"{a['type']}={a['name']}"
    if "value" in a:
        return f"{a['type']}={a['value']}"
    return f"{a['type']}=0x{a['value_hex']}"


def _sa_text(p: Json) -> list[str]:
    lines = [f"SA doi={p['doi']} situation={p['situation']:#x}"]
    for prop in p["proposals"]:
        spi = f" spi={prop['spi']}" if prop["spi"] else ""
        lines.append(f"  proposal #{prop['number']} {prop['protocol']}{spi}")
        for t in prop["transforms"]:
            attrs = " ".join(_attr_text(a) for a in t["attributes"])
            lines.append(f"    transform #{t['number']} {t['id']} {attrs}".rstrip())
    return lines


def _notify_text(p: Json) -> list[str]:
    extra = f" seq={p['dpd_sequence']}" if "dpd_sequence" in p else ""
    data = f" data={p['data']}" if p["data"] and not extra else ""
    return [
        f"NOTIFY {p['notify_type']} ({p['notify_number']}) protocol={p['protocol']} "
        f"spi={p['spi'] or '-'}{extra}{data}"
    ]


def _simple(label: str, keys: tuple[str, ...]) -> Callable[[Json], list[str]]:
    def render(p: Json) -> list[str]:
        return [" ".join([label, *(f"{k}={p[k]}" for k in keys)])]

    return render


def _vid_text(p: Json) -> list[str]:
    return [f"VID {p['data']}" + (f" ({p['name']})" if p["name"] else "")]


def _ke_text(p: Json) -> list[str]:
    return [f"KE length={p['length']}"]


def _modecfg_text(p: Json) -> list[str]:
    attrs = " ".join(f"{a['class']}={a.get('value', a.get('value_hex'))}" for a in p["attributes"])
    return [f"ATTRIBUTE {p['cfg_type']} id={p['identifier']} {attrs}".rstrip()]


_TEXT: dict[str, Callable[[Json], list[str]]] = {
    "SA": _sa_text,
    "KE": _ke_text,
    "ID": _simple("ID", ("id_type", "protocol", "port", "value")),
    "HASH": _simple("HASH", ("data",)),
    "SIG": _simple("SIG", ("length", "data")),
    "NONCE": _simple("NONCE", ("length", "data")),
    "NOTIFY": _notify_text,
    "DELETE": _simple("DELETE", ("protocol", "spi_size", "spis")),
    "VENDOR_ID": _vid_text,
    "NAT_D": _simple("NAT-D", ("data",)),
    "NAT_D_DRAFT": _simple("NAT-D(draft)", ("data",)),
    "NAT_OA": _simple("NAT-OA", ("id_type", "address")),
    "NAT_OA_DRAFT": _simple("NAT-OA(draft)", ("id_type", "address")),
    "CERT": _simple("CERT", ("encoding", "length")),
    "CR": _simple("CR", ("encoding", "authority")),
    "ATTRIBUTE": _modecfg_text,
    "FRAGMENT": _simple("FRAGMENT", ("fragment_id", "number", "last", "length")),
}


def record_text(record: Record) -> list[str]:
    d = record_dict(record)
    head = (
        f"frame {d['frame']}  {_endpoint(d['src'], d['sport'])} -> "
        f"{_endpoint(d['dst'], d['dport'])}  {d['length']} bytes"
    )
    lines = [head]
    if "exchange" in d:
        flags = ",".join(d["flags"]) or "-"
        lines.append(
            f"  {d['exchange']} mid={d['message_id']} flags={flags} "
            f"icookie={d['icookie']} rcookie={d['rcookie']}"
        )
    if d["retransmission_of"] is not None:
        lines.append(f"  retransmission of frame {d['retransmission_of']}")
    if d.get("ciphertext_length"):
        state = f"decrypted, {d['padding']} bytes padding" if d["decrypted"] else "not decrypted"
        lines.append(f"  encrypted body {d['ciphertext_length']} bytes ({state})")
    for p in d["payloads"]:
        render = _TEXT.get(p["type"])
        body = render(p) if render else [f"{p['type']} length={p['length']} data={p['data']}"]
        lines.extend("  " + line for line in body)
    for name, value in d["phase1_keys"].items():
        lines.append(f"  key {name} {value}")
    for k in d["ipsec_keys"]:
        lines.append(f"  {k['protocol']} SA {k['src']} -> {k['dst']} spi={k['spi']}")
        if k["cipher"]:
            lines.append(f"    enc {k['cipher']} {k['enc_key']}")
        if k["integrity"]:
            lines.append(f"    integ {k['integrity']} {k['integ_key']}")
    sig = d["signature"]
    if sig is not None and sig["certificate"] is not None:
        cert = sig["certificate"]
        lines.append(f"  {sig['label']} {sig['method']} certificate {cert['subject']} "
                     f"(issuer {cert['issuer']}; from {cert['source']})")  # fmt: skip
    lines.extend(f"  check {c}" for c in d["checks"])
    lines.extend(f"  note: {n}" for n in d["notes"])
    lines.extend(f"  PROBLEM {p['text']}" for p in d["problems"])
    return lines
