"""POSIX on a hashi mount when both ends are hashi (the @hashi extensions,
man/PROTOCOL.hashi), and what the same operations do against OpenSSH's
sftp-server (the degraded path: as sshfs, no worse, no crash).

Each hashi test runs as root and as the unprivileged user against
hashi-sftp-server (fixture `hm`); `om` is the same against OpenSSH's server.
m is a fresh directory on the mount, e the same directory server-side.
"""

import errno
import fcntl
import os
import socket
import stat

import pytest

from mountfix import *  # noqa: F401,F403 - fixtures


def raises_errno(code, fn, *args, **kw):
    try:
        fn(*args, **kw)
    except OSError as e:
        assert e.errno == code, f"{fn.__name__}: expected {errno.errorcode[code]}, got {e}"
    else:
        raise AssertionError(f"{fn.__name__} succeeded; expected {errno.errorcode[code]}")


def _mount(menv, who, server, opts=()):
    m = menv.mount(who, server, opts=list(opts))
    yield m
    status = m.unmount()
    assert status == 0


@pytest.fixture(scope="module", params=WHO)
def hm(request, menv):
    yield from _mount(menv, request.param, "hashi")


@pytest.fixture(scope="module", params=WHO)
def om(request, menv):
    yield from _mount(menv, request.param, "openssh")


# ---- full attributes -------------------------------------------------------

def test_full_attributes_and_hard_links(hm):
    def body(m, e):
        (m / "f").write_bytes(b"x" * 5000)
        os.link(m / "f", m / "g")
        se, sm, sg = os.stat(e / "f"), os.stat(m / "f"), os.stat(m / "g")
        # the server's inode number and link count, on both names at once
        assert sm.st_ino == se.st_ino == sg.st_ino
        assert sm.st_nlink == sg.st_nlink == 2
        # nanoseconds, ctime and blocks as the server has them
        assert sm.st_mtime_ns == se.st_mtime_ns
        assert sm.st_ctime_ns == se.st_ctime_ns
        assert sm.st_blocks == se.st_blocks
        os.unlink(m / "g")
        assert os.stat(m / "f").st_nlink == 1
        # readdir's entries carry the same
        names = {d.name: d.inode() for d in os.scandir(m)}
        assert names["f"] == se.st_ino
        # fstat after link: the open file sees the new count
        fd = os.open(m / "f", os.O_RDONLY)
        try:
            os.link(m / "f", m / "h")
            assert os.fstat(fd).st_nlink == 2
        finally:
            os.close(fd)
    hm.run(body)


def test_times_in_nanoseconds_now_and_omit(hm):
    def body(m, e):
        (m / "f").write_text("x")
        os.utime(m / "f", ns=(1_000_000_001, 2_000_000_002))
        st = os.stat(e / "f")
        assert (st.st_atime_ns, st.st_mtime_ns) == (1_000_000_001, 2_000_000_002)
        os.utime(m / "f", (0, 0))  # the epoch, not "now"
        assert os.stat(e / "f").st_mtime_ns == 0
        assert os.stat(m / "f").st_mtime_ns == 0
        # UTIME_OMIT: atime only (os.utime cannot omit; touch -a can)
        import subprocess
        subprocess.run(["touch", "-a", "-d", "@7", str(m / "f")], check=True)
        st = os.stat(e / "f")
        assert st.st_atime == 7 and st.st_mtime_ns == 0
    hm.run(body)


def test_symlink_itself_times_and_owner(hm):
    def body(m, e):
        (m / "t").write_text("target")
        os.symlink("t", m / "l")
        os.utime(m / "l", ns=(3_000_000_003, 4_000_000_004), follow_symlinks=False)
        assert os.lstat(e / "l").st_mtime_ns == 4_000_000_004
        assert os.stat(e / "t").st_mtime_ns != 4_000_000_004
        if os.getuid() == 0:
            os.chown(m / "l", 4321, 8765, follow_symlinks=False)
            assert (os.lstat(e / "l").st_uid, os.lstat(e / "l").st_gid) == (4321, 8765)
            assert os.stat(e / "t").st_uid == 0
    hm.run(body)


# ---- creating ----------------------------------------------------------------

def test_exact_mode_after_the_callers_umask(hm):
    def body(m, e):
        old = os.umask(0o027)
        try:
            os.close(os.open(m / "f", os.O_CREAT | os.O_WRONLY, 0o777))
            os.mkdir(m / "d", 0o1777)
        finally:
            os.umask(old)
        assert stat.S_IMODE(os.stat(e / "f").st_mode) == 0o750
        assert stat.S_IMODE(os.stat(e / "d").st_mode) == 0o1750
        # umask 0: exactly what was asked (the server's umask does not apply)
        old = os.umask(0)
        try:
            os.close(os.open(m / "g", os.O_CREAT | os.O_WRONLY, 0o666))
        finally:
            os.umask(old)
        assert stat.S_IMODE(os.stat(e / "g").st_mode) == 0o666
    hm.run(body)


