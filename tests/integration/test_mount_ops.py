"""Every filesystem operation on a real hashi mount.

Each test runs four times: as root and as an unprivileged user (who mounts
through fusermount3 and logs in as herself), against OpenSSH's sftp-server
and against hashi-sftp-server. The mount is shared by the module's tests
(fixture `mnt`); each test works in a fresh directory, reached both through
the mount (m) and directly as the server sees it (e), because the sshd runs
on this machine. Errors are compared with what a local filesystem gives.
"""

import errno
import hashlib
import os
import reprlib
import stat
import subprocess
import time

import pytest

from mountfix import *  # noqa: F401,F403 - fixtures

GiB = 1 << 30
MiB = 1 << 20


def raises_errno(code, fn, *args, **kw):
    """Call fn and require OSError with exactly this errno."""
    what = f"{getattr(fn, '__name__', fn)}{reprlib.repr(tuple(map(str, args)))}"
    try:
        fn(*args, **kw)
    except OSError as e:
        got = e.errno
    else:
        raise AssertionError(f"{what} succeeded; expected {errno.errorcode[code]}")
    if got != code:
        raise AssertionError(f"{what}: expected {errno.errorcode[code]}, "
                             f"got {errno.errorcode.get(got, got)} ({os.strerror(got)})")


def read_bytes(p):
    with open(p, "rb") as f:
        return f.read()


def write_bytes(p, data, mode="wb"):
    with open(p, mode) as f:
        f.write(data)


def only_user(mnt):
    if mnt.who.is_root:
        pytest.skip("a permission test: needs the unprivileged account")


# --------------------------------------------------------------------------
# data both ways

def test_write_local_read_mount_and_back(mnt):
    def body(m, e):
        data = os.urandom(300_001)
        write_bytes(e / "from-server", data)
        assert read_bytes(m / "from-server") == data
        assert os.stat(m / "from-server").st_size == len(data)

        data2 = os.urandom(MiB + 123)
        write_bytes(m / "from-mount", data2)
        assert read_bytes(e / "from-mount") == data2
        assert read_bytes(m / "from-mount") == data2
        assert sorted(os.listdir(m)) == ["from-mount", "from-server"]
    mnt.run(body)


def test_read_write_patterns(mnt):
    """Odd-sized writes and reads, pread/pwrite at scattered offsets, and an
    overwrite in the middle, all checked against a model and the server."""
    def body(m, e):
        model = bytearray(os.urandom(3 * MiB + 7))
        with open(m / "f", "wb") as f:
            for i in range(0, len(model), 65537):
                f.write(model[i:i + 65537])
        assert hashlib.sha256(read_bytes(e / "f")).digest() == hashlib.sha256(model).digest()
        fd = os.open(m / "f", os.O_RDWR)
        try:
            for off, n in [(0, 1), (4095, 2), (131071, 262145), (len(model) - 10, 100),
                           (len(model), 10), (len(model) + 5000, 10)]:
                assert os.pread(fd, n, off) == bytes(model[off:off + n]), (off, n)
            patch = os.urandom(200_000)
            assert os.pwrite(fd, patch, 1_000_001) == len(patch)
            model[1_000_001:1_000_001 + len(patch)] = patch
            assert os.pread(fd, 300_000, 950_000) == bytes(model[950_000:1_250_000])
        finally:
            os.close(fd)
        assert read_bytes(e / "f") == bytes(model)
        with open(m / "f", "rb") as f:
            got = bytearray()
            while True:
                b = f.read(12345)
                if not b:
                    break
                got += b
        assert got == model
    mnt.run(body)


def test_server_side_changes_visible(mnt_nocache):
    """With cache=no what another client does on the server shows at once: new files, new contents, modes, renames, removals."""
    def body(m, e):
        assert os.listdir(m) == []
        (e / "new").write_text("one")
        assert (m / "new").read_text() == "one"
        with open(e / "new", "a") as f:
            f.write(" two")
        assert os.stat(m / "new").st_size == 7
        assert (m / "new").read_text() == "one two"
        os.chmod(e / "new", 0o600)
        assert stat.S_IMODE(os.stat(m / "new").st_mode) == 0o600
        os.utime(e / "new", (1_000_000_000, 1_200_000_000))
        assert os.stat(m / "new").st_mtime == 1_200_000_000
        os.rename(e / "new", e / "renamed")
        raises_errno(errno.ENOENT, os.stat, m / "new")
        assert (m / "renamed").read_text() == "one two"
        os.mkdir(e / "sub")
        (e / "sub" / "x").write_text("x")
        assert sorted(os.listdir(m)) == ["renamed", "sub"]
        assert os.listdir(m / "sub") == ["x"]
        os.unlink(e / "renamed")
        raises_errno(errno.ENOENT, os.stat, m / "renamed")
        raises_errno(errno.ENOENT, open, m / "renamed")
        # The same name becomes a directory, then a file again.
        os.unlink(e / "sub" / "x")
        os.mkdir(e / "sub" / "x")
        assert stat.S_ISDIR(os.stat(m / "sub" / "x").st_mode)
        os.rmdir(e / "sub" / "x")
        (e / "sub" / "x").write_text("file again")
        assert stat.S_ISREG(os.stat(m / "sub" / "x").st_mode)
        assert (m / "sub" / "x").read_text() == "file again"
    mnt_nocache.run(body)


# --------------------------------------------------------------------------
# open files and names that change

