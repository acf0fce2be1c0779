"""The tunnel definition database: one SQLite file, readable by root only.

The file holds pre-shared keys, so it is created 0600 and refused when group or others can
read it or (when we run as root) when someone else owns it. Deleted rows are overwritten
(secure_delete) so an old PSK does not linger in free pages. Every write runs in one
IMMEDIATE transaction and bumps a generation counter, which a running daemon polls cheaply
(`generation()` / `changed_since()`) to notice `ikedb` changes without a restart.

Numbers are stable: AUTOINCREMENT never reuses the number of a deleted definition, and
overwriting a definition (force) keeps its number, so `ike cmd=... numlist=` keeps meaning
the same tunnel.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ikepriv.config.errors import DefinitionError
from ikepriv.config.identity import Identity
from ikepriv.config.model import (
    MAX_CREDENTIAL_FILES,
    Definitions,
    DpdAction,
    Fragmentation,
    IPAddress,
    IPNetwork,
    Phase1Definition,
    Phase2Definition,
    SendCert,
)
from ikepriv.config.proposals import (
    parse_ah_proposals,
    parse_esp_proposals,
    parse_ike_proposals,
)
from ikepriv.isakmp.constants import AuthMethod, EncapsulationMode, ExchangeType, IdType

__all__ = [
    "DEFAULT_DB_PATH",
    "BadRow",
    "DefinitionExistsError",
    "DefinitionNotFoundError",
    "StoredDefinitions",
    "TunnelDB",
    "TunnelDBError",
]

DEFAULT_DB_PATH = "/var/lib/ikepriv/tunnels.db"
SCHEMA_VERSION = 4
_T = TypeVar("_T")
_Def = TypeVar("_Def", Phase1Definition, Phase2Definition)

# Migration n brings the schema from version n-1 to n; append, never edit a released one.
_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE generation (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        value INTEGER NOT NULL
    );
    INSERT INTO generation (id, value) VALUES (1, 0);
    CREATE TABLE phase1 (
        number INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        local_addr TEXT NOT NULL,
        remote_addr TEXT,                      -- NULL: %any (responder only)
        local_id_type INTEGER NOT NULL,
        local_id TEXT NOT NULL,
        remote_id_type INTEGER NOT NULL,
        remote_id TEXT NOT NULL,
        mode INTEGER NOT NULL,                 -- ExchangeType
        auth INTEGER NOT NULL,                 -- AuthMethod
        psk BLOB,
        key_ref TEXT,
        proposals TEXT NOT NULL,               -- canonical keywords, comma separated
        lifetime INTEGER NOT NULL,
        rekey_margin INTEGER NOT NULL,
        keying_tries INTEGER NOT NULL,
        dpd_delay INTEGER NOT NULL,
        dpd_timeout INTEGER NOT NULL,
        dpd_action TEXT NOT NULL,
        nat_traversal INTEGER NOT NULL,
        autostart INTEGER NOT NULL
    );
    CREATE TABLE phase2 (
        number INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        phase1 INTEGER NOT NULL REFERENCES phase1 (number) ON DELETE CASCADE,
        local_subnet TEXT NOT NULL,
        remote_subnet TEXT NOT NULL,
        protocol INTEGER NOT NULL,
        local_port INTEGER NOT NULL,
        remote_port INTEGER NOT NULL,
        esp_proposals TEXT NOT NULL,
        ah_proposals TEXT NOT NULL,
        mode INTEGER NOT NULL,                 -- EncapsulationMode
        lifetime INTEGER NOT NULL,
        lifetime_kb INTEGER NOT NULL,
        rekey_margin INTEGER NOT NULL,
        autostart INTEGER NOT NULL
    );
    CREATE INDEX phase2_by_phase1 ON phase2 (phase1);
    """,
    2: """
    ALTER TABLE phase1 ADD COLUMN encap INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE phase1 ADD COLUMN rekey INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE phase2 ADD COLUMN rekey INTEGER NOT NULL DEFAULT 1;
    """,
    3: """
    ALTER TABLE phase2 ADD COLUMN extra_local_subnets TEXT NOT NULL DEFAULT '';
    ALTER TABLE phase2 ADD COLUMN extra_remote_subnets TEXT NOT NULL DEFAULT '';
    """,
    # certificate authentication and IKE fragmentation (issue 10); key_ref, never usable,
    # makes way for `key` (a row that had one was refused, so no definition is lost)
    4: """
    ALTER TABLE phase1 DROP COLUMN key_ref;
    ALTER TABLE phase1 ADD COLUMN cert TEXT;
    ALTER TABLE phase1 ADD COLUMN key TEXT;
    ALTER TABLE phase1 ADD COLUMN ca TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE phase1 ADD COLUMN crl TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE phase1 ADD COLUMN send_cert TEXT NOT NULL DEFAULT 'ifasked';
    ALTER TABLE phase1 ADD COLUMN fragmentation TEXT NOT NULL DEFAULT 'yes';
    ALTER TABLE phase1 ADD COLUMN fragment_size INTEGER NOT NULL DEFAULT 1280;
    """,
}


