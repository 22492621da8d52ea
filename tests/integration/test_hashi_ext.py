"""hashi's own SFTP extensions (man/PROTOCOL.hashi), driven with raw packets.

Each test talks to hashi-sftp-server over a pipe (sftpwire.py) and checks
the answer against what the kernel says about the same files here. Locks
are checked across two server processes (two clients of one host) and
against a lock taken locally with fcntl(2).
"""

import errno
import fcntl
import os
import stat
import tempfile

import pytest

from sftpwire import (
    EXTENSIONS, FALLOC_KEEP_SIZE, FALLOC_PUNCH_HOLE, FALLOC_ZERO_RANGE, FX_BAD_MESSAGE,
    FX_EOF, FX_FAILURE, FX_NO_SUCH_FILE, FX_OK, FX_OP_UNSUPPORTED, FX_PERMISSION_DENIED,
    FXF_APPEND, FXF_CREAT, FXF_EXCL, FXF_READ, FXF_TRUNC, FXF_WRITE, FXP_DATA,
    FXP_EXTENDED_REPLY, FXP_HANDLE, HASHI_EXTENSIONS, HASHI_MUTATING, LOCK_CANCEL,
    LOCK_FLOCK, LOCK_GET, LOCK_SET, LOCK_WAIT, O_NOFOLLOW, RDLCK, SEEK_DATA, SEEK_HOLE,
    TARGET_HANDLE, TARGET_NOFOLLOW, UNLCK, WRLCK, XATTR_CREATE, XATTR_REPLACE, Attrs,
    query_requests, spawn, sstr, u32,
)

HATTR_BTIME = 0x800
IS_ROOT = os.geteuid() == 0
BAD_HANDLE = b"\xff\xff\xff\xf0\0\0\0\0"


@pytest.fixture
def c(hashi_server, workdir):
    """A session with errno@hashi on."""
    with spawn(hashi_server, workdir) as conn:
        conn.hx_errno().ok()
        yield conn


def ext_reply(r):
    return r.ok(FXP_EXTENDED_REPLY).extra


def fails(r, err):
    """A failure STATUS carrying errno err (errno@hashi is on)."""
    assert r.type != FXP_EXTENDED_REPLY, r
    assert r.code not in (None, FX_OK), r
    assert r.errno == err, "%r: errno %s, expected %s" % (
        r, r.errno and errno.errorcode.get(r.errno), errno.errorcode[err])
    return r


def same_as_stat(h, st):
    assert h["ino"] == st.st_ino and h["nlink"] == st.st_nlink
    assert h["mode"] == st.st_mode and h["uid"] == st.st_uid and h["gid"] == st.st_gid
    assert h["size"] == st.st_size and h["blocks"] == st.st_blocks
    assert h["blksize"] == st.st_blksize
    assert (h["dev_major"], h["dev_minor"]) == (os.major(st.st_dev), os.minor(st.st_dev))
    assert (h["rdev_major"], h["rdev_minor"]) == (os.major(st.st_rdev), os.minor(st.st_rdev))
    for t in ("atime", "mtime", "ctime"):
        assert h[t] * 10**9 + h[t + "_nsec"] == getattr(st, "st_%s_ns" % t), t


# ------------------------------------------------------------ advertising

def test_version_and_query_list_them(hashi_server, openssh_server, workdir):
    with spawn(hashi_server, workdir) as conn:
        adv = conn.version_reply.extension_list
    openssh = [v for v in EXTENSIONS.values()]
    assert adv == openssh + [(n, "1") for n in HASHI_EXTENSIONS]
    assert query_requests(hashi_server) == query_requests(openssh_server) + HASHI_EXTENSIONS