def test_unlink_while_open(mnt):
    def body(m, e):
        d = m / "d"
        os.mkdir(d)
        fd = os.open(d / "f", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.write(fd, b"before")
            os.unlink(d / "f")
            raises_errno(errno.ENOENT, os.stat, d / "f")
            assert os.listdir(d) == [], "no .fuse_hidden or other leftovers"
            assert os.listdir(e / "d") == []
            assert os.pwrite(fd, b"after", 6) == 5
            assert os.pread(fd, 100, 0) == b"beforeafter"
        finally:
            os.close(fd)
        os.rmdir(d)  # nothing hidden blocks it
        assert not (e / "d").exists()
    mnt.run(body)


def test_fstat_after_unlink(mnt):
    def body(m, e):
        fd = os.open(m / "f", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.write(fd, b"before")
            os.unlink(m / "f")
            st = os.fstat(fd)
            assert st.st_size == 6
            assert st.st_nlink == 0
            os.ftruncate(fd, 2)
            assert os.fstat(fd).st_size == 2
        finally:
            os.close(fd)
    mnt.run(body)


def test_rename_over_open_file(mnt):
    def body(m, e):
        (e / "a").write_text("AAAA")
        (e / "b").write_text("BBBB")
        fd = os.open(m / "b", os.O_RDWR)
        try:
            ino_a = os.stat(m / "a").st_ino
            os.rename(m / "a", m / "b")
            assert not os.path.lexists(m / "a")
            assert (m / "b").read_text() == "AAAA"
            assert os.stat(m / "b").st_ino == ino_a
            assert os.pread(fd, 100, 0) == b"BBBB", "the open file is the old one"
            os.pwrite(fd, b"bb", 0)
            assert os.pread(fd, 100, 0) == b"bbBB"
        finally:
            os.close(fd)
        assert (e / "b").read_text() == "AAAA"
        assert os.listdir(e) == ["b"]
    mnt.run(body)


def test_rename_open_file_then_write(mnt):
    def body(m, e):
        fd = os.open(m / "old", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.write(fd, b"first ")
            os.rename(m / "old", m / "new")
            os.write(fd, b"second")
        finally:
            os.close(fd)
        assert (e / "new").read_bytes() == b"first second"
        assert (m / "new").read_bytes() == b"first second"
        assert not (e / "old").exists()
    mnt.run(body)


def test_append(mnt):
    def body(m, e):
        (m / "f").write_text("abc")
        with open(m / "f", "a") as f:
            f.write("def")
        assert (e / "f").read_text() == "abcdef"
        # O_APPEND means the end of the file on the server, even when another
        # client made it grow since the kernel last looked.
        fd = os.open(m / "f", os.O_WRONLY | os.O_APPEND)
        try:
            with open(e / "f", "a") as f:
                f.write("XYZ")
            os.write(fd, b"123")
        finally:
            os.close(fd)
        assert (e / "f").read_text() == "abcdefXYZ123"
        # Two appending descriptors interleave, nothing is overwritten.
        fd1 = os.open(m / "g", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        fd2 = os.open(m / "g", os.O_WRONLY | os.O_APPEND)
        try:
            for i in range(5):
                os.write(fd1, b"1%d" % i)
                os.write(fd2, b"2%d" % i)
        finally:
            os.close(fd1)
            os.close(fd2)
        assert (e / "g").read_bytes() == b"10201121122213231424"
        assert (m / "g").read_bytes() == b"10201121122213231424"
    mnt.run(body)


def test_sparse_writes(mnt):
    def body(m, e):
        fd = os.open(m / "s", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            assert os.pwrite(fd, b"end", 10 * MiB) == 3
            assert os.pwrite(fd, b"mid", 5 * MiB) == 3
            assert os.fstat(fd).st_size == 10 * MiB + 3
            assert os.pread(fd, 4096, 0) == bytes(4096)
            assert os.pread(fd, 5, 5 * MiB - 1) == b"\0mid\0"
            assert os.pread(fd, 10, 10 * MiB - 2) == b"\0\0end"
        finally:
            os.close(fd)
        st = os.stat(e / "s")
        assert st.st_size == 10 * MiB + 3
        assert st.st_blocks * 512 < MiB, "the holes stayed holes on the server"
        data = read_bytes(e / "s")
        assert data[5 * MiB:5 * MiB + 3] == b"mid" and data.count(0) == len(data) - 6
    mnt.run(body)


def test_large_file_offsets(mnt):
    """Offsets past 4 GiB (and a write across the 4 GiB line) keep all 64 bits."""
    def body(m, e):
        off = 5 * GiB + 17
        fd = os.open(m / "big", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            assert os.pwrite(fd, b"tail-data", off) == 9
            assert os.pwrite(fd, b"abcd", 4 * GiB - 2) == 4
            assert os.fstat(fd).st_size == off + 9
            assert os.pread(fd, 9, off) == b"tail-data"
            assert os.pread(fd, 6, 4 * GiB - 3) == b"\0abcd\0"
            assert os.pread(fd, 4, 17) == bytes(4)
        finally:
            os.close(fd)
        assert os.stat(m / "big").st_size == off + 9
        assert os.stat(e / "big").st_size == off + 9
        with open(e / "big", "rb") as f:
            f.seek(off)
            assert f.read() == b"tail-data"
            f.seek(4 * GiB - 2)
            assert f.read(4) == b"abcd"
        os.truncate(m / "big", 4 * GiB + 1)
        assert os.stat(e / "big").st_size == 4 * GiB + 1
        assert os.stat(m / "big").st_size == 4 * GiB + 1
        fd = os.open(m / "big", os.O_RDWR)
        try:
            os.ftruncate(fd, 6 * GiB)
            assert os.fstat(fd).st_size == 6 * GiB
        finally:
            os.close(fd)
        assert os.stat(e / "big").st_size == 6 * GiB
        os.unlink(m / "big")
    mnt.run(body)


def test_thousands_of_entries(mnt):
    def body(m, e):
        names = {f"file-{i:05d}" for i in range(3000)}
        os.mkdir(e / "many")
        for n in names:
            with open(e / "many" / n, "wb") as f:
                f.write(n.encode())
        got = os.listdir(m / "many")
        assert len(got) == len(names) and set(got) == names
        inos = set()
        for ent in os.scandir(m / "many"):
            assert ent.is_file(follow_symlinks=False)
            inos.add(ent.inode())
        assert len(inos) == len(names) and 0 not in inos
        # What the listing said matches what a stat says.
        for n in ("file-00000", "file-01500", "file-02999"):
            assert os.stat(m / "many" / n).st_size == len(n)
        assert (m / "many" / "file-02999").read_text() == "file-02999"
        # And made through the mount.
        os.mkdir(m / "made")
        for i in range(400):
            os.close(os.open(m / "made" / f"n{i}", os.O_CREAT | os.O_WRONLY, 0o644))
        assert set(os.listdir(e / "made")) == {f"n{i}" for i in range(400)}
        assert set(os.listdir(m / "made")) == {f"n{i}" for i in range(400)}
        for i in range(400):
            os.unlink(m / "made" / f"n{i}")
        os.rmdir(m / "made")
        assert not (e / "made").exists()
    mnt.run(body)


NAMES = ["with space", "new\nline", "tab\there", "ünïcødé-日本語", "emoji-🙂",
         " leading", "trailing ", "-dash", "quote'\"", "back\\slash", "%s%n", "*?[glob]",
         "x" * 255]


def test_special_names(mnt):
    def body(m, e):
        for n in NAMES:
            write_bytes(m / n, n.encode())
        assert set(os.listdir(e)) == set(NAMES)
        for n in NAMES:
            assert read_bytes(e / n) == n.encode()
        os.mkdir(e / "srv")
        for n in NAMES:
            write_bytes(e / "srv" / n, b"s:" + n.encode())
        assert set(os.listdir(m / "srv")) == set(NAMES)
        for n in NAMES:
            assert read_bytes(m / "srv" / n) == b"s:" + n.encode()
        os.mkdir(m / "dir with\nnewline ü")
        os.rename(m / "with space", m / "dir with\nnewline ü" / "moved ✓")
        assert read_bytes(e / "dir with\nnewline ü" / "moved ✓") == b"with space"
        os.symlink("ünïcødé-日本語", m / "link ✓")
        assert os.readlink(e / "link ✓") == "ünïcødé-日本語"
        assert read_bytes(m / "link ✓") == "ünïcødé-日本語".encode()
    mnt.run(body)


def test_name_too_long(mnt):
    def body(m, e):
        long = "y" * 256  # one byte more than NAME_MAX
        raises_errno(errno.ENAMETOOLONG, os.stat, m / long)
        raises_errno(errno.ENAMETOOLONG, os.open, m / long, os.O_CREAT | os.O_WRONLY)
        raises_errno(errno.ENAMETOOLONG, os.mkdir, m / long)
        (m / "ok").write_text("x")
        raises_errno(errno.ENAMETOOLONG, os.rename, m / "ok", m / long)
    mnt.run(body)


def test_symlink_loops(mnt):
    def body(m, e):
        os.symlink("b", m / "a")
        os.symlink("a", m / "b")
        os.symlink("self", m / "self")
        (e / "srv-x").symlink_to("srv-y")
        (e / "srv-y").symlink_to("srv-x")
        for n in ("a", "b", "self", "srv-x"):
            raises_errno(errno.ELOOP, os.stat, m / n)
            raises_errno(errno.ELOOP, os.open, m / n, os.O_RDONLY)
            raises_errno(errno.ELOOP, os.open, m / n, os.O_WRONLY | os.O_CREAT)
            assert stat.S_ISLNK(os.lstat(m / n).st_mode)
        raises_errno(errno.ELOOP, os.listdir, m / "a")
        assert os.readlink(m / "a") == "b"
        os.unlink(m / "self")
        assert not os.path.lexists(e / "self")
    mnt.run(body)


def test_permission_denied(mnt, menv):
    """The unprivileged user on root's mode-700 directory and on root's files
    gets what she would get locally (the server decides, as her)."""
    only_user(mnt)
    m, e = mnt.fresh()
    os.mkdir(e / "locked", 0o700)
    (e / "locked" / "f").write_text("secret")
    os.mkdir(e / "rodir", 0o755)
    (e / "rodir" / "x").write_text("x")
    (e / "rofile").write_text("ro")
    os.chmod(e / "rofile", 0o644)
    for p in ("locked", "locked/f", "rodir", "rodir/x", "rofile"):
        os.chown(e / p, 0, 0)

    def body():
        raises_errno(errno.EACCES, os.listdir, m / "locked")
        # at opendir already, as locally (not at the first readdir)
        raises_errno(errno.EACCES, os.open, m / "locked", os.O_RDONLY | os.O_DIRECTORY)
        raises_errno(errno.EACCES, os.stat, m / "locked" / "f")
        raises_errno(errno.EACCES, open, m / "locked" / "f")
        raises_errno(errno.EACCES, os.open, m / "locked" / "new", os.O_CREAT | os.O_WRONLY)
        raises_errno(errno.EACCES, open, m / "rofile", "w")
        raises_errno(errno.EACCES, open, m / "rofile", "a")
        raises_errno(errno.EACCES, os.truncate, m / "rofile", 0)
        raises_errno(errno.EACCES, os.unlink, m / "rodir" / "x")
        raises_errno(errno.EACCES, os.mkdir, m / "rodir" / "new")
        raises_errno(errno.EACCES, os.open, m / "rodir" / "new", os.O_CREAT | os.O_WRONLY)
        raises_errno(errno.EACCES, os.rename, m / "rodir" / "x", m / "stolen")
        raises_errno(errno.EACCES, os.symlink, "t", m / "rodir" / "l")
        raises_errno(errno.EACCES, os.utime, m / "rofile")  # "now" needs write access
        assert (m / "rofile").read_text() == "ro"
        assert os.access(m / "rofile", os.R_OK)
        assert not os.access(m / "rofile", os.W_OK)
        assert not os.access(m / "locked", os.R_OK)
        assert not os.access(m / "locked", os.X_OK)
        assert os.access(m / "rodir", os.R_OK | os.X_OK)
        assert not os.access(m / "rodir", os.W_OK)
    mnt.do(body)
    assert (e / "rofile").read_text() == "ro"
    assert sorted(os.listdir(e / "rodir")) == ["x"]


def test_setattr_by_non_owner(mnt, menv):
    """Changing what only the owner may change is EPERM, as locally."""
    only_user(mnt)
    m, e = mnt.fresh()
    (e / "rofile").write_text("ro")
    os.chmod(e / "rofile", 0o666)
    os.chown(e / "rofile", 0, 0)
    (e / "mine").write_text("mine")
    os.chown(e / "mine", menv.user.uid, menv.user.gid)
    os.symlink("mine", e / "link")
    os.lchown(e / "link", menv.user.uid, menv.user.gid)

    def body():
        raises_errno(errno.EPERM, os.chmod, m / "rofile", 0o600)
        raises_errno(errno.EPERM, os.utime, m / "rofile", (1, 1))
        raises_errno(errno.EPERM, os.chown, m / "rofile", menv.user.uid, -1)
        raises_errno(errno.EPERM, os.chown, m / "mine", 0, -1)
        raises_errno(errno.EPERM, os.lchown, m / "link", 0, 0)
    mnt.do(body)
    st = os.stat(e / "rofile")
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o666, 0)


# --------------------------------------------------------------------------
# attributes

def test_getattr_matches_server(mnt):
    def body(m, e):
        (e / "f").write_bytes(b"12345")
        os.chmod(e / "f", 0o640)
        os.utime(e / "f", (1_500_000_000, 1_600_000_000))
        os.mkdir(e / "d", 0o751)
        os.chmod(e / "d", 0o751)
        (e / "l").symlink_to("f")
        for n in ("f", "d", "l"):
            sm, se = os.lstat(m / n), os.lstat(e / n)
            assert sm.st_mode == se.st_mode, n
            assert sm.st_size == se.st_size, n
            assert (sm.st_uid, sm.st_gid) == (se.st_uid, se.st_gid), n
            assert int(sm.st_mtime) == int(se.st_mtime), n
            assert sm.st_ino != 0
        assert os.stat(m / "f").st_mtime == 1_600_000_000
        assert os.stat(m / "f").st_atime == 1_500_000_000
        assert os.stat(m / "l").st_ino == os.stat(m / "f").st_ino, "stat follows the link"
        assert os.stat(m / "f").st_ino == os.stat(m / "f").st_ino
        assert len({os.lstat(m / n).st_ino for n in ("f", "d", "l")}) == 3
        fd = os.open(m / "f", os.O_RDONLY)
        try:
            assert os.fstat(fd).st_size == 5
        finally:
            os.close(fd)
        raises_errno(errno.ENOENT, os.stat, m / "missing")
        raises_errno(errno.ENOENT, os.stat, m / "missing" / "deeper")
        raises_errno(errno.ENOTDIR, os.stat, m / "f" / "x")
    mnt.run(body)


def test_chmod(mnt):
    def body(m, e):
        (m / "f").write_text("x")
        os.chmod(m / "f", 0o604)
        assert stat.S_IMODE(os.stat(e / "f").st_mode) == 0o604
        assert stat.S_IMODE(os.stat(m / "f").st_mode) == 0o604
        os.mkdir(m / "d")
        os.chmod(m / "d", 0o710)
        assert stat.S_IMODE(os.stat(e / "d").st_mode) == 0o710
        os.chmod(m / "f", 0o4755)
        assert stat.S_IMODE(os.stat(e / "f").st_mode) == 0o4755
        fd = os.open(m / "f", os.O_RDONLY)
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        assert stat.S_IMODE(os.stat(e / "f").st_mode) == 0o600
        raises_errno(errno.ENOENT, os.chmod, m / "missing", 0o600)
    mnt.run(body)


def test_chown(mnt, menv):
    def body(m, e):
        (m / "f").write_text("x")
        (m / "t").write_text("target")
        os.symlink("t", m / "l")
        me = os.getuid(), os.getgid()
        os.chown(m / "f", me[0], me[1])  # to oneself: allowed to everyone
        assert (os.stat(e / "f").st_uid, os.stat(e / "f").st_gid) == me
        if os.getuid() == 0:
            os.chown(m / "f", 4321, 8765)
            assert (os.stat(e / "f").st_uid, os.stat(e / "f").st_gid) == (4321, 8765)
            assert (os.stat(m / "f").st_uid, os.stat(m / "f").st_gid) == (4321, 8765)
            os.chown(m / "f", -1, 555)  # half an owner: the uid stays
            assert (os.stat(e / "f").st_uid, os.stat(e / "f").st_gid) == (4321, 555)
            os.chown(m / "f", 777, -1)
            assert (os.stat(e / "f").st_uid, os.stat(e / "f").st_gid) == (777, 555)
            # lchown changes the link, not what it points to
            os.lchown(m / "l", 1234, 1234)
            assert (os.lstat(e / "l").st_uid, os.lstat(e / "l").st_gid) == (1234, 1234)
            assert (os.stat(e / "t").st_uid, os.stat(e / "t").st_gid) == me
        else:  # (the errno for giving a file away: test_setattr_by_non_owner)
            try:
                os.chown(m / "f", 0, -1)
            except PermissionError:
                pass
            else:
                raise AssertionError("an unprivileged user gave a file to root")
            assert (os.stat(e / "f").st_uid, os.stat(e / "f").st_gid) == me
    mnt.run(body)


def test_truncate(mnt):
    def body(m, e):
        (m / "f").write_bytes(b"0123456789")
        os.truncate(m / "f", 3)
        assert (e / "f").read_bytes() == b"012"
        assert os.stat(m / "f").st_size == 3
        os.truncate(m / "f", 6)
        assert (e / "f").read_bytes() == b"012\0\0\0"
        assert (m / "f").read_bytes() == b"012\0\0\0"
        fd = os.open(m / "f", os.O_RDWR)
        try:
            os.ftruncate(fd, 1)
            assert os.fstat(fd).st_size == 1
            assert (e / "f").read_bytes() == b"0"
            os.ftruncate(fd, 0)
            os.write(fd, b"ab")  # the position is 0 still
        finally:
            os.close(fd)
        assert (e / "f").read_bytes() == b"ab"
        fd = os.open(m / "f", os.O_RDONLY)
        try:
            raises_errno(errno.EINVAL, os.ftruncate, fd, 0)
        finally:
            os.close(fd)
        raises_errno(errno.ENOENT, os.truncate, m / "missing", 0)
        os.mkdir(m / "d")
        raises_errno(errno.EISDIR, os.truncate, m / "d", 0)
    mnt.run(body)


def test_utimens(mnt):
    def body(m, e):
        (m / "f").write_text("x")
        os.utime(m / "f", ns=(1_000_000_000 * 10**9, 1_100_000_000 * 10**9))
        st = os.stat(e / "f")
        assert (int(st.st_atime), int(st.st_mtime)) == (1_000_000_000, 1_100_000_000)
        assert int(os.stat(m / "f").st_mtime) == 1_100_000_000
        os.utime(m / "f", (0, 0))  # the epoch, not "now"
        st = os.stat(e / "f")
        assert (st.st_atime, st.st_mtime) == (0, 0)
        before = time.time()
        os.utime(m / "f")  # now
        assert abs(os.stat(e / "f").st_mtime - before) < 30
        # Half a pair: touch -m leaves the atime alone, touch -a the mtime.
        os.utime(m / "f", (1_000_000_000, 1_100_000_000))
        subprocess.run(["touch", "-m", "-d", "@1200000000", str(m / "f")], check=True)
        st = os.stat(e / "f")
        assert (int(st.st_atime), int(st.st_mtime)) == (1_000_000_000, 1_200_000_000)
        subprocess.run(["touch", "-a", "-d", "@1300000000", str(m / "f")], check=True)
        st = os.stat(e / "f")
        assert (int(st.st_atime), int(st.st_mtime)) == (1_300_000_000, 1_200_000_000)
        os.mkdir(m / "d")
        os.utime(m / "d", (5, 6))
        assert os.stat(e / "d").st_mtime == 6
        raises_errno(errno.ENOENT, os.utime, m / "missing", (1, 1))
    mnt.run(body)


def test_touch_h_symlink(mnt):
    """touch -h changes the link's own times (lsetstat), not its target's."""
    def body(m, e):
        (m / "target").write_text("t")
        os.utime(m / "target", (1_000_000_000, 1_000_000_000))
        os.symlink("target", m / "link")
        os.symlink("nowhere", m / "dangling")
        subprocess.run(["touch", "-h", "-d", "@1234567890", str(m / "link")], check=True)
        assert os.lstat(e / "link").st_mtime == 1_234_567_890
        assert os.lstat(m / "link").st_mtime == 1_234_567_890
        assert os.stat(e / "target").st_mtime == 1_000_000_000
        subprocess.run(["touch", "-h", "-d", "@1111111111", str(m / "dangling")], check=True)
        assert os.lstat(e / "dangling").st_mtime == 1_111_111_111
        assert not os.path.exists(e / "nowhere")
        os.utime(m / "link", (42, 43), follow_symlinks=False)
        assert (os.lstat(e / "link").st_atime, os.lstat(e / "link").st_mtime) == (42, 43)
        assert os.stat(e / "target").st_mtime == 1_000_000_000
    mnt.run(body)


def test_setattr_answers_with_the_servers_attributes(mnt):
    """A setattr whose "before" came from the cache is answered with what the
    server has after it (a stat sent right behind the SETSTAT), not with the
    cache's copy of the rest: here the file grew on the server meanwhile."""
    def body(m, e):
        (m / "f").write_bytes(b"1")
        assert os.stat(m / "f").st_size == 1  # now in the cache
        (e / "f").write_bytes(b"12345")
        os.chmod(m / "f", 0o600)
        st = os.stat(m / "f")  # (the kernel keeps what the setattr answered)
        assert (st.st_size, stat.S_IMODE(st.st_mode)) == (5, 0o600)
        os.utime(m / "f", (11, 12))
        st = os.stat(m / "f")
        assert (st.st_size, st.st_atime, st.st_mtime) == (5, 11, 12)
        assert (os.stat(e / "f").st_atime, os.stat(e / "f").st_mtime) == (11, 12)
    mnt.run(body)


def test_times_of_unknown_dir_and_link(mnt_nocache):
    """With nothing known of what a path is (cache=no; tar setting a
    directory's times at the end), times go by lsetstat with the stat for the
    answer behind them: a directory gets them, a symlink keeps them to itself
    and its target keeps its own."""
    def body(m, e):
        os.mkdir(m / "d")
        (m / "d" / "x").write_text("x")
        os.utime(m / "d", (21, 22))
        assert (os.stat(m / "d").st_atime, os.stat(m / "d").st_mtime) == (21, 22)
        assert (os.stat(e / "d").st_atime, os.stat(e / "d").st_mtime) == (21, 22)
        os.utime(e / "d", (1_000_000_000, 1_000_000_000))
        os.symlink("d", e / "l")
        os.utime(m / "l", (31, 32), follow_symlinks=False)
        assert (os.lstat(m / "l").st_atime, os.lstat(m / "l").st_mtime) == (31, 32)
        assert (os.lstat(e / "l").st_atime, os.lstat(e / "l").st_mtime) == (31, 32)
        assert os.stat(e / "d").st_mtime == 1_000_000_000
        os.utime(m / "l", (41, 42))  # following it: the directory's
        assert os.stat(e / "d").st_mtime == 42
        assert os.lstat(e / "l").st_mtime == 32
        os.chown(m / "d", os.stat(e / "d").st_uid, os.stat(e / "d").st_gid)
        assert os.stat(e / "d").st_mtime == 42
    mnt_nocache.run(body)


# --------------------------------------------------------------------------
# names

def test_symlink_readlink(mnt):
    def body(m, e):
        (m / "file").write_text("content")
        os.symlink("file", m / "rel")
        os.symlink("../some where/target", m / "odd")
        os.symlink("/etc/passwd", m / "abs")
        assert os.readlink(m / "rel") == "file"
        assert os.readlink(e / "rel") == "file", "the link is the new name, the target its text"
        assert os.readlink(m / "odd") == "../some where/target"
        assert os.readlink(e / "odd") == "../some where/target"
        # contain_symlinks (the default): made as asked, never shown or followed
        assert os.readlink(e / "abs") == "/etc/passwd"
        raises_errno(errno.EPERM, os.readlink, m / "abs")
        assert (m / "rel").read_text() == "content"
        (e / "srvlink").symlink_to("file")
        assert os.readlink(m / "srvlink") == "file"
        assert (m / "srvlink").read_text() == "content"
        raises_errno(errno.EEXIST, os.symlink, "x", m / "rel")
        raises_errno(errno.EEXIST, os.symlink, "x", m / "file")
        raises_errno(errno.EINVAL, os.readlink, m / "file")
        raises_errno(errno.ENOENT, os.readlink, m / "missing")
        raises_errno(errno.ENOENT, os.symlink, "x", m / "missing" / "l")
    mnt.run(body)


def test_mkdir_rmdir_unlink_errors(mnt):
    def body(m, e):
        os.umask(0o022)
        os.mkdir(m / "d", 0o777)
        assert stat.S_ISDIR(os.stat(e / "d").st_mode)
        assert stat.S_IMODE(os.stat(e / "d").st_mode) == 0o755, "the umask applies"
        os.mkdir(m / "d700", 0o700)
        assert stat.S_IMODE(os.stat(e / "d700").st_mode) == 0o700
        (m / "d" / "f").write_text("x")
        (m / "file").write_text("x")
        raises_errno(errno.EEXIST, os.mkdir, m / "d")
        raises_errno(errno.EEXIST, os.mkdir, m / "file")
        raises_errno(errno.ENOENT, os.mkdir, m / "missing" / "sub")
        raises_errno(errno.ENOTDIR, os.mkdir, m / "file" / "sub")
        raises_errno(errno.ENOTEMPTY, os.rmdir, m / "d")
        raises_errno(errno.ENOTDIR, os.rmdir, m / "file")
        raises_errno(errno.ENOENT, os.rmdir, m / "missing")
        raises_errno(errno.EISDIR, os.unlink, m / "d")
        raises_errno(errno.ENOENT, os.unlink, m / "missing")
        raises_errno(errno.ENOTDIR, os.unlink, m / "file" / "x")
        raises_errno(errno.EISDIR, os.open, m / "d", os.O_WRONLY)
        raises_errno(errno.EISDIR, os.open, m / "d", os.O_RDWR)
        raises_errno(errno.ENOENT, os.open, m / "missing", os.O_RDONLY)
        raises_errno(errno.ENOTDIR, os.listdir, m / "file")
        raises_errno(errno.ENOTDIR, os.open, m / "file", os.O_RDONLY | os.O_DIRECTORY)
        assert (e / "d" / "f").exists()
        os.unlink(m / "d" / "f")
        assert not (e / "d" / "f").exists()
        os.rmdir(m / "d")
        assert not (e / "d").exists()
        raises_errno(errno.ENOENT, os.stat, m / "d")
    mnt.run(body)


def test_rename(mnt):
    def body(m, e):
        (e / "a").write_text("a")
        (e / "b").write_text("b")
        os.makedirs(e / "dir" / "sub")
        (e / "dir" / "sub" / "x").write_text("x")
        os.mkdir(e / "empty")
        os.mkdir(e / "full")
        (e / "full" / "y").write_text("y")

        os.rename(m / "a", m / "a2")
        assert (e / "a2").read_text() == "a" and not (e / "a").exists()
        os.rename(m / "a2", m / "b")  # over an existing file
        assert (e / "b").read_text() == "a"
        assert (m / "b").read_text() == "a"
        assert sorted(os.listdir(m)) == ["b", "dir", "empty", "full"]

        # a directory with contents moves; its children follow
        assert (m / "dir" / "sub" / "x").read_text() == "x"
        os.rename(m / "dir", m / "moved")
        assert (m / "moved" / "sub" / "x").read_text() == "x"
        raises_errno(errno.ENOENT, os.stat, m / "dir" / "sub" / "x")
        assert (e / "moved" / "sub" / "x").exists()
        os.rename(m / "moved", m / "empty")  # over an empty directory
        assert (e / "empty" / "sub" / "x").exists()
        raises_errno(errno.ENOTEMPTY, os.rename, m / "empty", m / "full")
        raises_errno(errno.EISDIR, os.rename, m / "b", m / "full")
        raises_errno(errno.ENOTDIR, os.rename, m / "full", m / "b")
        raises_errno(errno.EINVAL, os.rename, m / "empty", m / "empty" / "sub" / "in-itself")
        raises_errno(errno.ENOENT, os.rename, m / "missing", m / "whatever")
        raises_errno(errno.ENOENT, os.rename, m / "b", m / "missing" / "b")

        (m / "c").write_text("c")
        raises_errno(errno.EEXIST, renameat2, m / "c", m / "b", RENAME_NOREPLACE)
        assert (e / "b").read_text() == "a" and (e / "c").read_text() == "c"
        renameat2(m / "c", m / "c2", RENAME_NOREPLACE)
        assert (e / "c2").read_text() == "c" and not (e / "c").exists()
        raises_errno(errno.EINVAL, renameat2, m / "c2", m / "b", RENAME_EXCHANGE)
        assert (e / "b").read_text() == "a" and (e / "c2").read_text() == "c"
    mnt.run(body)


def test_hardlink(mnt):
    def body(m, e):
        (m / "a").write_text("shared")
        os.link(m / "a", m / "b")
        assert (m / "b").read_text() == "shared"
        assert os.stat(e / "a").st_ino == os.stat(e / "b").st_ino
        assert os.stat(e / "a").st_nlink == 2
        with open(m / "a", "r+") as f:
            f.write("SH")
        assert (e / "b").read_text() == "SHared"
        assert (m / "b").read_text() == "SHared"
        raises_errno(errno.EEXIST, os.link, m / "a", m / "b")
        raises_errno(errno.ENOENT, os.link, m / "missing", m / "c")
        os.unlink(m / "a")
        assert (m / "b").read_text() == "SHared"
        assert os.stat(e / "b").st_nlink == 1
    mnt.run(body)


# --------------------------------------------------------------------------
# open, create, read, write, flush, release, fsync

def test_create_and_open_flags(mnt):
    def body(m, e):
        os.umask(0o022)
        fd = os.open(m / "f", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        os.write(fd, b"hello world")
        os.close(fd)
        assert stat.S_IMODE(os.stat(e / "f").st_mode) == 0o644, "the umask applies"
        assert (e / "f").read_bytes() == b"hello world"
        fd = os.open(m / "g", os.O_CREAT | os.O_WRONLY, 0o640)
        os.close(fd)
        assert stat.S_IMODE(os.stat(e / "g").st_mode) == 0o640
        assert stat.S_ISREG(os.stat(e / "g").st_mode)

        raises_errno(errno.EEXIST, os.open, m / "f", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.symlink("nowhere", m / "dangling")
        raises_errno(errno.EEXIST, os.open, m / "dangling", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        assert not os.path.lexists(e / "nowhere")

        fd = os.open(m / "f", os.O_CREAT | os.O_WRONLY)  # no O_TRUNC: the data stays
        os.write(fd, b"HE")
        os.close(fd)
        assert (e / "f").read_bytes() == b"HEllo world"
        fd = os.open(m / "f", os.O_WRONLY | os.O_TRUNC)
        assert os.fstat(fd).st_size == 0
        assert (e / "f").read_bytes() == b""
        os.write(fd, b"new")
        os.close(fd)
        assert (e / "f").read_bytes() == b"new"
        assert (m / "f").read_bytes() == b"new"

        fd = os.open(m / "f", os.O_RDONLY)
        try:
            raises_errno(errno.EBADF, os.write, fd, b"x")
        finally:
            os.close(fd)
        fd = os.open(m / "f", os.O_WRONLY)
        try:
            raises_errno(errno.EBADF, os.read, fd, 1)
        finally:
            os.close(fd)
        raises_errno(errno.ENOENT, os.open, m / "missing", os.O_WRONLY)
        raises_errno(errno.ENOENT, os.open, m / "missing" / "f", os.O_CREAT | os.O_WRONLY)
    mnt.run(body)


def test_fsync_and_close(mnt):
    def body(m, e):
        fd = os.open(m / "f", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            os.write(fd, b"a" * 100_000)
            os.fsync(fd)
            assert (e / "f").read_bytes() == b"a" * 100_000, "on the server after fsync"
            os.write(fd, b"b")
            os.fdatasync(fd)
            assert os.path.getsize(e / "f") == 100_001
        finally:
            os.close(fd)
        # close (flush + release) also leaves everything on the server
        with open(m / "g", "wb") as f:
            f.write(b"z" * 2_000_000)
        assert os.path.getsize(e / "g") == 2_000_000
        dfd = os.open(m, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    mnt.run(body)


def test_many_open_files(mnt):
    """Handles are independent: many open at once, each at its own offset."""
    def body(m, e):
        fds = [os.open(m / f"f{i}", os.O_CREAT | os.O_RDWR, 0o644) for i in range(64)]
        try:
            for i, fd in enumerate(fds):
                os.write(fd, b"%d" % i)
            for i, fd in enumerate(fds):
                assert os.pread(fd, 10, 0) == b"%d" % i
        finally:
            for fd in fds:
                os.close(fd)
        assert (e / "f63").read_text() == "63"
    mnt.run(body)


# --------------------------------------------------------------------------
# directories, statfs, copy_file_range, access

def test_readdir(mnt):
    def body(m, e):
        os.mkdir(e / "d")
        (e / "d" / "file").write_text("f")
        os.mkdir(e / "d" / "sub")
        (e / "d" / "link").symlink_to("file")
        os.mkdir(e / "empty")
        assert os.listdir(m / "empty") == []
        kinds = {}
        for ent in os.scandir(m / "d"):
            kinds[ent.name] = (ent.is_file(follow_symlinks=False),
                               ent.is_dir(follow_symlinks=False), ent.is_symlink())
            assert ent.inode() == os.lstat(ent.path).st_ino, ent.name
        assert kinds == {"file": (True, False, False), "sub": (False, True, False),
                         "link": (False, False, True)}
        # ls -a shows . and .. like any directory
        out = subprocess.run(["ls", "-a1", str(m / "d")], capture_output=True, text=True,
                             check=True).stdout.split("\n")
        assert out[:2] == [".", ".."] and set(out[2:]) == {"file", "sub", "link", ""}
        # reading one directory handle twice (rewinddir), and two at once
        it1, it2 = os.scandir(m / "d"), os.scandir(m / "d")
        try:
            n1 = sorted(x.name for x in it1)
            n2 = sorted(x.name for x in it2)
        finally:
            it1.close()
            it2.close()
        assert n1 == n2 == ["file", "link", "sub"]
        # a listing taken after a change sees it
        (m / "d" / "later").write_text("l")
        assert sorted(os.listdir(m / "d")) == ["file", "later", "link", "sub"]
    mnt.run(body)


def test_statfs(mnt):
    def body(m, e):
        sm, se = os.statvfs(m), os.statvfs(e)
        assert sm.f_frsize * sm.f_blocks == se.f_frsize * se.f_blocks
        assert sm.f_bsize == se.f_bsize
        assert sm.f_namemax == se.f_namemax == 255
        assert sm.f_files == se.f_files
        assert 0 < sm.f_bavail <= sm.f_bfree <= sm.f_blocks
        assert os.statvfs(m / ".").f_blocks == sm.f_blocks
    mnt.run(body)


def test_copy_file_range(mnt):
    def body(m, e):
        data = os.urandom(MiB + 5)
        (e / "src").write_bytes(data)
        fin = os.open(m / "src", os.O_RDONLY)
        fout = os.open(m / "dst", os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            n = os.copy_file_range(fin, fout, 4 * MiB)
            total = n
            while n:
                n = os.copy_file_range(fin, fout, 4 * MiB)
                total += n
            assert total == len(data)
            assert os.copy_file_range(fin, fout, 100, len(data) + 10, 0) == 0, "past EOF"
            assert os.copy_file_range(fin, fout, 100, 10, 2 * MiB) == 100
        finally:
            os.close(fin)
            os.close(fout)
        got = (e / "dst").read_bytes()
        assert len(got) == 2 * MiB + 100
        assert got[:len(data)] == data
        assert got[len(data):2 * MiB] == bytes(2 * MiB - len(data))
        assert got[2 * MiB:] == data[10:110]
        assert (m / "dst").read_bytes() == got
    mnt.run(body)


def test_access(mnt):
    def body(m, e):
        root = os.getuid() == 0
        (m / "rw").write_text("x")
        os.chmod(m / "rw", 0o600)
        (m / "exe").write_text("#!/bin/sh\n")
        os.chmod(m / "exe", 0o755)
        (m / "none").write_text("x")
        os.chmod(m / "none", 0o000)
        os.mkdir(m / "rx", 0o500)
        assert os.access(m / "rw", os.F_OK)
        assert os.access(m / "rw", os.R_OK | os.W_OK)
        assert not os.access(m / "rw", os.X_OK)
        assert os.access(m / "exe", os.R_OK | os.X_OK)
        assert os.access(m / "none", os.R_OK) == root
        assert os.access(m / "none", os.W_OK) == root
        assert not os.access(m / "none", os.X_OK)
        assert os.access(m / "rx", os.R_OK | os.X_OK)
        assert os.access(m / "rx", os.W_OK) == root
        assert not os.access(m / "missing", os.F_OK)
        if not root:
            raises_errno(errno.EACCES, open, m / "none")
            raises_errno(errno.EACCES, os.open, m / "rx" / "new", os.O_CREAT | os.O_WRONLY)
        os.chmod(m / "rx", 0o700)
    mnt.run(body)


def test_mmap(mnt):
    """Shared mappings: reads fault pages in, stores reach the server."""
    import mmap

    def body(m, e):
        data = os.urandom(3 * 4096 + 100)
        (e / "f").write_bytes(data)
        with open(m / "f", "r+b") as f:
            mm = mmap.mmap(f.fileno(), 0)
            try:
                assert mm[:] == data
                mm[4096:4100] = b"MMAP"
                mm.flush()
            finally:
                mm.close()
        assert (e / "f").read_bytes() == data[:4096] + b"MMAP" + data[4100:]
    mnt.run(body)


def test_parallel_io(mnt):
    """Several threads reading and writing different files at once: replies
    go to the right requests."""
    from concurrent.futures import ThreadPoolExecutor

    def body(m, e):
        blobs = {f"p{i}": os.urandom(200_000 + i * 4099) for i in range(8)}

        def one(name):
            write_bytes(m / name, blobs[name])
            for _ in range(3):
                assert read_bytes(m / name) == blobs[name]
            os.rename(m / name, m / (name + ".done"))
            return name

        with ThreadPoolExecutor(8) as ex:
            assert sorted(ex.map(one, blobs)) == sorted(blobs)
        for name, blob in blobs.items():
            assert read_bytes(e / (name + ".done")) == blob
    mnt.run(body)