class TunnelDBError(Exception):
    """The database cannot be used or the request cannot be carried out; nothing changed."""


class DefinitionExistsError(TunnelDBError):
    """A definition with that name exists and overwriting was not asked for."""


class DefinitionNotFoundError(TunnelDBError):
    """No definition with that name or number."""


def _check_file(path: Path, create: bool, readonly: bool) -> None:
    """Create the file 0600 if asked, and refuse one that others could read."""
    flags = (os.O_RDONLY if readonly else os.O_RDWR) | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        if not create or readonly:
            raise TunnelDBError(f"{path}: no such database") from None
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise TunnelDBError(f"{path}: cannot create: {exc.strerror}") from None
    except OSError as exc:
        reason = "is a symbolic link" if os.path.islink(path) else f"cannot open: {exc.strerror}"
        raise TunnelDBError(f"{path}: {reason}") from None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(st.st_mode):
        raise TunnelDBError(f"{path}: not a regular file")
    if st.st_mode & 0o077:
        raise TunnelDBError(
            f"{path}: readable or writable by group or others (mode "
            f"{stat.S_IMODE(st.st_mode):04o}); it holds pre-shared keys: chmod 600 {path}"
        )
    if os.geteuid() == 0 and st.st_uid != 0:
        raise TunnelDBError(f"{path}: owned by uid {st.st_uid}, not root; chown root {path}")


def _join(keywords: Any) -> str:
    return ",".join(p.keyword for p in keywords)


def _split(text: str) -> list[str]:
    return text.split(",") if text else []


