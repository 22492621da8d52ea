"""idmap: the owners hashi shows, and the owners chown sends, when the remote
and local numbers differ: idmap=user, idmap=file (uidfile=, gidfile=,
nomap=) and idmap=names (through users-groups-by-id@openssh.com)."""

import os
import pwd
import subprocess

import pytest

from mountfix import *  # noqa: F401,F403
from mountfix import TEST_USER

REMOTE_ONLY_UID = 4321   # an owner with no local account
REMOTE_ONLY_GID = 4322


def _mount(menv, server, export, opts):
    return menv.mount("root", server, export=export, opts=opts)


@pytest.fixture
def export(menv):
    e = menv.new_dir("idmap-exp")
    (e / "theirs").write_text("x")
    os.chown(e / "theirs", REMOTE_ONLY_UID, REMOTE_ONLY_GID)
    u = pwd.getpwnam(TEST_USER)
    (e / "users").write_text("y")
    os.chown(e / "users", u.pw_uid, u.pw_gid)
    return e


@pytest.mark.parametrize("server", ["openssh", "hashi"])
def test_idmap_none_shows_remote_numbers(menv, export, server):
    m = _mount(menv, server, export, [])
    try:
        st = os.stat(m.path / "theirs")
        assert (st.st_uid, st.st_gid) == (REMOTE_ONLY_UID, REMOTE_ONLY_GID)
    finally:
        m.unmount()


@pytest.mark.parametrize("server", ["openssh", "hashi"])
def test_idmap_user(menv, export, server):
    """The remote directory's owner (the remote login user) is shown as the
    local user; chown back to the local user sends the remote number."""
    os.chown(export, REMOTE_ONLY_UID, REMOTE_ONLY_GID)
    m = _mount(menv, server, export, ["idmap=user"])
    try:
        st = os.stat(m.path / "theirs")
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
        st = os.stat(m.path / "users")  # someone else: unchanged
        assert st.st_uid == pwd.getpwnam(TEST_USER).pw_uid
        os.chown(m.path / "users", os.getuid(), os.getgid())
        s = os.stat(export / "users")
        assert (s.st_uid, s.st_gid) == (REMOTE_ONLY_UID, REMOTE_ONLY_GID)
    finally:
        m.unmount()


@pytest.mark.parametrize("server", ["openssh", "hashi"])
def test_idmap_file(menv, export, server, tmp_path):
    uidfile = tmp_path / "uids"
    gidfile = tmp_path / "gids"
    uidfile.write_text(f"# local:remote\n{TEST_USER}:{REMOTE_ONLY_UID}\n")
    gidfile.write_text(f"{TEST_USER}:{REMOTE_ONLY_GID}\n")
    for f in (uidfile, gidfile):
        os.chmod(f, 0o600)
    u = pwd.getpwnam(TEST_USER)
    m = _mount(menv, server, export, [f"uidfile={uidfile}", f"gidfile={gidfile}", "idmap=file"])
    try:
        st = os.stat(m.path / "theirs")
        assert (st.st_uid, st.st_gid) == (u.pw_uid, u.pw_gid)
        # chown to the mapped local user writes the remote number
        (export / "mine").write_text("z")
        os.chown(m.path / "mine", u.pw_uid, u.pw_gid)
        s = os.stat(export / "mine")
        assert (s.st_uid, s.st_gid) == (REMOTE_ONLY_UID, REMOTE_ONLY_GID)
        # nomap=error (sshfs's default for idmap=file): an owner with no
        # mapping cannot be given
        with pytest.raises(PermissionError):
            os.chown(m.path / "mine", 0, -1)
    finally:
        m.unmount()


def test_idmap_file_bad_file(menv, export, tmp_path):
    uidfile = tmp_path / "uids"
    uidfile.write_text("this line has no colon\n")
    os.chmod(uidfile, 0o600)
    mnt = menv.mountpoint("root")
    r = menv.run_hashi("root", [f"root@127.0.0.1:{export}", str(mnt), *menv.ssh_opts("root"),
                                "-o", "idmap=file", "-o", f"uidfile={uidfile}"])
    assert r.returncode != 0
    assert str(uidfile) in r.stderr
    assert not mounted(mnt)


@pytest.mark.parametrize("server", ["openssh", "hashi"])
def test_idmap_names(menv, export, server):
    """By name: the test user's file is shown with the local numbers of the
    user of that name; an owner with no local name keeps its number."""
    m = _mount(menv, server, export, ["idmap=names"])
    try:
        u = pwd.getpwnam(TEST_USER)
        st = os.stat(m.path / "users")
        assert (st.st_uid, st.st_gid) == (u.pw_uid, u.pw_gid)
        names = subprocess.run(["ls", "-l", str(m.path)], capture_output=True, text=True).stdout
        assert TEST_USER in names
        st = os.stat(m.path / "theirs")
        assert (st.st_uid, st.st_gid) == (REMOTE_ONLY_UID, REMOTE_ONLY_GID)
    finally:
        m.unmount()


def test_bad_idmap_value(menv, export):
    mnt = menv.mountpoint("root")
    r = menv.run_hashi("root", [f"root@127.0.0.1:{export}", str(mnt), *menv.ssh_opts("root"),
                                "-o", "idmap=bogus"])
    assert r.returncode != 0
    assert "idmap" in r.stderr and "bogus" in r.stderr
    assert not mounted(mnt)


def test_idmap_names_maps_differing_numbers(menv, export, tmp_path):
    """A server whose user database says the test user is number 4321: with
    idmap=names, the file it owns shows as the local test user; without, as
    4321. (Our server runs in a private mount namespace with that passwd.)"""
    u = pwd.getpwnam(TEST_USER)
    fake = tmp_path / "passwd"
    lines = [ln for ln in open("/etc/passwd").read().splitlines()
             if not ln.startswith(TEST_USER + ":")]
    lines.append(f"{TEST_USER}:x:{REMOTE_ONLY_UID}:{REMOTE_ONLY_GID}::/nonexistent:/bin/sh")
    fake.write_text("\n".join(lines) + "\n")
    os.chmod(fake, 0o644)
    os.chmod(tmp_path, 0o755)
    wrapper = tmp_path / "server.sh"
    wrapper.write_text("#!/bin/sh\nexec unshare -m sh -c 'mount --bind %s /etc/passwd && exec %s'\n"
                       % (fake, menv.hashi_server))
    os.chmod(wrapper, 0o755)
    extra = menv.ssh_opts("root") + ["-o", f"sftp_server={wrapper}"]
    for opts, want in (([], REMOTE_ONLY_UID), (["idmap=names"], u.pw_uid)):
        mnt = menv.mountpoint("root")
        args = [f"root@127.0.0.1:{export}", str(mnt), *extra]
        for o in opts:
            args += ["-o", o]
        r = menv.run_hashi("root", args)
        assert r.returncode == 0, r.stderr
        try:
            assert os.stat(mnt / "theirs").st_uid == want
        finally:
            subprocess.run(["fusermount3", "-u", str(mnt)], check=True)