def test_readonly_refuses_mutating_ones(hashi_server, workdir):
    (workdir / "f").write_bytes(b"data")
    with spawn(hashi_server, workdir, "-R") as conn:
        adv = set(conn.extensions)
        assert adv >= set(HASHI_EXTENSIONS) - HASHI_MUTATING
        assert not adv & HASHI_MUTATING
        conn.hx_setstat("f", mode=0o600).expect(FX_PERMISSION_DENIED)
        conn.hx_mknod("fifo", stat.S_IFIFO | 0o644).expect(FX_PERMISSION_DENIED)
        conn.hx_setxattr("f", "user.x", b"1").expect(FX_PERMISSION_DENIED)
        conn.hx_removexattr("f", "user.x").expect(FX_PERMISSION_DENIED)
        conn.hx_open("g", FXF_WRITE | FXF_CREAT).expect(FX_PERMISSION_DENIED)
        conn.hx_open("f", FXF_READ | FXF_TRUNC).expect(FX_PERMISSION_DENIED)
        h, _ = ext_reply(conn.hx_open("f", FXF_READ))
        conn.hx_fallocate(h, 0, 0, 100).expect(FX_PERMISSION_DENIED)
        assert ext_reply(conn.hx_stat("f"))["size"] == 4
        assert ext_reply(conn.hx_lseek(h, 0, SEEK_DATA)) == 0
        assert ext_reply(conn.hx_lock(h, LOCK_GET, RDLCK))["type"] == UNLCK
        conn.hx_lock(h, LOCK_SET, RDLCK).ok()
        conn.hx_errno().ok()
    assert not (workdir / "g").exists() and (workdir / "f").read_bytes() == b"data"
    assert stat.S_IMODE(os.stat(workdir / "f").st_mode) != 0o600


@pytest.mark.parametrize("name", ["stat@hashi", "lock@hashi", "setstat@hashi"])
def test_deny_and_allow_by_extension_name(hashi_server, workdir, name):
    with spawn(hashi_server, workdir, "-P", name) as conn:
        assert name not in conn.extensions
        assert set(HASHI_EXTENSIONS) - {name} <= set(conn.extensions)
        conn.call_extended(name, b"").expect(FX_PERMISSION_DENIED)
    with spawn(hashi_server, workdir, "-p", name + ",stat") as conn:
        assert [n for n in conn.extensions if n.endswith("@hashi")] == [name]
        conn.call_extended("stat@hashi" if name != "stat@hashi" else "lock@hashi",
                           b"").expect(FX_PERMISSION_DENIED)


@pytest.mark.parametrize("name", HASHI_EXTENSIONS)
def test_malformed_is_bad_message(hashi_server, workdir, name):
    with spawn(hashi_server, workdir) as conn:
        conn.call_extended(name, b"\0\0").expect(FX_BAD_MESSAGE)
        assert conn.stat(".").type != 101


# ------------------------------------------------------------ errno@hashi

def test_errno_only_after_opting_in(hashi_server, workdir):
    (workdir / "d").mkdir()
    (workdir / "d" / "x").write_bytes(b"")
    with spawn(hashi_server, workdir) as conn:
        r = conn.rmdir("d").expect(FX_FAILURE)
        assert r.errno is None and len(r.body) == 4 + 4 + 4 + len(r.msg) + 4
        conn.hx_errno().ok()
        fails(conn.rmdir("d").expect(FX_FAILURE), errno.ENOTEMPTY)
        conn.hx_errno(False).ok()
        assert conn.rmdir("d").expect(FX_FAILURE).errno is None


def test_real_errnos(c, workdir):
    (workdir / "d").mkdir()
    (workdir / "d" / "x").write_bytes(b"")
    (workdir / "f").write_bytes(b"")
    os.symlink("loop", workdir / "loop")
    fails(c.rmdir("d"), errno.ENOTEMPTY)
    fails(c.mkdir("d"), errno.EEXIST)
    fails(c.stat("x" * 300), errno.ENAMETOOLONG)
    fails(c.stat("f/x"), errno.ENOTDIR)
    fails(c.stat("loop"), errno.ELOOP)
    fails(c.open("d", FXF_WRITE), errno.EISDIR)
    fails(c.remove("missing"), errno.ENOENT)
    fails(c.rmdir("f"), errno.ENOTDIR)
    with tempfile.TemporaryDirectory(dir="/dev/shm") as other:
        fails(c.posix_rename("f", os.path.join(other, "f")), errno.EXDEV)
    # Successes carry nothing extra.
    r = c.mkdir("new").expect(FX_OK)
    assert r.errno is None