class TunnelDB:
    """Phase 1 and phase 2 definitions in one SQLite file.

    `readonly=True` is for readers such as the daemon; `create=False` refuses a missing file
    instead of creating an empty database.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, create: bool = True, readonly: bool = False
    ) -> None:
        self.path = Path(path)
        _check_file(self.path, create, readonly)
        try:
            if readonly:
                uri = self.path.absolute().as_uri() + "?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=5.0)
            else:
                self._db = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA secure_delete = ON")
            if not readonly:
                self._migrate()
            self._check_version()
        except sqlite3.Error as exc:
            self._close_quietly()
            raise TunnelDBError(f"{self.path}: {exc}") from None
        except TunnelDBError:
            self._close_quietly()
            raise

    # --- life cycle -------------------------------------------------------------------

    def close(self) -> None:
        self._db.close()

    def _close_quietly(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()

    def __enter__(self) -> TunnelDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _version(self) -> int:
        row = self._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone()
        if row is None:
            return 0
        version = self._db.execute("SELECT version FROM schema_version").fetchone()
        return int(version[0]) if version else 0

    def _migrate(self) -> None:
        with self._write(bump=False):
            version = self._version()
            if version == 0:
                self._db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                self._db.execute("INSERT INTO schema_version (version) VALUES (0)")
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[target].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute("UPDATE schema_version SET version = ?", (target,))

    def _check_version(self) -> None:
        version = self._version()
        if version != SCHEMA_VERSION:
            raise TunnelDBError(
                f"{self.path}: schema version {version}, this ikepriv uses {SCHEMA_VERSION}"
            )

    @contextmanager
    def _write(self, *, bump: bool = True) -> Iterator[None]:
        """One IMMEDIATE transaction: all of it or nothing; bumps the generation."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise TunnelDBError(f"{self.path}: {exc}") from None
        try:
            yield
            if bump:
                self._db.execute("UPDATE generation SET value = value + 1 WHERE id = 1")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _guard(self, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except sqlite3.Error as exc:
            raise TunnelDBError(f"{self.path}: {exc}") from None

    # --- change detection -------------------------------------------------------------

    def generation(self) -> int:
        """A counter that grows with every committed change, by any process."""
        row = self._guard(lambda: self._db.execute("SELECT value FROM generation").fetchone())
        return int(row[0])

    def changed_since(self, token: int) -> bool:
        """True if the database changed after `generation()` returned `token`."""
        return self.generation() != token

    # --- writing ----------------------------------------------------------------------

    def put(self, defs: Definitions, *, force: bool = False) -> Definitions:
        """Store definitions in one transaction; returns them with their numbers.

        An existing name is refused unless `force`, in which case the row is updated in
        place and keeps its number. Each phase 2 must name a phase 1 in `defs` or stored.
        """

        def run() -> Definitions:
            with self._write():
                if not force:
                    taken = [
                        f"phase1 '{d.name}'" for d in defs.phase1 if self._number("phase1", d.name)
                    ]
                    taken += [
                        f"phase2 '{d.name}'" for d in defs.phase2 if self._number("phase2", d.name)
                    ]
                    if taken:
                        raise DefinitionExistsError(
                            f"{', '.join(taken)} already in the database (use -F to overwrite)"
                        )
                p1 = tuple(self._put_phase1(d) for d in defs.phase1)
                p2 = tuple(self._put_phase2(d) for d in defs.phase2)
                self._check_unambiguous()
            return Definitions(p1, p2)

        return self._guard(run)

    def _check_unambiguous(self) -> None:
        """A responder must be able to tell which definition (and key) a peer means.

        Main Mode with a PSK picks the key by the peer's address before the peer's identity
        is known, so two such definitions between the same addresses are ambiguous; a %any
        definition is picked by the peer's identity, so two with the same remote_id are too,
        both with PSKs or both with signatures (their certificates would match either).
        """
        psk = int(AuthMethod.PRE_SHARED_KEY)
        main = int(ExchangeType.IDENTITY_PROTECTION)
        clash = self._db.execute(
            "SELECT a.name, b.name FROM phase1 a JOIN phase1 b ON a.number < b.number "
            "AND a.local_addr = b.local_addr AND ("
            " (a.auth = ? AND b.auth = ? AND a.mode = ? AND b.mode = ?"
            "  AND a.remote_addr = b.remote_addr) OR"
            " (a.remote_addr IS NULL AND b.remote_addr IS NULL AND (a.auth = ?) = (b.auth = ?)"
            "  AND a.remote_id_type = b.remote_id_type AND a.remote_id = b.remote_id)"
            ") LIMIT 1",
            (psk, psk, main, main, psk, psk),
        ).fetchone()
        if clash is not None:
            raise TunnelDBError(
                f"phase1 '{clash[0]}' and '{clash[1]}' would be ambiguous for a responder "
                "(same local_addr and same Main Mode PSK peer address, or same %any remote_id)"
            )

    def _number(self, table: str, name: str) -> int | None:
        assert table in ("phase1", "phase2")
        row = self._db.execute(f"SELECT number FROM {table} WHERE name = ?", (name,)).fetchone()  # noqa: S608
        return int(row[0]) if row else None

    def _upsert(self, table: str, name: str, values: dict[str, Any]) -> int:
        """Update the named row in place (keeping its number) or insert a new one."""
        assert table in ("phase1", "phase2")
        number = self._number(table, name)
        columns = list(values)
        if number is None:
            sql = (
                f"INSERT INTO {table} (name, {', '.join(columns)}) "  # noqa: S608
                f"VALUES (?, {', '.join('?' for _ in columns)})"
            )
            cur = self._db.execute(sql, (name, *values.values()))
            assert cur.lastrowid is not None
            return cur.lastrowid
        sql = f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in columns)} WHERE number = ?"  # noqa: S608
        self._db.execute(sql, (*values.values(), number))
        return number

    def _put_phase1(self, d: Phase1Definition) -> Phase1Definition:
        number = self._upsert(
            "phase1",
            d.name,
            {
                "local_addr": str(d.local_addr),
                "remote_addr": None if d.remote_addr is None else str(d.remote_addr),
                "local_id_type": int(d.local_id.type),
                "local_id": d.local_id.value,
                "remote_id_type": int(d.remote_id.type),
                "remote_id": d.remote_id.value,
                "mode": int(d.mode),
                "auth": int(d.auth),
                "psk": d.psk,
                "cert": d.cert,
                "key": d.key,
                "ca": json.dumps(list(d.ca)),
                "crl": json.dumps(list(d.crl)),
                "send_cert": d.send_cert.value,
                "fragmentation": d.fragmentation.value,
                "fragment_size": d.fragment_size,
                "proposals": _join(d.proposals),
                "lifetime": d.lifetime,
                "rekey_margin": d.rekey_margin,
                "keying_tries": d.keying_tries,
                "dpd_delay": d.dpd_delay,
                "dpd_timeout": d.dpd_timeout,
                "dpd_action": d.dpd_action.value,
                "nat_traversal": int(d.nat_traversal),
                "autostart": int(d.autostart),
                "encap": int(d.encap),
                "rekey": int(d.rekey),
            },
        )
        return _replace_number(d, number)

    def _put_phase2(self, d: Phase2Definition) -> Phase2Definition:
        owner = self._number("phase1", d.phase1)
        if owner is None:
            raise DefinitionNotFoundError(
                f"phase2 '{d.name}': no phase 1 named '{d.phase1}' in the database"
            )
        number = self._upsert(
            "phase2",
            d.name,
            {
                "phase1": owner,
                "local_subnet": str(d.local_subnet),
                "remote_subnet": str(d.remote_subnet),
                "protocol": d.protocol,
                "local_port": d.local_port,
                "remote_port": d.remote_port,
                "esp_proposals": _join(d.esp_proposals),
                "ah_proposals": _join(d.ah_proposals),
                "mode": int(d.mode),
                "lifetime": d.lifetime,
                "lifetime_kb": d.lifetime_kb,
                "rekey_margin": d.rekey_margin,
                "autostart": int(d.autostart),
                "rekey": int(d.rekey),
                "extra_local_subnets": ",".join(map(str, d.extra_local_subnets)),
                "extra_remote_subnets": ",".join(map(str, d.extra_remote_subnets)),
            },
        )
        return _replace_number(d, number)

    def delete_phase1(self, name: str) -> int:
        """Delete a phase 1 and, in the same transaction, its phase 2 definitions.

        Returns how many phase 2 definitions went with it.
        """

        def run() -> int:
            with self._write():
                number = self._number("phase1", name)
                if number is None:
                    raise DefinitionNotFoundError(f"no phase1 definition named '{name}'")
                (count,) = self._db.execute(
                    "SELECT count(*) FROM phase2 WHERE phase1 = ?", (number,)
                ).fetchone()
                self._db.execute("DELETE FROM phase1 WHERE number = ?", (number,))
            return int(count)

        return self._guard(run)

    def delete_phase2(self, name: str) -> None:
        def run() -> None:
            with self._write():
                if self._db.execute("DELETE FROM phase2 WHERE name = ?", (name,)).rowcount != 1:
                    raise DefinitionNotFoundError(f"no phase2 definition named '{name}'")

        self._guard(run)

    # --- reading ----------------------------------------------------------------------

    _PHASE1_SQL = "SELECT * FROM phase1 {where} ORDER BY number"
    _PHASE2_SQL = (
        "SELECT phase2.*, phase1.name AS phase1_name FROM phase2 "
        "JOIN phase1 ON phase2.phase1 = phase1.number {where} ORDER BY phase2.number"
    )

    def _decoded1(self, where: str, args: tuple[Any, ...]) -> list[Phase1Definition | BadRow]:
        sql = self._PHASE1_SQL.format(where=where)
        return [_decode("phase1", r, _phase1_from_row) for r in self._rows(sql, args)]

    def _decoded2(self, where: str, args: tuple[Any, ...]) -> list[Phase2Definition | BadRow]:
        sql = self._PHASE2_SQL.format(where=where)
        return [_decode("phase2", r, _phase2_from_row) for r in self._rows(sql, args)]

    def _strict(self, decoded: Callable[[], list[_Def | BadRow]]) -> tuple[_Def, ...]:
        """Every row a definition, or TunnelDBError naming the first bad row and field."""
        out: list[_Def] = []
        for item in self._guard(decoded):
            if isinstance(item, BadRow):
                raise TunnelDBError(f"{self.path}: {item}")
            out.append(item)
        return tuple(out)

    def _phase1_rows(
        self, where: str = "", args: tuple[Any, ...] = ()
    ) -> tuple[Phase1Definition, ...]:
        return self._strict(lambda: self._decoded1(where, args))

    def _phase2_rows(
        self, where: str = "", args: tuple[Any, ...] = ()
    ) -> tuple[Phase2Definition, ...]:
        return self._strict(lambda: self._decoded2(where, args))

    def read_all(self) -> StoredDefinitions:
        """Every definition and the generation, from one consistent read of the file.

        Unlike the other readers, a bad row does not make this fail: it is returned in
        `bad`, and every other row still loads (the daemon keeps what works).
        """

        def run() -> StoredDefinitions:
            self._db.execute("BEGIN")
            try:
                (generation,) = self._db.execute("SELECT value FROM generation").fetchone()
                rows1 = self._decoded1("", ())
                rows2 = self._decoded2("", ())
            finally:
                self._db.execute("COMMIT")
            return StoredDefinitions(
                int(generation),
                tuple(d for d in rows1 if not isinstance(d, BadRow)),
                tuple(d for d in rows2 if not isinstance(d, BadRow)),
                tuple(d for d in (*rows1, *rows2) if isinstance(d, BadRow)),
            )

        return self._guard(run)

    def _rows(self, sql: str, args: tuple[Any, ...]) -> list[sqlite3.Row]:
        cur = self._db.cursor()
        cur.row_factory = sqlite3.Row
        return cur.execute(sql, args).fetchall()

    def phase1_definitions(self) -> tuple[Phase1Definition, ...]:
        """All phase 1 definitions, by number."""
        return self._phase1_rows()

    def phase2_definitions(self, phase1: str | None = None) -> tuple[Phase2Definition, ...]:
        """All phase 2 definitions (or those of one phase 1), by number."""
        if phase1 is None:
            return self._phase2_rows()
        return self._phase2_rows("WHERE phase1.name = ?", (phase1,))

    def phase1(self, name: str) -> Phase1Definition | None:
        found = self._phase1_rows("WHERE name = ?", (name,))
        return found[0] if found else None

    def phase1_by_number(self, number: int) -> Phase1Definition | None:
        found = self._phase1_rows("WHERE number = ?", (number,))
        return found[0] if found else None

    def phase2(self, name: str) -> Phase2Definition | None:
        found = self._phase2_rows("WHERE phase2.name = ?", (name,))
        return found[0] if found else None

    def phase2_by_number(self, number: int) -> Phase2Definition | None:
        found = self._phase2_rows("WHERE phase2.number = ?", (number,))
        return found[0] if found else None