def test_fifo_socket_and_device_nodes(hm):
    def body(m, e):
        os.mkfifo(m / "p", 0o640)
        assert stat.S_ISFIFO(os.stat(e / "p").st_mode)
        assert stat.S_ISFIFO(os.stat(m / "p").st_mode)
        os.mknod(m / "s", stat.S_IFSOCK | 0o600)
        assert stat.S_ISSOCK(os.lstat(e / "s").st_mode)
        if os.getuid() == 0:
            os.mknod(m / "c", stat.S_IFCHR | 0o600, os.makedev(1, 3))
            st = os.stat(m / "c")
            assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
            assert os.stat(e / "c").st_rdev == os.makedev(1, 3)
        else:
            raises_errno(errno.EPERM, os.mknod, m / "c", stat.S_IFCHR | 0o600,
                         os.makedev(1, 3))
    hm.run(body)


def test_callers_owner_for_root_server_with_allow_other(menv):
    m = menv.mount("root", "hashi", opts=["allow_other"])
    try:
        d, e = m.fresh()
        os.chmod(e, 0o777)

        def as_nobody():
            pid = os.fork()
            if pid == 0:
                try:
                    os.setgid(65534)
                    os.setuid(65534)
                    os.close(os.open(d / "f", os.O_CREAT | os.O_WRONLY, 0o600))
                    os.mkdir(d / "sub")
                    os.mkfifo(d / "p")
                    os.symlink("f", d / "l")
                    os._exit(0)
                except BaseException:
                    os._exit(1)
            _, status = os.waitpid(pid, 0)
            return status
        assert as_nobody() == 0
        for name in ("f", "sub", "p", "l"):
            st = os.lstat(e / name)
            assert (st.st_uid, st.st_gid) == (65534, 65534), name
    finally:
        assert m.unmount() == 0


# ---- extended attributes ---------------------------------------------------

def test_xattrs(hm):
    def body(m, e):
        (m / "f").write_text("x")
        os.setxattr(m / "f", "user.a", b"va\0lue")
        assert os.getxattr(e / "f", "user.a") == b"va\0lue"
        assert os.getxattr(m / "f", "user.a") == b"va\0lue"
        assert "user.a" in os.listxattr(m / "f")
        raises_errno(errno.EEXIST, os.setxattr, m / "f", "user.a", b"x", os.XATTR_CREATE)
        raises_errno(errno.ENODATA, os.setxattr, m / "f", "user.b", b"x", os.XATTR_REPLACE)
        os.setxattr(m / "f", "user.a", b"new", os.XATTR_REPLACE)
        assert os.getxattr(e / "f", "user.a") == b"new"
        raises_errno(errno.ENODATA, os.getxattr, m / "f", "user.none")
        os.removexattr(m / "f", "user.a")
        raises_errno(errno.ENODATA, os.removexattr, m / "f", "user.a")
        assert "user.a" not in os.listxattr(e / "f")
        # size probes (getxattr(2) with size 0) and a too-small buffer
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        os.setxattr(m / "f", "user.big", b"z" * 300)
        path = bytes(m / "f")
        assert libc.getxattr(path, b"user.big", None, 0) == 300
        buf = ctypes.create_string_buffer(10)
        assert libc.getxattr(path, b"user.big", buf, 10) == -1
        assert ctypes.get_errno() == errno.ERANGE
        assert libc.listxattr(path, None, 0) == len(b"user.big\0")
    hm.run(body)


# ---- locks -------------------------------------------------------------------

def _child(fn):
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(fn())
        except BaseException:
            os._exit(99)
    return os.waitpid(pid, 0)[1] >> 8


