"""Man pages ike(8), ikedb(8), ikeprivd(8), ikedump(8) and ikepriv.toml(5), generated.

There is no second copy of any text: each page is made, at install time, from what the
program itself prints for --help (the argparse parsers of ikeprivd, ikedb and ikedump, the
USAGE text of ike), the module docstring of its command, and, for ikepriv.toml(5),
docs/tunnel-definitions.md (from $IKEPRIV_DOCS, which deploy/install.sh points at the
checkout's docs/, or from the checkout this module runs from). ike(8) also lists the
Prometheus metric families from ikepriv.cli.metrics.

    python -m ikepriv.cli.manpages OUTDIR      # writes OUTDIR/man8/*.8 and OUTDIR/man5/*.5
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ikepriv.cli import ike, ikedb, ikeprivd, metrics
from ikepriv.dump import run

WIDTH = 80
DOC_NAME = "tunnel-definitions.md"


@dataclass(frozen=True)
class Page:
    name: str
    section: int
    summary: str
    sections: list[tuple[str, str]]  # (heading, roff body)

    @property
    def filename(self) -> str:
        return f"{self.name}.{self.section}"


def _escape(text: str) -> str:
    """Roff-safe text: backslashes, and leading dots or quotes that would be requests."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(
        ("\\&" + line) if line.startswith((".", "'")) else line for line in text.split("\n")
    )


def _verbatim(text: str) -> str:
    return ".nf\n.ft CR\n" + _escape(text.rstrip("\n")) + "\n.ft R\n.fi"


def _help_of(make: Callable[[], argparse.ArgumentParser]) -> str:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(WIDTH)
    try:
        return make().format_help()
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def help_texts() -> dict[str, str]:
    """What `PROG --help` prints, for each command: the one source of the SYNOPSIS."""
    return {
        "ikeprivd": _help_of(ikeprivd._parser),
        "ikedb": _help_of(ikedb._parser),
        "ikedump": _help_of(run._parser),
        "ike": ike.USAGE,
    }


def _docstrings() -> dict[str, str]:
    return {
        "ikeprivd": ikeprivd.__doc__ or "",
        "ikedb": ikedb.__doc__ or "",
        "ikedump": run.__doc__ or "",
        "ike": ike.__doc__ or "",
    }


def definitions_doc() -> str:
    """docs/tunnel-definitions.md: beside this module when installed, else in the checkout."""
    here = Path(__file__).resolve().parent
    docs = os.environ.get("IKEPRIV_DOCS")  # deploy/install.sh: the checkout's docs/
    for candidate in (
        *([Path(docs) / DOC_NAME] if docs else []),
        here / DOC_NAME,
        here.parents[1] / "docs" / DOC_NAME,
    ):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise FileNotFoundError(f"{DOC_NAME} is neither in {here} nor in the checkout's docs/")


def markdown_to_roff(text: str) -> list[tuple[str, str]]:
    """The small Markdown subset of our docs: # headings, ``` blocks, lists, paragraphs.

    Every line of text is kept (only the markup changes), so the page says what the
    document says."""
    sections: list[tuple[str, str]] = []
    heading, in_code = "DESCRIPTION", False
    body: list[str] = []
    code: list[str] = []
    for line in text.splitlines():
        if line.startswith("```"):
            if in_code:
                body.append(_verbatim("\n".join(code)))
                code = []
            in_code = not in_code
            continue
        if in_code:
            code.append(line)
            continue
        if line.startswith("# "):
            continue  # the title: NAME says it
        if line.startswith("#"):
            if body:
                sections.append((heading, "\n".join(body)))
            heading, body = line.lstrip("#").strip().upper(), []
            continue
        if not line.strip():
            body.append(".PP")
        elif re.match(r"\s*[*-] ", line):
            body.append(".IP \\(bu 2\n" + _escape(re.sub(r"^\s*[*-] ", "", line)))
        elif line.startswith("|"):
            body.append(_verbatim(line))
        else:
            body.append(_escape(line.strip()))
    if body:
        sections.append((heading, "\n".join(body)))
    return sections


def _description(doc: str) -> str:
    paragraphs = doc.strip().split("\n\n")[1:]  # the first is the synopsis line
    return "\n.PP\n".join(_escape(p.strip()) for p in paragraphs if p.strip())


def pages() -> list[Page]:
    helps, docs = help_texts(), _docstrings()
    summaries = {
        "ikeprivd": "the ikepriv IKEv1 keying daemon (privileged parent)",
        "ike": "activate, list and remove IKE tunnels (AIX syntax)",
        "ikedb": "put, get and delete ikepriv tunnel definitions",
        "ikedump": "decode and decrypt IKEv1 captures",
    }
    files = (
        ".TP\n/var/lib/ikepriv/tunnels.db\ntunnel definitions and pre\\-shared keys (0600)\n"
        ".TP\n/run/ikepriv/control.sock\ncontrol socket (0600, root only)\n"
        ".TP\n/var/empty/ikepriv\nempty root directory of the negotiator"
    )
    out: list[Page] = []
    for name in ("ikeprivd", "ike", "ikedb", "ikedump"):
        sections = [("SYNOPSIS", _verbatim(helps[name])), ("DESCRIPTION", _description(docs[name]))]
        if name == "ike":
            listing = "\n".join(
                f".TP\n.B {metric}\n{kind}: {_escape(text)}"
                for metric, kind, text in metrics.metric_names()
            )
            sections.append(("METRICS", _description(metrics.__doc__ or "") + "\n" + listing))
        if name != "ikedump":
            sections.append(("FILES", files))
        also = ", ".join(
            f"\\fB{o}\\fR(8)" for o in ("ikeprivd", "ike", "ikedb", "ikedump") if o != name
        )
        sections.append(("SEE ALSO", also + ", \\fBikepriv.toml\\fR(5)"))
        out.append(Page(name, 8, summaries[name], sections))
    toml = markdown_to_roff(definitions_doc())
    toml.append(("SEE ALSO", "\\fBikedb\\fR(8), \\fBike\\fR(8), \\fBikeprivd\\fR(8)"))
    out.append(Page("ikepriv.toml", 5, "ikepriv tunnel definition files", toml))
    return out


def render(page: Page, version: str) -> str:
    date = os.environ.get("SOURCE_DATE_EPOCH")
    day = (
        datetime.datetime.fromtimestamp(int(date), tz=datetime.UTC)
        if date
        else datetime.datetime.now(tz=datetime.UTC)
    ).strftime("%Y-%m-%d")
    head = [
        f'.TH "{page.name.upper()}" "{page.section}" "{day}" "ikepriv {version}" "ikepriv"',
        ".SH NAME",
        f"{_escape(page.name)} \\- {_escape(page.summary)}",
        ".nh",  # no hyphenation: words stay whole, as in --help
        ".ad l",
    ]
    for heading, body in page.sections:
        head += [f".SH {heading}", body]
    return "\n".join(head) + "\n"


def write_all(outdir: Path) -> list[Path]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("ikepriv")
    except PackageNotFoundError:
        ver = "checkout"
    written = []
    for page in pages():
        target = outdir / f"man{page.section}" / page.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render(page, ver), encoding="utf-8")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m ikepriv.cli.manpages OUTDIR", file=sys.stderr)
        return 2
    for path in write_all(Path(args[0])):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
