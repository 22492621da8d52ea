"""paramiko's SFTPClient against our server through a real sshd.

Every operation paramiko offers, plus the OpenSSH extensions it lacks sent
with its raw request call (SFTPClient._request) on the same channel. Each
test runs twice: with sshd's `Subsystem sftp` (our server) and, for
comparison, with OpenSSH's sftp-server exec'd over the same kind of channel.
"""

import errno
import hashlib
import os
import pwd
import stat
import struct

import pytest

paramiko = pytest.importorskip("paramiko")
from paramiko.py3compat import long as p_long  # noqa: E402
from paramiko.sftp import CMD_EXTENDED, CMD_EXTENDED_REPLY  # noqa: E402

from sftpwire import decode_limits, decode_statvfs, decode_users_groups  # noqa: E402

MiB = 1024 * 1024


def _connect(sshd):
    client = paramiko.SSHClient()
    client.load_host_keys(sshd.known_hosts)  # the fixture's host key, nothing else
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(sshd.host, port=sshd.port, username=sshd.user,
                   key_filename=sshd.key, look_for_keys=False, allow_agent=False,
                   timeout=30, banner_timeout=30, auth_timeout=30)
    return client


@pytest.fixture(params=["hashi", "openssh"])
def sftp(request, sshd):
    client = _connect(sshd)
    try:
        transport = client.get_transport()
        chan = transport.open_session(timeout=30)
        chan.settimeout(60)  # no test can hang on a silent server
        if request.param == "hashi":
            request.getfixturevalue("hashi_server")  # fail early if not built
            chan.invoke_subsystem("sftp")
        else:
            chan.exec_command(request.getfixturevalue("openssh_server"))
        s = paramiko.SFTPClient(chan)
        s.which = request.param
        try:
            yield s
        finally:
            s.close()
    finally:
        client.close()