def test_posix_and_flock_locks_reach_the_server(hm):
    def body(m, e):
        (m / "f").write_text("data")
        fd = os.open(m / "f", os.O_RDWR)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 2, 0)

            def other_process():
                fd2 = os.open(m / "f", os.O_RDWR)
                try:
                    fcntl.lockf(fd2, fcntl.LOCK_EX | fcntl.LOCK_NB, 2, 0)
                    return 1
                except OSError as x:
                    if x.errno not in (errno.EAGAIN, errno.EACCES):
                        return 2
                # outside the locked range: granted
                fcntl.lockf(fd2, fcntl.LOCK_EX | fcntl.LOCK_NB, 2, 10)
                return 0
            assert _child(other_process) == 0

            def on_the_server():
                # a program on the server's host sees the lock
                fd3 = os.open(e / "f", os.O_RDWR)
                try:
                    fcntl.lockf(fd3, fcntl.LOCK_EX | fcntl.LOCK_NB, 2, 0)
                    return 1
                except OSError:
                    return 0
            assert _child(on_the_server) == 0
            # F_GETLK from another process reports it
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

            def flock_other():
                fd4 = os.open(e / "f", os.O_RDONLY)
                try:
                    fcntl.flock(fd4, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    return 1
                except OSError:
                    return 0
            assert _child(flock_other) == 0
        finally:
            os.close(fd)

        def after_close():  # closing dropped both
            fd5 = os.open(e / "f", os.O_RDWR)
            # POSIX locks go before close(2) returns (flush waits for them)
            fcntl.lockf(fd5, fcntl.LOCK_EX | fcntl.LOCK_NB, 2, 0)
            # flock locks go with the handle, at the kernel's RELEASE, which
            # it sends after close(2) has returned: wait for that event
            import time
            deadline = time.monotonic() + 10
            while True:
                try:
                    fcntl.flock(fd5, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return 0
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
        assert _child(after_close) == 0
    hm.run(body)


def test_waiting_lock_does_not_block_the_mount(hm):
    def body(m, e):
        (m / "f").write_text("data")
        held_r, held_w = os.pipe()
        go_r, go_w = os.pipe()
        holder = os.fork()
        if holder == 0:  # holds the lock server-side until told
            code = 1
            try:
                fd = os.open(e / "f", os.O_RDWR)
                fcntl.lockf(fd, fcntl.LOCK_EX)
                os.write(held_w, b"1")
                os.read(go_r, 1)
                code = 0
            finally:
                os._exit(code)
        os.close(held_w)
        assert os.read(held_r, 1) == b"1"
        waiter = os.fork()
        if waiter == 0:
            code = 1
            try:
                fd = os.open(m / "f", os.O_RDWR)
                fcntl.lockf(fd, fcntl.LOCK_EX)  # waits, then is granted
                code = 0
            finally:
                os._exit(code)
        # meanwhile the mount answers
        assert (m / "f").read_text() == "data"
        os.listdir(m)
        os.write(go_w, b"x")
        assert os.waitpid(holder, 0)[1] == 0
        assert os.waitpid(waiter, 0)[1] == 0
    hm.run(body)


# ---- fallocate, SEEK_DATA / SEEK_HOLE, errnos --------------------------------

def test_fallocate_and_seek_data_hole(hm):
    def body(m, e):
        fd = os.open(m / "f", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.posix_fallocate(fd, 0, 1 << 20)
            assert os.stat(e / "f").st_size == 1 << 20
            os.ftruncate(fd, 0)
            os.pwrite(fd, b"d" * 4096, 1 << 20)
            os.fsync(fd)
            assert os.lseek(fd, 0, os.SEEK_HOLE) == 0
            assert os.lseek(fd, 0, os.SEEK_DATA) == 1 << 20
            raises_errno(errno.ENXIO, os.lseek, fd, (1 << 20) + 4096, os.SEEK_DATA)
        finally:
            os.close(fd)
    hm.run(body)


def test_real_errnos(hm):
    def body(m, e):
        (m / "f").write_text("x")
        raises_errno(errno.EFBIG, os.truncate, m / "f", 1 << 62)
        os.mkdir(m / "d")
        (m / "d" / "x").write_text("x")
        os.mkdir(m / "d2")
        raises_errno(errno.ENOTEMPTY, os.rename, m / "d2", m / "d")
        raises_errno(errno.ENOTEMPTY, os.rmdir, m / "d")
        raises_errno(errno.ENOTDIR, os.rename, m / "d2", m / "f")
    hm.run(body)


# ---- against OpenSSH's server: as sshfs, no crash ---------------------------

def test_degraded_against_openssh(om):
    def body(m, e):
        (m / "f").write_text("x")
        raises_errno(errno.EPERM, os.mkfifo, m / "p")
        raises_errno(errno.EOPNOTSUPP, os.setxattr, m / "f", "user.a", b"1")
        raises_errno(errno.EOPNOTSUPP, os.getxattr, m / "f", "user.a")
        raises_errno(errno.EOPNOTSUPP, os.listxattr, m / "f")
        fd = os.open(m / "f", os.O_RDWR)
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
            assert libc.fallocate(fd, 0, 0, 4096) == -1
            assert ctypes.get_errno() == errno.EOPNOTSUPP
            assert os.lseek(fd, 0, os.SEEK_DATA) == 0  # the kernel's own answer
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # local locks, as sshfs
        finally:
            os.close(fd)
        os.link(m / "f", m / "g")
        assert os.stat(m / "f").st_nlink == 1  # as sshfs: SFTP v3 has no count
        os.utime(m / "f", ns=(1_500_000_000, 2_500_000_000))
        assert os.stat(e / "f").st_mtime == 2  # whole seconds
    om.run(body)