def _replace_number(d: _Def, number: int) -> _Def:
    return dataclasses.replace(d, number=number)


@dataclass(frozen=True)
class StoredDefinitions:
    """One consistent read of the database: the valid definitions and the refused rows."""

    generation: int
    phase1: tuple[Phase1Definition, ...]
    phase2: tuple[Phase2Definition, ...]
    bad: tuple[BadRow, ...]


# --- rows back to definitions: every column converted, then the model's own checks -------


@dataclass(frozen=True)
class BadRow:
    """A stored row that is not a valid definition (edited by hand, or by an older version)."""

    table: str  # "phase1" or "phase2"
    number: int
    name: str
    field: str | None  # the model field (or column) that is wrong; None: the row as a whole
    message: str

    def __str__(self) -> str:
        where = f" ('{self.name}')" if self.name else ""
        what = f"field '{self.field}': " if self.field is not None else ""
        return f"bad {self.table} row number {self.number}{where}: {what}{self.message}"


def _column(r: sqlite3.Row, column: str, convert: Callable[[Any], _T], field: str = "") -> _T:
    """One column through `convert`; any failure names the field (default: the column)."""
    try:
        return convert(r[column])
    except (ValueError, TypeError, KeyError) as exc:  # ProposalError is a ValueError
        raise DefinitionError(field or column, str(exc) or type(exc).__name__) from None