def test_host_key_is_verified(sshd):
    """A known_hosts without the server's key makes paramiko refuse."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises(paramiko.SSHException):
        client.connect(sshd.host, port=sshd.port, username=sshd.user,
                       key_filename=sshd.key, look_for_keys=False, allow_agent=False,
                       timeout=30)
    client.close()


def test_write_read_seek(sftp, workdir):
    p = str(workdir / "f")
    with sftp.open(p, "w") as f:
        f.write(b"hello ")
        f.write(b"world\nsecond line\n")
    assert (workdir / "f").read_bytes() == b"hello world\nsecond line\n"
    with sftp.open(p, "rb") as f:
        assert f.read(5) == b"hello"
        f.seek(6)
        assert f.readline() == b"world\n"
        assert f.tell() == 12
        f.seek(-5, os.SEEK_END)
        assert f.read() == b"line\n"
        f.seek(0)
        assert f.readlines() == [b"hello world\n", b"second line\n"]
    with sftp.open(p, "a") as f:
        f.write(b"appended\n")
    assert (workdir / "f").read_bytes().endswith(b"line\nappended\n")
    with sftp.open(p, "r+") as f:
        f.seek(0)
        f.write(b"HELLO")
        f.flush()
        f.seek(0)
        assert f.read(11) == b"HELLO world"
    with sftp.open(p, "w+") as f:
        f.write(b"new")
        f.seek(0)
        assert f.read() == b"new"
    assert (workdir / "f").read_bytes() == b"new"


def test_exclusive_create(sftp, workdir):
    p = str(workdir / "x")
    with sftp.open(p, "wx") as f:
        f.write(b"1")
    with pytest.raises(IOError):
        sftp.open(p, "wx")
    assert (workdir / "x").read_bytes() == b"1"


def test_open_errors(sftp, workdir):
    with pytest.raises(IOError) as e:
        sftp.open(str(workdir / "missing"), "r")
    assert e.value.errno == errno.ENOENT
    os.mkdir(workdir / "d")
    with pytest.raises(IOError):
        sftp.open(str(workdir / "d"), "w")


def _same_stat(a, st):
    assert a.st_size == st.st_size
    assert a.st_mode == st.st_mode
    assert a.st_uid == st.st_uid and a.st_gid == st.st_gid
    assert a.st_mtime == int(st.st_mtime)
    assert a.st_atime == int(st.st_atime)


def test_stat_lstat_fstat(sftp, workdir):
    (workdir / "f").write_bytes(b"12345")
    os.symlink("f", workdir / "link")
    _same_stat(sftp.stat(str(workdir / "f")), os.stat(workdir / "f"))
    _same_stat(sftp.stat(str(workdir / "link")), os.stat(workdir / "f"))
    a = sftp.lstat(str(workdir / "link"))
    assert stat.S_ISLNK(a.st_mode)
    _same_stat(a, os.lstat(workdir / "link"))
    with sftp.open(str(workdir / "f")) as f:
        _same_stat(f.stat(), os.stat(workdir / "f"))
    with pytest.raises(IOError) as e:
        sftp.stat(str(workdir / "missing"))
    assert e.value.errno == errno.ENOENT


def test_chmod_chown_utime_truncate(sftp, workdir):
    p = workdir / "f"
    p.write_bytes(b"0123456789")
    sftp.chmod(str(p), 0o640)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o640
    sftp.utime(str(p), (1000000, 2000000))
    st = os.stat(p)
    assert (st.st_atime, st.st_mtime) == (1000000, 2000000)
    sftp.truncate(str(p), 4)
    assert p.read_bytes() == b"0123"
    sftp.truncate(str(p), 6)
    assert p.read_bytes() == b"0123\0\0"
    st = os.stat(p)
    sftp.chown(str(p), st.st_uid, st.st_gid)
    if os.getuid() == 0:
        nobody = pwd.getpwnam("nobody")
        sftp.chown(str(p), nobody.pw_uid, nobody.pw_gid)
        st = os.stat(p)
        assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    # the same on an open file (fsetstat)
    with sftp.open(str(p), "r+") as f:
        f.chmod(0o600)
        f.truncate(2)
        f.utime((3000000, 4000000))
        if os.getuid() == 0:
            f.chown(0, 0)
    st = os.stat(p)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_mtime == 4000000
    assert p.read_bytes() == b"01"
    if os.getuid() == 0:
        assert (st.st_uid, st.st_gid) == (0, 0)
    with pytest.raises(IOError):
        sftp.chmod(str(workdir / "missing"), 0o600)


def test_listdir(sftp, workdir):
    names = {"a", "b c", "ünï", "d"}
    for n in names - {"d"}:
        (workdir / n).write_bytes(n.encode())
    os.mkdir(workdir / "d")
    assert set(sftp.listdir(str(workdir))) == names
    attrs = {a.filename: a for a in sftp.listdir_attr(str(workdir))}
    assert set(attrs) == names
    for n in names:
        _same_stat(attrs[n], os.lstat(workdir / n))
    assert attrs["d"].longname.startswith("d")
    assert attrs["a"].longname.startswith("-rw")
    assert attrs["a"].longname.endswith(" a")
    assert {a.filename for a in sftp.listdir_iter(str(workdir))} == names


def test_listdir_many(sftp, workdir):
    names = {"file-%04d-%s" % (i, "x" * (i % 50)) for i in range(1500)}
    for n in names:
        (workdir / n).touch()
    assert set(sftp.listdir(str(workdir))) == names


def test_mkdir_rmdir_remove(sftp, workdir):
    d = str(workdir / "d")
    sftp.mkdir(d, 0o750)
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o750 & ~_umask()
    with pytest.raises(IOError):
        sftp.mkdir(d)
    (workdir / "d" / "f").write_bytes(b"")
    with pytest.raises(IOError):
        sftp.rmdir(d)
    sftp.remove(str(workdir / "d" / "f"))
    with pytest.raises(IOError) as e:
        sftp.remove(str(workdir / "d" / "f"))
    assert e.value.errno == errno.ENOENT
    sftp.rmdir(d)
    assert not os.path.exists(d)


def _umask():
    # sshd runs the server with its own umask (022 unless configured)
    return 0o022


def test_rename_and_posix_rename(sftp, workdir):
    (workdir / "a").write_bytes(b"A")
    (workdir / "b").write_bytes(b"B")
    with pytest.raises(IOError):
        sftp.rename(str(workdir / "a"), str(workdir / "b"))
    assert (workdir / "b").read_bytes() == b"B"
    sftp.posix_rename(str(workdir / "a"), str(workdir / "b"))
    assert (workdir / "b").read_bytes() == b"A" and not (workdir / "a").exists()
    sftp.rename(str(workdir / "b"), str(workdir / "c"))
    assert (workdir / "c").read_bytes() == b"A"


def test_symlink_readlink_normalize(sftp, workdir):
    (workdir / "target").write_bytes(b"t")
    os.mkdir(workdir / "dir")
    os.symlink("dir", workdir / "dirlink")
    sftp.symlink("target", str(workdir / "link"))
    assert os.readlink(workdir / "link") == "target"
    assert sftp.readlink(str(workdir / "link")) == "target"
    with pytest.raises(IOError):
        sftp.readlink(str(workdir / "target"))
    wd = os.path.realpath(workdir)
    assert sftp.normalize(str(workdir / "." / "dirlink" / "..")) == wd
    assert sftp.normalize(str(workdir / "dirlink")) == wd + "/dir"
    assert sftp.normalize(str(workdir / "newname")) == wd + "/newname"
    home = pwd.getpwuid(os.getuid()).pw_dir
    assert sftp.normalize(".") == os.path.realpath(home)
    sftp.chdir(str(workdir))
    assert sftp.getcwd() == wd
    assert sftp.stat("target").st_size == 1
    assert sftp.normalize("link") == wd + "/target"


def test_big_file_prefetch_readv_get_put(sftp, workdir):
    data = os.urandom(5 * MiB + 12345)
    (workdir / "big").write_bytes(data)
    with sftp.open(str(workdir / "big"), "r") as f:
        f.prefetch()
        got = f.read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    with sftp.open(str(workdir / "big"), "r") as f:
        chunks = [(0, 10), (MiB, 70000), (5 * MiB, 12345), (3, 300000)]
        out = list(f.readv(chunks))
    assert out == [data[o:o + n] for o, n in chunks]
    sftp.get(str(workdir / "big"), str(workdir / "copy"))
    assert (workdir / "copy").read_bytes() == data
    sftp.put(str(workdir / "copy"), str(workdir / "put"))
    assert (workdir / "put").read_bytes() == data


def test_pipelined_writes_and_flush(sftp, workdir):
    data = os.urandom(3 * MiB)
    with sftp.open(str(workdir / "w"), "w") as f:
        f.set_pipelined(True)
        for off in range(0, len(data), 32768):
            f.write(data[off:off + 32768])
        f.flush()
        assert f.stat().st_size == len(data)
    assert (workdir / "w").read_bytes() == data


def _ext(sftp, name, *args):
    t, msg = sftp._request(CMD_EXTENDED, name, *args)
    return t, msg


def _rest(msg):
    return msg.get_remainder()


def test_statvfs_and_fstatvfs_via_raw_request(sftp, workdir):
    (workdir / "f").write_bytes(b"x")
    t, msg = _ext(sftp, "statvfs@openssh.com", str(workdir))
    assert t == CMD_EXTENDED_REPLY
    d = decode_statvfs(_rest(msg))
    st = os.statvfs(workdir)
    assert (d["bsize"], d["frsize"], d["blocks"], d["files"], d["namemax"]) == \
        (st.f_bsize, st.f_frsize, st.f_blocks, st.f_files, st.f_namemax)
    with sftp.open(str(workdir / "f")) as f:
        t, msg = _ext(sftp, "fstatvfs@openssh.com", f.handle)
        assert t == CMD_EXTENDED_REPLY
        assert decode_statvfs(_rest(msg))["fsid"] == st.f_fsid
    with pytest.raises(IOError):
        _ext(sftp, "statvfs@openssh.com", str(workdir / "missing"))


def test_other_extensions_via_raw_request(sftp, workdir):
    (workdir / "f").write_bytes(b"abc")
    _ext(sftp, "hardlink@openssh.com", str(workdir / "f"), str(workdir / "hl"))
    assert os.stat(workdir / "hl").st_ino == os.stat(workdir / "f").st_ino
    with sftp.open(str(workdir / "f"), "r+") as f:
        f.write(b"X")
        f.flush()
        _ext(sftp, "fsync@openssh.com", f.handle)
    t, msg = _ext(sftp, "limits@openssh.com")
    lim = decode_limits(_rest(msg))
    assert lim["max_read_length"] == 261120 and lim["max_open_handles"] > 0
    t, msg = _ext(sftp, "users-groups-by-id@openssh.com", struct.pack(">I", 0), b"")
    assert decode_users_groups(_rest(msg)) == (["root"], [])
    t, msg = _ext(sftp, "expand-path@openssh.com", "~")
    assert msg.get_int() == 1
    home = pwd.getpwuid(os.getuid()).pw_dir
    assert msg.get_text() == os.path.realpath(home)
    t, msg = _ext(sftp, "home-directory", sshd_user())
    assert msg.get_int() == 1 and msg.get_text() == home
    os.symlink("f", workdir / "link")
    from paramiko.sftp_attr import SFTPAttributes
    a = SFTPAttributes()
    a.st_atime, a.st_mtime = 1000000, 2000000
    _ext(sftp, "lsetstat@openssh.com", str(workdir / "link"), a)
    assert os.lstat(workdir / "link").st_mtime == 2000000
    assert os.stat(workdir / "f").st_mtime != 2000000
    # copy-data: the whole of f into a new file
    with sftp.open(str(workdir / "f"), "r") as src, sftp.open(str(workdir / "g"), "w") as dst:
        _ext(sftp, "copy-data", src.handle, p_long(0), p_long(0), dst.handle, p_long(0))
    assert (workdir / "g").read_bytes() == b"Xbc"
    with pytest.raises(IOError):
        _ext(sftp, "no-such-extension@example.com")


def sshd_user():
    return pwd.getpwuid(os.getuid()).pw_name


def test_many_sessions_on_one_connection(sshd, hashi_server, workdir):
    """Several SFTP channels on one SSH connection, used interleaved."""
    client = _connect(sshd)
    try:
        t = client.get_transport()
        sessions = [paramiko.SFTPClient.from_transport(t) for _ in range(5)]
        files = [s.open(str(workdir / ("f%d" % i)), "w") for i, s in enumerate(sessions)]
        for round_ in range(20):
            for i, f in enumerate(files):
                f.write(b"%d:%d\n" % (i, round_))
        for f in files:
            f.close()
        for i, s in enumerate(sessions):
            assert s.open(str(workdir / ("f%d" % i))).read() == \
                b"".join(b"%d:%d\n" % (i, r) for r in range(20))
            s.close()
    finally:
        client.close()