# ------------------------------------------------------------ stat, readdir

def test_stat_full_attributes(c, workdir):
    f = workdir / "f"
    f.write_bytes(b"x" * 5000)
    os.link(f, workdir / "hard")
    os.utime(f, ns=(1_600_000_000_123_456_789, 1_700_000_000_987_654_321))
    os.symlink("f", workdir / "link")
    h = ext_reply(c.hx_stat("f"))
    same_as_stat(h, os.stat(f))
    assert h["nlink"] == 2 and h["mtime_nsec"] == 987_654_321 and h["atime_nsec"] == 123_456_789
    assert h["mask"] & HATTR_BTIME  # ext4 and tmpfs know birth times
    # follows the link, or not
    assert ext_reply(c.hx_stat("link"))["ino"] == h["ino"]
    lh = ext_reply(c.hx_stat("link", TARGET_NOFOLLOW))
    assert stat.S_ISLNK(lh["mode"])
    same_as_stat(lh, os.lstat(workdir / "link"))
    # by handle, file and directory
    fh = c.open("f", FXF_READ).ok(FXP_HANDLE).handle
    same_as_stat(ext_reply(c.hx_stat(fh, TARGET_HANDLE)), os.stat(f))
    dh = c.opendir(".").ok(FXP_HANDLE).handle
    assert ext_reply(c.hx_stat(dh, TARGET_HANDLE))["ino"] == os.stat(workdir).st_ino
    fails(c.hx_stat(BAD_HANDLE, TARGET_HANDLE), errno.EBADF)
    fails(c.hx_stat("f", 0x100), errno.EINVAL)
    fails(c.hx_stat("missing"), errno.ENOENT)


def test_readdir_full_attributes(c, workdir):
    names = {"a", "b", "sub", "link"}
    (workdir / "a").write_bytes(b"1")
    (workdir / "b").write_bytes(b"22")
    (workdir / "sub").mkdir()
    os.symlink("a", workdir / "link")
    for i in range(600):  # more than one reply's worth
        (workdir / ("n%03d" % i)).write_bytes(b"")
        names.add("n%03d" % i)
    dh = c.opendir(".").ok(FXP_HANDLE).handle
    seen = {}
    replies = 0
    while True:
        r = c.hx_readdir(dh)
        if r.type != FXP_EXTENDED_REPLY:
            r.expect(FX_EOF)
            break
        replies += 1
        for name, h in r.extra:
            seen[name] = h
    assert replies > 1
    assert set(seen) == names | {".", ".."}
    for n in names:
        same_as_stat(seen[n], os.lstat(workdir / n))
    c.hx_readdir(dh).expect(FX_EOF)
    fh = c.open("a", FXF_READ).ok(FXP_HANDLE).handle
    fails(c.hx_readdir(fh), errno.EBADF)


# ------------------------------------------------------------ setstat

def test_setstat_nanoseconds_now_and_omit(c, workdir):
    f = workdir / "f"
    f.write_bytes(b"")
    h = ext_reply(c.hx_setstat("f", atime=(1_000_000_000, 111), mtime=(1_200_000_000, 999_999_999)))
    st = os.stat(f)
    assert st.st_atime_ns == 1_000_000_000_000_000_111
    assert st.st_mtime_ns == 1_200_000_000_999_999_999
    same_as_stat(h, st)
    # UTIME_OMIT: only mtime given, atime stays
    c.hx_setstat("f", mtime=(5, 5)).ok()
    st = os.stat(f)
    assert st.st_atime_ns == 1_000_000_000_000_000_111 and st.st_mtime_ns == 5_000_000_005
    # UTIME_NOW for atime only
    c.hx_setstat("f", atime_now=True).ok()
    st2 = os.stat(f)
    assert st2.st_atime_ns > 1_000_000_000_000_000_111 and st2.st_mtime_ns == 5_000_000_005
    # times before 1970
    c.hx_setstat("f", mtime=(-86400, 1)).ok()
    assert os.stat(f).st_mtime_ns == -86400 * 10**9 + 1
    c.hx_setstat("f", mtime=(0, 10**9)).expect(FX_BAD_MESSAGE)  # nsec out of range