def _integer(value: Any) -> int:
    if type(value) is not int:
        raise TypeError(f"{value!r} is not an integer")
    return value


def _flag(value: Any) -> bool:
    if value not in (0, 1) or type(value) is not int:
        raise TypeError(f"{value!r} is not 0 or 1")
    return bool(value)


def _text(value: Any) -> str:
    if type(value) is not str:
        raise TypeError(f"{value!r} is not text")
    return value


def _opt(convert: Callable[[Any], _T]) -> Callable[[Any], _T | None]:
    return lambda value: None if value is None else convert(value)


def _ip(value: Any) -> IPAddress:
    return ipaddress.ip_address(_text(value))


def _subnet(value: Any) -> IPNetwork:
    return ipaddress.ip_network(_text(value), strict=True)


def _subnets(value: Any) -> tuple[IPNetwork, ...]:
    text = _text(value)
    return tuple(_subnet(n) for n in text.split(",")) if text else ()


def _blob(value: Any) -> bytes:
    if type(value) is not bytes:
        raise TypeError("is not a BLOB")
    return value


def _path_list(value: Any) -> tuple[str, ...]:
    """A JSON array of file paths (paths may hold commas, so no comma list here)."""
    text = _text(value)
    if len(text) > 2 * MAX_CREDENTIAL_FILES * 4100:
        raise ValueError("too long")
    items = json.loads(text)
    if type(items) is not list or not all(type(i) is str for i in items):
        raise TypeError(f"{text[:80]!r} is not a JSON array of paths")
    return tuple(items)


