"""The `ike` grammar: every accepted form gives exactly one control request; every mistake
gives one line on stderr, exit status 2, no traceback, and nothing sent anywhere."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ikepriv.cli import ike
from ikepriv.cli.ike_args import MAX_NUMBER, UsageError, parse_args, parse_numlist
from ikepriv.ipc.messages import (
    MAX_LIST_ITEMS,
    ActivateRequest,
    ListRequest,
    NumRange,
    Phase,
    RemoveRequest,
    Role,
    StatsRequest,
)

A = ipaddress.ip_address


def R(first: int, last: int | None = None) -> NumRange:
    return NumRange(first, first if last is None else last)


def activate(**kw: object) -> ActivateRequest:
    base: dict[str, object] = dict(
        phase=Phase.ALL, numlist=(), namelist=(), remid=None, src=None, dst=None, autostart=False
    )
    return ActivateRequest(**(base | kw))  # type: ignore[arg-type]


def listing(**kw: object) -> ListRequest:
    base: dict[str, object] = dict(
        phase=Phase.ALL, numlist=(), db=False, role=None, verbose=False, json=False
    )
    return ListRequest(**(base | kw))  # type: ignore[arg-type]


def remove(**kw: object) -> RemoveRequest:
    base: dict[str, object] = dict(phase=Phase.ALL, numlist=(), db=False)
    return RemoveRequest(**(base | kw))  # type: ignore[arg-type]


ACCEPTED: list[tuple[str, object]] = [
    # activate
    ("cmd=activate", activate()),
    ("cmd=activate phase=1", activate(phase=Phase.PHASE1)),
    ("cmd=activate phase=2 numlist=3", activate(phase=Phase.PHASE2, numlist=(R(3),))),
    ("cmd=activate numlist=1,3-5,9", activate(numlist=(R(1), R(3, 5), R(9)))),
    ("cmd=activate numlist=9,1-2", activate(numlist=(R(9), R(1, 2)))),  # order kept
    ("cmd=activate numlist=007", activate(numlist=(R(7),))),
    (f"cmd=activate numlist=1-{MAX_NUMBER}", activate(numlist=(R(1, MAX_NUMBER),))),
    ("cmd=activate namelist=to-siteB", activate(namelist=("to-siteB",))),
    (
        "cmd=activate namelist=to-siteB,lanA-lanB,gw.b@x:1+2/3_4",
        activate(namelist=("to-siteB", "lanA-lanB", "gw.b@x:1+2/3_4")),
    ),
    ("cmd=activate remid=gw-b.example.org", activate(remid="gw-b.example.org")),
    ("cmd=activate remid=admin@example.org", activate(remid="admin@example.org")),
    ("cmd=activate remid=198.51.100.7", activate(remid="198.51.100.7")),
    ("cmd=activate remid=2001:DB8::0:7", activate(remid="2001:db8::7")),  # canonical form
    ("cmd=activate remid=@192.0.2.9", activate(remid="@192.0.2.9")),  # FQDN forced
    (
        "cmd=activate ipaddr=192.0.2.1,198.51.100.2",
        activate(src=A("192.0.2.1"), dst=A("198.51.100.2")),
    ),
    (
        "cmd=activate ipaddr=2001:db8::1,2001:DB8::2 phase=1 numlist=4",
        activate(
            phase=Phase.PHASE1, numlist=(R(4),), src=A("2001:db8::1"), dst=A("2001:db8::2")
        ),
    ),
    ("cmd=activate ipaddr=127.0.0.1,127.0.0.2", activate(src=A("127.0.0.1"), dst=A("127.0.0.2"))),
    ("cmd=activate autostart", activate(autostart=True)),
    ("cmd=activate phase=1 autostart", activate(phase=Phase.PHASE1, autostart=True)),
    (
        "numlist=2 namelist=x remid=gw.example cmd=activate phase=2",  # any order
        activate(phase=Phase.PHASE2, numlist=(R(2),), namelist=("x",), remid="gw.example"),
    ),
    # list
    ("cmd=list", listing()),
    ("cmd=list phase=1", listing(phase=Phase.PHASE1)),
    ("cmd=list phase=2", listing(phase=Phase.PHASE2)),
    ("cmd=list phase=1+", listing(phase=Phase.PHASE1_PLUS)),
    ("cmd=list numlist=2-4", listing(numlist=(R(2, 4),))),
    ("cmd=list role=i", listing(role=Role.INITIATOR)),
    ("cmd=list role=r phase=2", listing(role=Role.RESPONDER, phase=Phase.PHASE2)),
    ("cmd=list db", listing(db=True)),
    ("cmd=list db phase=1+", listing(db=True, phase=Phase.PHASE1_PLUS)),
    ("cmd=list verbose", listing(verbose=True)),
    ("cmd=list json", listing(json=True)),
    (
        "json verbose cmd=list phase=1+ numlist=1,5 role=i",
        listing(
            json=True, verbose=True, phase=Phase.PHASE1_PLUS, numlist=(R(1), R(5)),
            role=Role.INITIATOR,
        ),
    ),
    # list stats: the daemon's counters
    ("cmd=list stats", StatsRequest(json=False)),
    ("json cmd=list stats", StatsRequest(json=True)),
    # remove
    ("cmd=remove", remove()),
    ("cmd=remove phase=1", remove(phase=Phase.PHASE1)),
    ("cmd=remove phase=2 numlist=1-3", remove(phase=Phase.PHASE2, numlist=(R(1, 3),))),
    ("cmd=remove numlist=6", remove(numlist=(R(6),))),
    ("cmd=remove db phase=1 numlist=2", remove(db=True, phase=Phase.PHASE1, numlist=(R(2),))),
    ("cmd=remove phase=2 numlist=2,4 db",
     remove(db=True, phase=Phase.PHASE2, numlist=(R(2), R(4)))),
]  # fmt: skip


@pytest.mark.parametrize(("words", "expected"), ACCEPTED, ids=[w for w, _ in ACCEPTED])
def test_accepted_form_gives_exact_request(words: str, expected: object) -> None:
    assert parse_args(words.split()) == expected


def test_longest_lists_are_accepted() -> None:
    numbers = ",".join(str(2 * n + 1) for n in range(MAX_LIST_ITEMS))
    names = ",".join(f"t{n}" for n in range(MAX_LIST_ITEMS))
    request = parse_args(["cmd=activate", f"numlist={numbers}", f"namelist={names}"])
    assert isinstance(request, ActivateRequest)
    assert len(request.numlist) == len(request.namelist) == MAX_LIST_ITEMS
    long_name = "n" * 255
    assert parse_args(["cmd=activate", f"namelist={long_name}"]) == activate(namelist=(long_name,))


# (words, a fragment the one error line must contain)
MISTAKES: list[tuple[list[str], str]] = [
    # subcommand
    (["cmd=bogus"], "unknown subcommand cmd=bogus (expected activate, list or remove)"),
    (["cmd="], "unknown subcommand cmd=''"),
    (["cmd=LIST"], "unknown subcommand cmd=LIST"),
    (["phase=1"], "missing cmd=activate|list|remove"),
    (["list"], "unknown keyword list (did you mean cmd=list?)"),
    (["cmd=list", "cmd=list"], "cmd is given twice"),
    # keywords
    (["cmd=list", "bogus=1"], "unknown keyword bogus"),
    (["cmd=list", "verbos"], "unknown keyword verbos"),
    (["cmd=list", "Phase=1"], "unknown keyword Phase"),
    (["cmd=list", "=1"], "=1 is not KEYWORD=VALUE"),
    ([""], "'' is not KEYWORD=VALUE"),
    (["cmd=list", "verbose", "verbose"], "verbose is given twice"),
    (["cmd=list", "phase=1", "phase=2"], "phase is given twice"),
    (["cmd=list", "numlist=1", "numlist=1"], "numlist is given twice"),
    (["cmd=list", "db=yes"], "db takes no value (write db, not db=yes)"),
    (["cmd=list", "json="], "json takes no value"),
    (["cmd=list", "phase"], "phase needs a value: phase=1|2"),
    (["cmd=activate", "ipaddr"], "ipaddr needs a value: ipaddr=SRC,DST"),
    # keywords not valid for the subcommand
    (["cmd=list", "ipaddr=192.0.2.1,192.0.2.2"], "ipaddr is not valid with cmd=list"),
    (["cmd=list", "autostart"], "autostart is not valid with cmd=list"),
    (["cmd=list", "namelist=a"], "namelist is not valid with cmd=list"),
    (["cmd=activate", "db"], "db is not valid with cmd=activate"),
    (["cmd=activate", "json"], "json is not valid with cmd=activate"),
    (["cmd=activate", "role=i"], "role is not valid with cmd=activate"),
    (["cmd=remove", "verbose"], "verbose is not valid with cmd=remove"),
    (["cmd=activate", "stats"], "stats is not valid with cmd=activate"),
    (["cmd=list", "stats=1"], "stats takes no value"),
    (["cmd=list", "stats", "stats"], "stats is given twice"),
    (["cmd=list", "stats", "db"], "stats shows the daemon's counters; it does not combine with db"),
    (["cmd=list", "numlist=1", "stats"], "it does not combine with numlist="),
    (["cmd=list", "stats", "role=r"], "it does not combine with role="),
    (["cmd=remove", "remid=x.example"], "remid is not valid with cmd=remove"),
    # phase
    (["cmd=list", "phase=3"], "phase=3: cmd=list takes phase=1|1+|2"),
    (["cmd=list", "phase="], "phase='': cmd=list takes phase=1|1+|2"),
    (["cmd=activate", "phase=1+"], "phase=1+: cmd=activate takes phase=1|2"),
    (["cmd=remove", "phase=1+"], "phase=1+: cmd=remove takes phase=1|2"),
    (["cmd=remove", "phase=all"], "cmd=remove takes phase=1|2"),
    # numlist
    (["cmd=list", "numlist=3-1"], "numlist=3-1: range 3-1 is backwards (write 1-3)"),
    (["cmd=list", "numlist=x"], "numlist=x: x is not a number or a range N-M"),
    (["cmd=list", "numlist="], "numlist= is empty"),
    (["cmd=list", "numlist=1,,2"], "numlist=1,,2: empty item"),
    (["cmd=list", "numlist=,1"], "empty item"),
    (["cmd=list", "numlist=1,"], "empty item"),
    (["cmd=list", "numlist=0"], "0 is out of range (1..4294967295)"),
    (["cmd=list", "numlist=4294967296"], "4294967296 is out of range"),
    (["cmd=list", "numlist=99999999999"], "is not a number"),  # too many digits to convert
    (["cmd=list", "numlist=1-0"], "0 is out of range"),
    (["cmd=list", "numlist=-3"], "-3 is not a number or a range N-M"),
    (["cmd=list", "numlist=3-"], "3- is not a number or a range N-M"),
    (["cmd=list", "numlist=-"], "is not a number or a range N-M"),
    (["cmd=list", "numlist=1-2-3"], "is not a number or a range N-M"),
    (["cmd=list", "numlist=+1"], "is not a number"),
    (["cmd=list", "numlist= 1"], "is not a number"),
    (["cmd=list", "numlist=1.5"], "is not a number"),
    (["cmd=list", "numlist=\u0663"], "'\\u0663' is not a number"),  # Arabic-Indic three
    (["cmd=list", "numlist=1,1"], "1 is listed twice"),
    (["cmd=list", "numlist=1-5,3"], "3 is listed twice"),
    (["cmd=list", "numlist=4-6,1-4"], "4 is listed twice"),
    (
        ["cmd=list", "numlist=" + ",".join(str(n) for n in range(1, MAX_LIST_ITEMS + 2))],
        f"more than {MAX_LIST_ITEMS} items",
    ),
    # namelist
    (["cmd=activate", "namelist="], "namelist= is empty"),
    (["cmd=activate", "namelist=a,,b"], "empty name"),
    (["cmd=activate", "namelist=a,"], "empty name"),
    (["cmd=activate", "namelist=a b"], "'a b' is not a tunnel name"),
    (["cmd=activate", "namelist=caf\u00e9"], "is not a tunnel name"),
    (["cmd=activate", "namelist=x\x1b[2J"], "'x\\x1b[2J' is not a tunnel name"),
    (["cmd=activate", "namelist=a,b,a"], "a is listed twice"),
    (["cmd=activate", "namelist=" + "n" * 256], "is not a tunnel name"),
    (
        ["cmd=activate", "namelist=" + ",".join(f"t{n}" for n in range(MAX_LIST_ITEMS + 1))],
        f"more than {MAX_LIST_ITEMS} names",
    ),
    # ipaddr
    (["cmd=activate", "ipaddr=192.0.2.1"], "expected two addresses, ipaddr=SRC,DST"),
    (["cmd=activate", "ipaddr="], "expected two addresses"),
    (["cmd=activate", "ipaddr=192.0.2.1,192.0.2.2,192.0.2.3"], "expected two addresses"),
    (["cmd=activate", "ipaddr=192.0.2.1,gw.example"], "gw.example is not an IP address"),
    (["cmd=activate", "ipaddr=192.0.2.1,"], "'' is not an IP address"),
    (["cmd=activate", "ipaddr=192.0.2.256,192.0.2.1"], "192.0.2.256 is not an IP address"),
    (["cmd=activate", "ipaddr=192.0.2.01,192.0.2.1"], "is not an IP address"),
    (["cmd=activate", "ipaddr=192.0.2.1,2001:db8::1"], "mixes IPv4 and IPv6"),
    (["cmd=activate", "ipaddr=192.0.2.1,192.0.2.1"], "source and destination are the same"),
    (["cmd=activate", "ipaddr=0.0.0.0,192.0.2.1"], "0.0.0.0 is not a unicast address"),
    (["cmd=activate", "ipaddr=192.0.2.1,224.0.0.5"], "224.0.0.5 is not a unicast address"),
    (["cmd=activate", "ipaddr=192.0.2.1,255.255.255.255"], "is not a unicast address"),
    (["cmd=activate", "ipaddr=::,2001:db8::1"], ":: is not a unicast address"),
    (["cmd=activate", "ipaddr=fe80::1%eth0,fe80::2"], "scoped addresses are not supported"),
    # remid
    (["cmd=activate", "remid="], "remid= is empty"),
    (["cmd=activate", "remid=not a name"], "remid='not a name'"),
    (["cmd=activate", "remid=" + "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 63
      + ".e"], "remid="),  # over 255 characters
    # role
    (["cmd=list", "role=x"], "role=x: expected role=i (initiator) or role=r (responder)"),
    (["cmd=list", "role=initiator"], "expected role=i"),
    (["cmd=list", "role="], "expected role=i"),
    # conflicts
    (["cmd=list", "db", "role=i"], "db and role= exclude each other"),
    (["cmd=activate", "autostart", "numlist=1"], "does not combine with numlist="),
    (["cmd=activate", "autostart", "namelist=a"], "does not combine with namelist="),
    (["cmd=activate", "autostart", "remid=gw.example"], "does not combine with remid="),
    (
        ["cmd=activate", "autostart", "ipaddr=192.0.2.1,192.0.2.2"],
        "does not combine with ipaddr=",
    ),
    (["cmd=remove", "db"], "remove db needs phase=1 or phase=2"),
    (["cmd=remove", "db", "numlist=1"], "remove db needs phase=1 or phase=2"),
    (["cmd=remove", "db", "phase=1"], "remove db needs numlist="),
]  # fmt: skip


def _id(case: tuple[list[str], str]) -> str:
    return ascii(" ".join(case[0]))[:60]


@pytest.mark.parametrize(("words", "fragment"), MISTAKES, ids=[_id(c) for c in MISTAKES])
def test_mistake_is_one_line_and_exit_2(
    words: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(UsageError) as caught:
        parse_args(words)
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)
    assert ike.main(words) == ike.EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"ike: {caught.value}\n"
    assert err.isascii()  # user text is escaped, never echoed raw to the terminal


def test_no_arguments_prints_usage_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert ike.main([]) == ike.EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == "" and err == ike.USAGE
    assert err.startswith("usage: ike cmd=activate")


@pytest.mark.parametrize("word", ["help", "-h", "--help", "cmd=help"])
def test_help_prints_usage_with_exit_codes(word: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert ike.main([word]) == ike.EXIT_OK
    out, err = capsys.readouterr()
    assert err == ""
    assert "ike cmd=list [phase=1|1+|2] [numlist=LIST] [db | role=i|r] [verbose] [json]" in out
    assert "ike cmd=list stats [json | prom]" in out
    assert "Exit status: 0 done, 1 refused or failed" in out
    assert "3 daemon not reachable" in out and "2 command line error" in out


def test_help_with_other_words_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert ike.main(["help", "cmd=list"]) == ike.EXIT_USAGE
    assert capsys.readouterr().err == "ike: unknown keyword help (see 'ike help')\n"


@st.composite
def numlists(draw: st.DrawFn) -> list[tuple[int, int]]:
    """Disjoint ranges in random order, as an operator could write them."""
    bounds = sorted(
        draw(st.sets(st.integers(1, MAX_NUMBER), min_size=1, max_size=2 * MAX_LIST_ITEMS))
    )
    pairs = [(bounds[i], bounds[i + 1]) for i in range(0, len(bounds) - 1, 2)] or [
        (bounds[0], bounds[0])
    ]
    collapse = draw(st.lists(st.booleans(), min_size=len(pairs), max_size=len(pairs)))
    pairs = [(a, a) if single else (a, b) for (a, b), single in zip(pairs, collapse, strict=True)]
    return draw(st.permutations(pairs))


@given(numlists())
def test_numlist_round_trip(pairs: list[tuple[int, int]]) -> None:
    text = ",".join(str(a) if a == b else f"{a}-{b}" for a, b in pairs)
    assert parse_numlist(text) == tuple(NumRange(a, b) for a, b in pairs)


@given(st.text(max_size=40))
def test_any_text_parses_or_gives_one_line(text: str) -> None:
    for words in (["cmd=list", f"numlist={text}"], ["cmd=activate", f"namelist={text}"],
                  ["cmd=activate", f"ipaddr={text}"], ["cmd=activate", f"remid={text}"],
                  ["cmd=list", text]):  # fmt: skip
        try:
            parse_args(words)
        except UsageError as exc:
            message = str(exc)
            assert message and "\n" not in message and message.isascii()