def test_setstat_mode_size_owner_by_path_and_handle(c, workdir):
    f = workdir / "f"
    f.write_bytes(b"0123456789")
    h = ext_reply(c.hx_setstat("f", mode=0o4751, size=4))
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o4751 and h["size"] == 4
    fh, _ = ext_reply(c.hx_open("f", FXF_READ | FXF_WRITE))
    h = ext_reply(c.hx_setstat(fh, TARGET_HANDLE, size=100, mode=0o600))
    assert h["size"] == 100 and stat.S_IMODE(h["mode"]) == 0o600
    r = c.call_extended("setstat@hashi", sstr("f") + u32(0) + u32(0x100) + bytes(44))
    fails(r, errno.EINVAL)
    fails(c.hx_setstat("missing", mode=0o600), errno.ENOENT)
    if IS_ROOT:
        c.hx_setstat("f", uid=65534, gid=65533).ok()
        st = os.stat(f)
        assert (st.st_uid, st.st_gid) == (65534, 65533)
        c.hx_setstat("f", gid=0).ok()  # uid untouched
        assert (os.stat(f).st_uid, os.stat(f).st_gid) == (65534, 0)


def test_setstat_nofollow_changes_the_link_itself(c, workdir):
    f = workdir / "target"
    f.write_bytes(b"")
    os.chmod(f, 0o640)
    os.utime(f, ns=(10**18, 10**18))
    os.symlink("target", workdir / "link")
    before = os.stat(f)
    h = ext_reply(c.hx_setstat("link", TARGET_NOFOLLOW, atime=(1000, 1), mtime=(2000, 2)))
    lst = os.lstat(workdir / "link")
    assert lst.st_mtime_ns == 2000 * 10**9 + 2 and stat.S_ISLNK(h["mode"])
    assert os.stat(f).st_mtime_ns == before.st_mtime_ns
    # Linux has no mode for a symlink: what lchmod says locally
    fails(c.hx_setstat("link", TARGET_NOFOLLOW, mode=0o600), errno.EOPNOTSUPP)
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o640
    fails(c.hx_setstat("link", TARGET_NOFOLLOW, size=0), errno.ELOOP)
    if IS_ROOT:
        c.hx_setstat("link", TARGET_NOFOLLOW, uid=65534, gid=65534).ok()
        assert os.lstat(workdir / "link").st_uid == 65534
        assert os.stat(f).st_uid == before.st_uid
    # without the flag it follows
    c.hx_setstat("link", mtime=(3000, 3)).ok()
    assert os.stat(f).st_mtime_ns == 3000 * 10**9 + 3


# ------------------------------------------------------------ open, mknod

def test_open_exact_mode_ignores_server_umask(hashi_server, workdir):
    with spawn(hashi_server, workdir, "-u", "077") as conn:
        conn.hx_errno().ok()
        fh, h = ext_reply(conn.hx_open("f", FXF_WRITE | FXF_CREAT | FXF_EXCL, 0o666))
        assert stat.S_IMODE(os.stat(workdir / "f").st_mode) == 0o666
        same_as_stat(h, os.stat(workdir / "f"))
        # the handle is an ordinary one
        conn.write(fh, 0, b"hello").ok()
        conn.close_handle(fh).ok()
        assert (workdir / "f").read_bytes() == b"hello"
        fails(conn.hx_open("f", FXF_WRITE | FXF_CREAT | FXF_EXCL, 0o600), errno.EEXIST)
        # an existing file keeps its mode
        conn.hx_open("f", FXF_WRITE | FXF_CREAT | FXF_TRUNC, 0o600).ok()
        assert stat.S_IMODE(os.stat(workdir / "f").st_mode) == 0o666
        assert (workdir / "f").read_bytes() == b""
        # the plain OPEN still honours -u
        conn.open("g", FXF_WRITE | FXF_CREAT, Attrs(perm=0o666)).ok()
        assert stat.S_IMODE(os.stat(workdir / "g").st_mode) == 0o600
        conn.hx_mknod("dir", stat.S_IFDIR | 0o775).ok()
        assert stat.S_IMODE(os.stat(workdir / "dir").st_mode) == 0o775