def _identity(r: sqlite3.Row, which: str) -> Identity:
    kind = _column(r, f"{which}_id_type", lambda v: IdType(_integer(v)), f"{which}_id")
    return _column(r, f"{which}_id", lambda v: Identity(kind, _text(v)))


def _keywords(parse: Callable[[list[str]], tuple[_T, ...]]) -> Callable[[Any], tuple[_T, ...]]:
    def convert(value: Any) -> tuple[_T, ...]:
        text = _text(value)
        return parse(text.split(",")) if text else ()

    return convert


def _phase1_from_row(r: sqlite3.Row) -> Phase1Definition:
    return Phase1Definition(
        name=_column(r, "name", _text),
        local_addr=_column(r, "local_addr", _ip),
        remote_addr=_column(r, "remote_addr", _opt(_ip)),
        local_id=_identity(r, "local"),
        remote_id=_identity(r, "remote"),
        mode=_column(r, "mode", lambda v: ExchangeType(_integer(v))),
        auth=_column(r, "auth", lambda v: AuthMethod(_integer(v))),
        psk=_column(r, "psk", _opt(_blob)),
        cert=_column(r, "cert", _opt(_text)),
        key=_column(r, "key", _opt(_text)),
        ca=_column(r, "ca", _path_list),
        crl=_column(r, "crl", _path_list),
        send_cert=_column(r, "send_cert", lambda v: SendCert(_text(v))),
        fragmentation=_column(r, "fragmentation", lambda v: Fragmentation(_text(v))),
        fragment_size=_column(r, "fragment_size", _integer),
        proposals=_column(r, "proposals", _keywords(parse_ike_proposals)),
        lifetime=_column(r, "lifetime", _integer),
        rekey_margin=_column(r, "rekey_margin", _integer),
        keying_tries=_column(r, "keying_tries", _integer),
        dpd_delay=_column(r, "dpd_delay", _integer),
        dpd_timeout=_column(r, "dpd_timeout", _integer),
        dpd_action=_column(r, "dpd_action", lambda v: DpdAction(_text(v))),
        nat_traversal=_column(r, "nat_traversal", _flag),
        autostart=_column(r, "autostart", _flag),
        number=_column(r, "number", _integer),
        encap=_column(r, "encap", _flag),
        rekey=_column(r, "rekey", _flag),
    )


def _phase2_from_row(r: sqlite3.Row) -> Phase2Definition:
    return Phase2Definition(
        name=_column(r, "name", _text),
        phase1=_column(r, "phase1_name", _text, "phase1"),
        local_subnet=_column(r, "local_subnet", _subnet),
        remote_subnet=_column(r, "remote_subnet", _subnet),
        protocol=_column(r, "protocol", _integer),
        local_port=_column(r, "local_port", _integer),
        remote_port=_column(r, "remote_port", _integer),
        esp_proposals=_column(r, "esp_proposals", _keywords(parse_esp_proposals)),
        ah_proposals=_column(r, "ah_proposals", _keywords(parse_ah_proposals)),
        mode=_column(r, "mode", lambda v: EncapsulationMode(_integer(v))),
        lifetime=_column(r, "lifetime", _integer),
        lifetime_kb=_column(r, "lifetime_kb", _integer),
        rekey_margin=_column(r, "rekey_margin", _integer),
        autostart=_column(r, "autostart", _flag),
        number=_column(r, "number", _integer),
        rekey=_column(r, "rekey", _flag),
        extra_local_subnets=_column(r, "extra_local_subnets", _subnets),
        extra_remote_subnets=_column(r, "extra_remote_subnets", _subnets),
    )


def _decode(table: str, r: sqlite3.Row, build: Callable[[sqlite3.Row], _Def]) -> _Def | BadRow:
    """A definition from its row, or the reason the row is not one."""
    try:
        return build(r)
    except DefinitionError as exc:
        name = r["name"] if isinstance(r["name"], str) else ""
        return BadRow(table, int(r["number"]), name, exc.field, exc.message)
