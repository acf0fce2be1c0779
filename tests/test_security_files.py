"""Files the parent creates as root, against a local user who prepared the paths.

The key log (`--keylog`) and the control socket live at operator-chosen paths. A local user
who can write the directory, or who created the file first, must not end up reading keys,
holding the daemon, or getting root to chmod something else.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from ikepriv.parent_kernel.control_socket import bind_control
from ikepriv.parent_kernel.keylog import ESP_SUFFIX, KeyLog

pytestmark = [pytest.mark.root, pytest.mark.timeout(60)]

NOBODY = 65534


def test_keylog_is_created_0600_and_appended(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("old line\n")
    path.chmod(0o644)
    log = KeyLog(str(path))
    log.close()
    for name in (path, Path(f"{path}{ESP_SUFFIX}")):
        assert stat.S_IMODE(name.stat().st_mode) == 0o600
    assert path.read_text() == "old line\n"


def test_keylog_refuses_a_file_another_user_created(tmp_path: Path) -> None:
    """The user could keep it open (or chmod it back) and read every key we write."""
    path = tmp_path / "keys"
    path.write_text("")
    os.chown(path, NOBODY, NOBODY)
    path.chmod(0o666)
    with pytest.raises(OSError, match="owned by uid"):
        KeyLog(str(path))
    assert path.read_text() == ""


def test_keylog_refuses_a_fifo_instead_of_hanging(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    os.mkfifo(path, 0o600)
    with pytest.raises(OSError):
        KeyLog(str(path))


def test_keylog_refuses_a_hard_link(tmp_path: Path) -> None:
    """Appending to a second name of some other root file (a cron table, say) is refused."""
    victim = tmp_path / "victim"
    victim.write_text("* * * * * root true\n")
    os.link(victim, tmp_path / "keys")
    with pytest.raises(OSError, match="hard links"):
        KeyLog(str(tmp_path / "keys"))
    assert victim.read_text() == "* * * * * root true\n"


def test_keylog_refuses_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("")
    (tmp_path / "keys").symlink_to(victim)
    with pytest.raises(OSError):
        KeyLog(str(tmp_path / "keys"))


def test_control_socket_is_0600_in_a_private_directory(tmp_path: Path) -> None:
    path = tmp_path / "run" / "ctl.sock"
    sock = bind_control(str(path))
    try:
        st = path.lstat()
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("mode", "owner"),
    [(0o777, 0), (0o1777, 0), (0o775, 0), (0o755, NOBODY)],
    ids=["world-writable", "sticky-tmp", "group-writable", "other-owner"],
)
def test_control_socket_refuses_a_directory_others_control(
    tmp_path: Path, mode: int, owner: int
) -> None:
    directory = tmp_path / "run"
    directory.mkdir()
    directory.chmod(mode)
    os.chown(directory, owner, owner)
    with pytest.raises(PermissionError):
        bind_control(str(directory / "ctl.sock")).close()
    assert not (directory / "ctl.sock").exists()


def test_control_socket_path_taken_by_a_file_or_symlink_or_listener(tmp_path: Path) -> None:
    taken = tmp_path / "file"
    taken.write_text("x")
    with pytest.raises(FileExistsError):
        bind_control(str(taken))
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FileExistsError):
        bind_control(str(link))
    assert not (tmp_path / "elsewhere").exists()
    live = tmp_path / "live.sock"
    first = bind_control(str(live))
    try:
        with pytest.raises(FileExistsError, match="listening"):
            bind_control(str(live))
    finally:
        first.close()
    stale = bind_control(str(live))  # nobody listens any more: replaced
    stale.close()
    assert stat.S_ISSOCK(live.lstat().st_mode)
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as probe:
        with pytest.raises(ConnectionRefusedError):
            probe.connect(str(live))