def test_open_flags(c, workdir):
    (workdir / "f").write_bytes(b"abc")
    os.symlink("f", workdir / "link")
    fails(c.hx_open("link", FXF_READ | O_NOFOLLOW), errno.ELOOP)
    fails(c.hx_open("f", FXF_READ | 0x80000000), errno.EINVAL)
    fails(c.hx_open("nodir/f", FXF_WRITE | FXF_CREAT), errno.ENOENT)
    fh, h = ext_reply(c.hx_open("f", FXF_WRITE | FXF_APPEND))
    assert h["size"] == 3
    c.write(fh, 0, b"de").ok()
    assert (workdir / "f").read_bytes() == b"abcde"
    rh, _ = ext_reply(c.hx_open("f", FXF_READ))
    assert c.read(rh, 0, 100).ok(FXP_DATA).data == b"abcde"


@pytest.mark.skipif(not IS_ROOT, reason="needs root")
def test_open_and_mknod_give_the_callers_owner(c, workdir):
    _, h = ext_reply(c.hx_open("f", FXF_WRITE | FXF_CREAT, 0o6755, uid=65534, gid=65533))
    st = os.stat(workdir / "f")
    assert (st.st_uid, st.st_gid) == (65534, 65533) == (h["uid"], h["gid"])
    assert stat.S_IMODE(st.st_mode) == 0o6755  # the chown did not eat the set-id bits
    # an existing file's owner is left alone
    c.hx_open("f", FXF_WRITE | FXF_CREAT, 0o644, uid=1, gid=1).ok()
    assert os.stat(workdir / "f").st_uid == 65534
    h = ext_reply(c.hx_mknod("d", stat.S_IFDIR | 0o2775, uid=65534, gid=65533))
    assert (h["uid"], h["gid"]) == (65534, 65533)
    # in a set-group-ID directory the group is the directory's (mkdir(2)
    # itself does not set S_ISGID: chmod does)
    os.chmod(workdir / "d", 0o2775)
    h = ext_reply(c.hx_mknod("d/sub", stat.S_IFDIR | 0o755, uid=1, gid=2))
    assert (h["uid"], h["gid"]) == (1, 65533)
    h = ext_reply(c.hx_mknod("l", stat.S_IFLNK, uid=65534, gid=65534, target="f"))
    assert os.lstat(workdir / "l").st_uid == 65534
    h = ext_reply(c.hx_mknod("null", stat.S_IFCHR | 0o666, 1, 3))
    st = os.lstat(workdir / "null")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert (h["rdev_major"], h["rdev_minor"]) == (1, 3)


def test_mknod_kinds(c, workdir):
    h = ext_reply(c.hx_mknod("fifo", stat.S_IFIFO | 0o640))
    st = os.lstat(workdir / "fifo")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640
    same_as_stat(h, st)
    assert stat.S_ISSOCK(ext_reply(c.hx_mknod("sock", stat.S_IFSOCK | 0o600))["mode"])
    assert stat.S_ISREG(ext_reply(c.hx_mknod("reg", stat.S_IFREG | 0o600))["mode"])
    h = ext_reply(c.hx_mknod("link", stat.S_IFLNK | 0o777, target="somewhere/else"))
    assert os.readlink(workdir / "link") == "somewhere/else" and stat.S_ISLNK(h["mode"])
    assert h["size"] == len("somewhere/else")
    fails(c.hx_mknod("fifo", stat.S_IFIFO | 0o600), errno.EEXIST)
    fails(c.hx_mknod("bad", 0o170000 & 0o030000 | 0o600), errno.EINVAL)
    fails(c.hx_mknod("x" * 300, stat.S_IFIFO | 0o600), errno.ENAMETOOLONG)
    # the FIFO is usable as one
    fails(c.hx_open("fifo", FXF_WRITE), errno.ENXIO)  # no reader yet


# ------------------------------------------------------------ xattrs

@pytest.fixture(params=["tmp", "shm"])
def xdir(request, workdir):
    """A directory on ext4 (/tmp) and on tmpfs (/dev/shm), both with user xattrs."""
    if request.param == "tmp":
        yield workdir
    else:
        with tempfile.TemporaryDirectory(dir="/dev/shm") as d:
            yield d


def test_xattrs_round_trip(hashi_server, xdir):
    f = os.path.join(xdir, "f")
    open(f, "wb").close()
    os.symlink("f", os.path.join(xdir, "link"))
    with spawn(hashi_server, xdir) as c:
        c.hx_errno().ok()
        value = bytes(range(256)) * 10  # NULs included
        c.hx_setxattr("f", "user.one", value).ok()
        assert os.getxattr(f, "user.one") == value
        assert ext_reply(c.hx_getxattr("f", "user.one")) == value
        c.hx_setxattr("f", "user.empty", b"").ok()
        assert ext_reply(c.hx_getxattr("f", "user.empty")) == b""
        assert sorted(ext_reply(c.hx_listxattr("f"))) == [b"user.empty", b"user.one"]
        fails(c.hx_setxattr("f", "user.one", b"x", XATTR_CREATE), errno.EEXIST)
        fails(c.hx_setxattr("f", "user.nope", b"x", XATTR_REPLACE), errno.ENODATA)
        c.hx_setxattr("f", "user.one", b"new", XATTR_REPLACE).ok()
        assert os.getxattr(f, "user.one") == b"new"
        fails(c.hx_setxattr("f", "user.x", b"x", 4), errno.EINVAL)
        fails(c.hx_getxattr("f", "user.nope"), errno.ENODATA)
        fails(c.hx_setxattr("f", "nonamespace", b"x"), errno.EOPNOTSUPP)
        # through the link, and on the link itself (no user.* on symlinks)
        assert ext_reply(c.hx_getxattr("link", "user.one")) == b"new"
        fails(c.hx_setxattr("link", "user.l", b"x", flags=TARGET_NOFOLLOW), errno.EPERM)
        fails(c.hx_getxattr("link", "user.one", TARGET_NOFOLLOW), errno.ENODATA)
        # by handle
        fh, _ = ext_reply(c.hx_open("f", FXF_READ | FXF_WRITE))
        c.hx_setxattr(fh, "user.h", b"by handle", flags=TARGET_HANDLE).ok()
        assert ext_reply(c.hx_getxattr(fh, "user.h", TARGET_HANDLE)) == b"by handle"
        assert b"user.h" in ext_reply(c.hx_listxattr(fh, TARGET_HANDLE))
        c.hx_removexattr(fh, "user.h", TARGET_HANDLE).ok()
        c.hx_removexattr("f", "user.one").ok()
        fails(c.hx_removexattr("f", "user.one"), errno.ENODATA)
        assert ext_reply(c.hx_listxattr("f")) == [b"user.empty"]
        assert os.listxattr(f) == ["user.empty"]
        fails(c.hx_getxattr(BAD_HANDLE, "user.h", TARGET_HANDLE), errno.EBADF)


# ------------------------------------------------------------ locks

@pytest.fixture
def two(hashi_server, workdir):
    """Two sessions (two server processes) on the same file "f"."""
    (workdir / "f").write_bytes(b"x" * 1000)
    with spawn(hashi_server, workdir) as a, spawn(hashi_server, workdir) as b:
        a.hx_errno().ok()
        b.hx_errno().ok()
        ha, _ = ext_reply(a.hx_open("f", FXF_READ | FXF_WRITE))
        hb, _ = ext_reply(b.hx_open("f", FXF_READ | FXF_WRITE))
        yield a, ha, b, hb


def test_posix_locks_across_servers(two, workdir):
    a, ha, b, hb = two
    a.hx_lock(ha, LOCK_SET, WRLCK, 100, 50).ok()
    fails(b.hx_lock(hb, LOCK_SET, WRLCK, 120, 1), errno.EAGAIN)
    fails(b.hx_lock(hb, LOCK_SET, RDLCK, 0, 0), errno.EAGAIN)
    b.hx_lock(hb, LOCK_SET, WRLCK, 150, 10).ok()  # next to it: no conflict
    got = ext_reply(b.hx_lock(hb, LOCK_GET, RDLCK, 0, 0))
    assert got["type"] == WRLCK and (got["start"], got["len"]) == (100, 50)
    assert ext_reply(a.hx_lock(ha, LOCK_GET, WRLCK, 0, 100))["type"] == UNLCK
    # a local process sees the server's lock too
    with open(workdir / "f", "r+b") as lf:
        with pytest.raises(OSError):
            fcntl.lockf(lf, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 110)
        fcntl.lockf(lf, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 10)
        fcntl.lockf(lf, fcntl.LOCK_UN, 1, 10)
    # read locks share
    a.hx_lock(ha, LOCK_SET, UNLCK, 0, 0).ok()
    a.hx_lock(ha, LOCK_SET, RDLCK, 0, 10).ok()
    b.hx_lock(hb, LOCK_SET, RDLCK, 0, 10).ok()
    fails(b.hx_lock(hb, LOCK_SET, WRLCK, 0, 10), errno.EAGAIN)
    # closing the handle lets them go
    a.close_handle(ha).ok()
    b.hx_lock(hb, LOCK_SET, WRLCK, 0, 0).ok()
    fails(b.hx_lock(hb, LOCK_SET, 7, 0, 0), errno.EINVAL)
    fails(b.hx_lock(hb, 9, WRLCK, 0, 0), errno.EINVAL)
    fails(b.hx_lock(BAD_HANDLE, LOCK_SET, WRLCK), errno.EBADF)


def test_waiting_lock_does_not_block_the_session(two):
    a, ha, b, hb = two
    a.hx_lock(ha, LOCK_SET, WRLCK, 0, 0).ok()
    wait_id = b.hx_lock_send(hb, LOCK_SET, WRLCK, 0, 10, LOCK_WAIT)
    # other requests of the waiting session are answered meanwhile
    assert ext_reply(b.hx_stat("f"))["size"] == 1000
    assert b.read(hb, 0, 4).ok(FXP_DATA).data == b"xxxx"
    assert wait_id not in b._stash
    a.hx_lock(ha, LOCK_SET, UNLCK, 0, 0).ok()
    b.reply_to(wait_id).expect(FX_OK)
    fails(a.hx_lock(ha, LOCK_SET, RDLCK, 5, 1), errno.EAGAIN)


def test_waiting_lock_cancelled_or_handle_closed(two):
    a, ha, b, hb = two
    a.hx_lock(ha, LOCK_SET, WRLCK, 0, 0).ok()
    w1 = b.hx_lock_send(hb, LOCK_SET, WRLCK, 0, 0, LOCK_WAIT)
    b.hx_lock(hb, LOCK_CANCEL).ok()
    fails(b.reply_to(w1), errno.EINTR)
    w3 = b.hx_lock_send(hb, LOCK_SET, RDLCK, 0, 0, LOCK_WAIT)
    b.close_handle(hb).ok()
    fails(b.reply_to(w3), errno.EBADF)


def test_waiting_lock_within_one_session(hashi_server, workdir):
    """Two handles of one session: the holder's unlock comes after the
    waiter's request in the same stream, which must still be processed."""
    (workdir / "f").write_bytes(b"")
    with spawn(hashi_server, workdir) as c:
        h1, _ = ext_reply(c.hx_open("f", FXF_READ | FXF_WRITE))
        h2, _ = ext_reply(c.hx_open("f", FXF_READ | FXF_WRITE))
        c.hx_lock(h1, LOCK_SET, WRLCK).ok()
        wait_id = c.hx_lock_send(h2, LOCK_SET, WRLCK, 0, 0, LOCK_WAIT)
        c.hx_lock(h1, LOCK_SET, UNLCK).ok()
        c.reply_to(wait_id).expect(FX_OK)


def test_flock_across_servers(two, workdir):
    a, ha, b, hb = two
    a.hx_lock(ha, LOCK_FLOCK, WRLCK).ok()
    fails(b.hx_lock(hb, LOCK_FLOCK, RDLCK), errno.EAGAIN)
    with open(workdir / "f", "rb") as lf:
        with pytest.raises(BlockingIOError):
            fcntl.flock(lf, fcntl.LOCK_SH | fcntl.LOCK_NB)
    wait_id = b.hx_lock_send(hb, LOCK_FLOCK, RDLCK, 0, 0, LOCK_WAIT)
    a.hx_lock(ha, LOCK_FLOCK, UNLCK).ok()
    b.reply_to(wait_id).expect(FX_OK)
    fails(a.hx_lock(ha, LOCK_FLOCK, WRLCK), errno.EAGAIN)
    a.hx_lock(ha, LOCK_FLOCK, RDLCK).ok()


# ------------------------------------------------------------ fallocate, lseek

def test_fallocate_and_seek_data_hole(c, workdir):
    f = workdir / "f"
    fh, _ = ext_reply(c.hx_open("f", FXF_READ | FXF_WRITE | FXF_CREAT))
    c.hx_fallocate(fh, 0, 0, 1 << 20).ok()
    st = os.stat(f)
    assert st.st_size == 1 << 20 and st.st_blocks * 512 >= 1 << 20
    c.hx_fallocate(fh, FALLOC_KEEP_SIZE, 1 << 20, 1 << 20).ok()
    st = os.stat(f)
    assert st.st_size == 1 << 20 and st.st_blocks * 512 >= 2 << 20
    c.hx_fallocate(fh, FALLOC_PUNCH_HOLE | FALLOC_KEEP_SIZE, 0, 512 << 10).ok()
    assert os.stat(f).st_size == 1 << 20
    c.write(fh, 600 << 10, b"data").ok()
    c.hx_fallocate(fh, FALLOC_ZERO_RANGE, 1 << 20, 4096).ok()
    assert os.stat(f).st_size == (1 << 20) + 4096
    fails(c.hx_fallocate(fh, 0x8000, 0, 1), errno.EOPNOTSUPP)
    fails(c.hx_fallocate(fh, 0, 0, 0), errno.EINVAL)
    fails(c.hx_fallocate(BAD_HANDLE, 0, 0, 1), errno.EBADF)
    c.close_handle(fh).ok()

    with open(workdir / "sparse", "wb") as sp:
        sp.seek(1 << 20)
        sp.write(b"data")
    fh, _ = ext_reply(c.hx_open("sparse", FXF_READ))
    fd = os.open(workdir / "sparse", os.O_RDONLY)
    try:
        for whence, native in ((SEEK_DATA, os.SEEK_DATA), (SEEK_HOLE, os.SEEK_HOLE)):
            for off in (0, 4096, 1 << 20):
                assert ext_reply(c.hx_lseek(fh, off, whence)) == os.lseek(fd, off, native)
    finally:
        os.close(fd)
    assert ext_reply(c.hx_lseek(fh, 0, SEEK_DATA)) >= 512 << 10
    fails(c.hx_lseek(fh, 2 << 20, SEEK_DATA), errno.ENXIO)
    fails(c.hx_lseek(fh, 0, 0), errno.EINVAL)


# ------------------------------------------------------------ other servers, old clients

@pytest.mark.parametrize("name", HASHI_EXTENSIONS)
def test_openssh_neither_advertises_nor_serves_them(openssh_server, workdir, name):
    """What the client's fallback rests on: OpenSSH's server does not list
    them and answers each with SSH_FX_OP_UNSUPPORTED."""
    with spawn(openssh_server, workdir) as conn:
        assert name not in conn.extensions
        conn.call_extended(name, u32(1)).expect(FX_OP_UNSUPPORTED)


def test_errno_field_needs_version_3_and_a_system_error(hashi_server, workdir):
    with spawn(hashi_server, workdir, "-P", "rmdir") as conn:
        conn.hx_errno().ok()
        r = conn.rmdir("d").expect(FX_PERMISSION_DENIED)  # refused: no system error
        assert r.errno is None
        r = conn.call_extended("stat@hashi", b"\0").expect(FX_BAD_MESSAGE)
        assert r.errno is None
        fails(conn.remove("missing").expect(FX_NO_SUCH_FILE), errno.ENOENT)
    with spawn(hashi_server, workdir, version=2) as conn:
        conn.hx_errno().ok()
        r = conn.remove("missing").expect(FX_NO_SUCH_FILE)
        assert r.msg is None and r.errno is None and len(r.body) == 8
