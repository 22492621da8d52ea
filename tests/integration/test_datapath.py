"""hashi's data path on real mounts: write-behind (errors held for fsync and
close, -o sshfs_sync), O_APPEND from two processes, read-ahead (never stale
after a write through the mount, short files, EOF, files that grow), large
sequential and random transfers compared by hash, and -o max_conns=N.

The export of the disk-full tests is a small tmpfs mounted inside the test
sshd's own mount namespace (nsenter): there the server's writes fail with
ENOSPC while our namespace never sees the tmpfs.
"""

import ctypes
import errno
import hashlib
import os
import random
import re
import subprocess
import threading
import time

import pytest

from mountfix import *  # noqa: F401,F403 - fixtures
from mountfix import OPENSSH_SFTP_SERVER, _wait_for

MiB = 1 << 20


def sha(data):
    return hashlib.sha256(data).hexdigest()


def sha_file(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
    return h.hexdigest()


def fresh_mount(menv, who, server, opts=(), export=None):
    return menv.mount(who, server, opts=list(opts), export=export)


def unmount_ok(m):
    assert m.unmount() == 0, "hashi exited non-zero after fusermount3 -u"


# --------------------------------------------------------------------------
# write-behind errors: a server whose disk is full

class FullDisk:
    """A 1 MiB tmpfs over an export directory, seen only by the test sshd
    (mounted in its mount namespace)."""

    def __init__(self, menv, who):
        self.menv = menv
        self.dir = menv.new_dir("full", owner=menv.account(who))
        self.pid = menv.sshd.pid
        acct = menv.account(who)
        st = os.stat(self.dir)
        self._ns(["mount", "-t", "tmpfs", "-o",
                  f"size=1m,mode=0755,uid={st.st_uid},gid={st.st_gid}", "tmpfs", str(self.dir)])
        assert acct  # the export belongs to the mounting account inside too

    def _ns(self, argv):
        r = subprocess.run(["nsenter", "-t", str(self.pid), "-m", *argv],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, f"{argv}: {r.stderr}"

    def close(self):
        self._ns(["umount", str(self.dir)])


@pytest.fixture
def full_disk(menv, request):
    made = []

    def make(who):
        d = FullDisk(menv, who)
        made.append(d)
        return d
    yield make
    for d in made:
        d.close()


@pytest.mark.parametrize("server", SERVERS)
def test_write_behind_error_comes_back_at_close(menv, full_disk, server):
    disk = full_disk("user")
    m = fresh_mount(menv, "user", server, export=disk.dir)
    try:
        def body(path):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            errors = []
            try:
                # 2 MiB into 1 MiB: some write must fail, at the latest at close
                for _ in range(8):
                    os.write(fd, b"x" * (256 * 1024))
            except OSError as e:
                errors.append(("write", e.errno))
            try:
                os.close(fd)
            except OSError as e:
                errors.append(("close", e.errno))
            return errors
        errors = m.do(body, m.path / "big")
        assert errors, "2 MiB written to a 1 MiB disk and no error at write or close"
        assert errors[-1][0] == "close", \
            f"the held error must come back at close too: {errors}"

        # one write that fits in the queue, and fails on the server:
        # write(2) returns, close(2) fails
        def one(path):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            n = os.write(fd, b"y" * (3 * MiB // 2))
            try:
                os.close(fd)
            except OSError as e:
                return n, e.errno
            return n, None
        m.do(lambda p: os.unlink(p), m.path / "big")
        n, err = m.do(one, m.path / "one")
        assert n > 0
        assert err is not None, "a failed write-behind was not reported at close"
    finally:
        unmount_ok(m)


def test_write_behind_error_comes_back_at_fsync(menv, full_disk):
    disk = full_disk("user")
    m = fresh_mount(menv, "user", "openssh", export=disk.dir)
    try:
        def body(path):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            out = []
            try:
                os.write(fd, b"z" * (3 * MiB // 2))
                out.append("write ok")
            except OSError as e:
                out.append(f"write {e.errno}")
            try:
                os.fsync(fd)
                out.append("fsync ok")
            except OSError as e:
                out.append(f"fsync {e.errno}")
            # reported once: close after a failed fsync has nothing more
            os.close(fd)
            return out
        out = m.do(body, m.path / "f")
        assert out[0] == "write ok" and out[1].startswith("fsync "), out
    finally:
        unmount_ok(m)


def test_sshfs_sync_write_fails_itself(menv, full_disk):
    disk = full_disk("user")
    m = fresh_mount(menv, "user", "openssh", opts=["sshfs_sync"], export=disk.dir)
    try:
        def body(path):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                n = os.write(fd, b"s" * (2 * MiB))
                return ("short", n)
            except OSError as e:
                return ("error", e.errno)
            finally:
                try:
                    os.close(fd)
                except OSError:
                    pass
        kind, val = m.do(body, m.path / "s")
        # synchronous: the write itself says so (all of it, or the part that failed)
        assert kind == "error" or val < 2 * MiB, (kind, val)
    finally:
        unmount_ok(m)


def test_sshfs_sync_data_arrives(mnt_sync):
    def body(m, e):
        data = os.urandom(3 * MiB + 17)
        with open(m / "f", "wb") as f:
            f.write(data)
            f.flush()
            # synchronous: on the server before close
            assert sha_file(e / "f") == sha(data)
        return True
    assert mnt_sync.run(body)


@pytest.fixture(scope="module")
def mnt_sync(menv):
    m = menv.mount("root", "openssh", opts=["sshfs_sync"])
    yield m
    unmount_ok(m)


# --------------------------------------------------------------------------
# write-behind on a healthy server

def test_written_data_is_on_the_server_after_close(mnt):
    def body(m, e):
        data = os.urandom(5 * MiB + 123)
        fd = os.open(m / "f", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        for i in range(0, len(data), 64 * 1024):
            os.write(fd, data[i:i + 64 * 1024])
        os.close(fd)
        assert (e / "f").stat().st_size == len(data)
        assert sha_file(e / "f") == sha(data)
        # many small writes, each of its own request
        fd = os.open(m / "small", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        for i in range(2000):
            os.write(fd, b"%07d\n" % i)
        os.fsync(fd)
        assert (e / "small").read_bytes() == b"".join(b"%07d\n" % i for i in range(2000))
        os.close(fd)
        return True
    assert mnt.run(body)


def test_read_sees_write_through_another_descriptor(mnt):
    def body(m, e):
        (e / "f").write_bytes(b"\0" * (4 * MiB))
        w = os.open(m / "f", os.O_WRONLY)
        r = os.open(m / "f", os.O_RDONLY)
        try:
            for i in range(64):
                os.pwrite(w, bytes([i + 1]) * 4096, i * 65536)
                os.posix_fadvise(r, 0, 0, os.POSIX_FADV_DONTNEED)
                got = os.pread(r, 4096, i * 65536)
                assert got == bytes([i + 1]) * 4096, f"write {i} not seen by a read after it"
        finally:
            os.close(w)
            os.close(r)
        return True
    assert mnt.run(body)


def test_append_from_two_processes(mnt):
    def body(m, e):
        path = m / "log"
        path.write_bytes(b"")
        n = 400

        def child(tag):
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            for i in range(n):
                os.write(fd, (f"{tag} {i:06d} ".ljust(63, ".") + "\n").encode())
            os.close(fd)
        pids = []
        for tag in ("A", "B"):
            pid = os.fork()
            if pid == 0:
                try:
                    child(tag)
                finally:
                    os._exit(0)
            pids.append(pid)
        for pid in pids:
            _, status = os.waitpid(pid, 0)
            assert status == 0
        server = (e / "log").read_bytes()
        assert len(server) == 2 * n * 64, "records lost or overwritten"
        lines = server.decode().splitlines()
        assert all(len(ln) == 63 for ln in lines), "records overlap"
        for tag in ("A", "B"):
            mine = [ln for ln in lines if ln.startswith(tag + " ")]
            assert [int(ln.split()[1].rstrip(".")) for ln in mine] == list(range(n))
        assert path.read_bytes() == server
        return True
    assert mnt.run(body)


# --------------------------------------------------------------------------
# read-ahead

def test_readahead_never_stale_after_write(mnt):
    def body(m, e):
        size = 24 * MiB
        orig = os.urandom(size)
        (e / "f").write_bytes(orig)
        expect = bytearray(orig)
        r = os.open(m / "f", os.O_RDONLY)
        w = os.open(m / "f", os.O_WRONLY)
        try:
            pos = 0
            step = 128 * 1024
            rng = random.Random(7)
            while pos < size:
                got = os.pread(r, step, pos)
                assert got == bytes(expect[pos:pos + step]), f"stale or wrong bytes at {pos}"
                pos += step
                if pos % (2 * MiB) == 0 and pos < size:
                    # ahead of the reader, where read-ahead has been
                    at = pos + rng.randrange(0, 4 * MiB)
                    new = os.urandom(rng.randrange(1, 70000))
                    os.pwrite(w, new, at)
                    end = min(at + len(new), size)
                    expect[at:end] = new[:end - at]
                    if at + len(new) > size:
                        expect += new[end - at:]
                        size = len(expect)
                    # the kernel's copy goes; ours must be right by itself
                    os.posix_fadvise(r, 0, 0, os.POSIX_FADV_DONTNEED)
            # a truncate through the mount, then new bytes past it
            os.ftruncate(w, 1000)
            os.pwrite(w, b"N" * 5000, 3000)
            os.posix_fadvise(r, 0, 0, os.POSIX_FADV_DONTNEED)
            data = os.pread(r, 10 * MiB, 0)
            assert data == bytes(expect[:1000]) + b"\0" * 2000 + b"N" * 5000
        finally:
            os.close(r)
            os.close(w)
        return True
    assert mnt.run(body)


def test_readahead_same_descriptor_read_write(mnt):
    def body(m, e):
        orig = os.urandom(6 * MiB)
        (e / "f").write_bytes(orig)
        fd = os.open(m / "f", os.O_RDWR)
        try:
            assert os.read(fd, MiB) == orig[:MiB]
            os.pwrite(fd, b"W" * 100, 3 * MiB)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            rest = os.read(fd, 5 * MiB)
            want = orig[MiB:3 * MiB] + b"W" * 100 + orig[3 * MiB + 100:]
            assert rest == want
        finally:
            os.close(fd)
        return True
    assert mnt.run(body)


def test_readahead_eof(mnt):
    def body(m, e):
        for size in (0, 1, 4095, 4096, 261119, 261120, 261121, 1 << 20, 3 * MiB + 7):
            data = os.urandom(size)
            (e / f"f{size}").write_bytes(data)
            assert (m / f"f{size}").read_bytes() == data, f"size {size}"
        return True
    assert mnt.run(body)


def test_readahead_file_grows_after_eof(mnt_nocache):
    def body(m, e):
        # read to EOF, the file grows on the server, the same descriptor reads on
        (e / "g").write_bytes(b"a" * 300000)
        fd = os.open(m / "g", os.O_RDONLY)
        try:
            got = b""
            while True:
                b = os.read(fd, 65536)
                if not b:
                    break
                got += b
            assert got == b"a" * 300000
            with open(e / "g", "ab") as f:
                f.write(b"b" * 500000)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            more = os.pread(fd, MiB, 300000)
            assert more == b"b" * 500000, f"{len(more)} bytes after the old EOF"
        finally:
            os.close(fd)
        return True
    assert mnt_nocache.run(body)


def test_large_sequential_write_and_read(mnt):
    def body(m, e):
        size = 96 * MiB + 4321
        rng = random.Random(11)
        h = hashlib.sha256()
        with open(m / "big", "wb") as f:
            left = size
            while left:
                n = min(left, rng.choice((4096, 65536, MiB, 3 * MiB + 5)))
                block = rng.randbytes(n)
                h.update(block)
                f.write(block)
                left -= n
        want = h.hexdigest()
        assert sha_file(e / "big") == want, "the server has other bytes"
        assert sha_file(m / "big") == want, "read back through the mount: other bytes"
        # two readers of one file at once
        out = {}

        def reader(k):
            out[k] = sha_file(m / "big")
        ts = [threading.Thread(target=reader, args=(k,)) for k in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert out == {0: want, 1: want}
        return True
    assert mnt.run(body)


def test_random_reads(mnt):
    def body(m, e):
        data = os.urandom(20 * MiB)
        (e / "f").write_bytes(data)
        rng = random.Random(3)
        fd = os.open(m / "f", os.O_RDONLY)
        try:
            pos = 0
            for i in range(400):
                if i % 3 == 0:  # a sequential stretch now and then
                    off, n = pos, 128 * 1024
                else:
                    off, n = rng.randrange(0, len(data)), rng.randrange(1, 600000)
                got = os.pread(fd, n, off)
                assert got == data[off:off + n], f"pread({n}, {off})"
                pos = off + n
        finally:
            os.close(fd)
        return True
    assert mnt.run(body)


# --------------------------------------------------------------------------
# max_conns

def _sessions(menv, who):
    pat = rf"Accepted publickey for {re.escape(menv.account(who).name)} from"
    return len(re.findall(pat, menv.sshd.log_text()))


def test_max_conns_makes_n_connections(menv):
    before = _sessions(menv, "user")
    m = menv.mount("user", "openssh", opts=["max_conns=3"])
    try:
        # the extra connections are made after the mount
        _wait_for(lambda: _sessions(menv, "user") >= before + 3, "three logins")
        assert _sessions(menv, "user") == before + 3, "max_conns=3: not three logins"

        def body(mp, e):
            files = {}
            for k in range(6):
                files[k] = os.urandom(3 * MiB + k)
                (e / f"f{k}").write_bytes(files[k])
            res = {}

            def reader(k):
                res[k] = (mp / f"f{k}").read_bytes() == files[k]
            ts = [threading.Thread(target=reader, args=(k,)) for k in files]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            assert all(res.values()), res
            # written and read, read while written, copied between files
            data = os.urandom(2 * MiB)
            (mp / "w").write_bytes(data)
            r = os.open(mp / "f0", os.O_RDONLY)
            w = os.open(mp / "copy", os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                n = os.copy_file_range(r, w, len(files[0]))
                while n < len(files[0]):
                    n += os.copy_file_range(r, w, len(files[0]) - n)
            finally:
                os.close(r)
                os.close(w)
            assert (e / "copy").read_bytes() == files[0]
            assert (mp / "w").read_bytes() == data == (e / "w").read_bytes()
            assert os.stat(mp / "w").st_size == len(data)
            return True
        assert m.run(body)
    finally:
        unmount_ok(m)


def test_max_conns_bad_value(menv):
    a = menv.account("root")
    mp = menv.mountpoint(a)
    r = menv.run_hashi(a, ["127.0.0.1:/tmp", str(mp), "-o", "max_conns=0"])
    assert r.returncode != 0 and "max_conns" in r.stderr


def test_auto_cache_sees_server_change(menv):
    m = menv.mount("root", "openssh", opts=["auto_cache", "attr_timeout=0", "entry_timeout=0"])
    try:
        def body(mp, e):
            (e / "f").write_bytes(b"one" * 1000)
            assert (mp / "f").read_bytes() == b"one" * 1000
            assert (mp / "f").read_bytes() == b"one" * 1000
            (e / "f").write_bytes(b"two!" * 1000)
            os.utime(e / "f", (1, 1))
            assert (mp / "f").read_bytes() == b"two!" * 1000
            return True
        assert m.run(body)
    finally:
        unmount_ok(m)


# --------------------------------------------------------------------------
# small files: what tar and cp do to each file, in as few round trips as the
# semantics allow (times and mode set behind the writes, errors at close)

_libc = None


def futimens_omit_atime(fd, mtime):
    """futimens(fd, {UTIME_OMIT, mtime}), as GNU tar does after writing a
    file (os.utime cannot omit one of the times)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.futimens.argtypes = [ctypes.c_int, ctypes.c_void_p]
    UTIME_OMIT = (1 << 30) - 2
    ts = (ctypes.c_long * 4)(0, UTIME_OMIT, mtime, 0)
    if _libc.futimens(fd, ts) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def test_times_and_mode_set_right_after_writing(mnt):
    """create O_EXCL, write, fchmod, futimens, close (tar, cp -p): what stat
    shows afterwards, through the mount and on the server, is what was set;
    a write after the times moves the mtime again until it is set again."""
    def body(m, e):
        fd = os.open(m / "f", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, b"a" * 4096)
        os.fchmod(fd, 0o600)
        os.utime(fd, (1_000_000_000, 1_100_000_000))
        st = os.fstat(fd)
        assert (st.st_size, st.st_mode & 0o7777) == (4096, 0o600)
        assert (st.st_atime, st.st_mtime) == (1_000_000_000, 1_100_000_000)
        os.close(fd)
        for p in (m / "f", e / "f"):
            st = os.stat(p)
            assert (st.st_size, st.st_mode & 0o7777) == (4096, 0o600), p
            assert (st.st_atime, st.st_mtime) == (1_000_000_000, 1_100_000_000), p

        # tar's way: atime omitted; and a write between two settings
        fd = os.open(m / "g", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        atime = os.fstat(fd).st_atime
        os.write(fd, b"b" * 100)
        futimens_omit_atime(fd, 1_200_000_000)
        os.write(fd, b"c" * 100)
        assert os.fstat(fd).st_size == 200
        futimens_omit_atime(fd, 1_300_000_000)
        os.close(fd)
        for p in (m / "g", e / "g"):
            st = os.stat(p)
            assert st.st_size == 200 and st.st_mtime == 1_300_000_000, p
            assert abs(st.st_atime - atime) < 2, f"{p}: the omitted atime changed"
        assert (e / "g").read_bytes() == b"b" * 100 + b"c" * 100

        # a file truncated through another descriptor in between: the
        # size the first one knew is stale and must not be shown
        fd = os.open(m / "h", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, b"d" * 1000)
        os.truncate(m / "h", 10)
        os.utime(fd, (5, 6))
        assert os.fstat(fd).st_size == 10
        os.close(fd)
        assert os.stat(e / "h").st_size == 10 and os.stat(e / "h").st_mtime == 6
        return True
    assert mnt.run(body)


def test_deferred_setattr_error_comes_back_at_close(menv):
    """A server that refuses FSETSTAT (OpenSSH's sftp-server -P fsetstat):
    the times set right after the writes go behind them, so futimens
    returns, and the refusal comes back at close, as a write's error does;
    then stat shows the server's times, not the ones that failed."""
    m = menv.mount("root", "hashi",
                   opts=[f"sftp_server={OPENSSH_SFTP_SERVER} -P fsetstat"])
    try:
        def body(mp, e):
            fd = os.open(mp / "f", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, b"x" * 4096)
            futimens_omit_atime(fd, 1_100_000_000)
            try:
                os.close(fd)
            except OSError as err:
                closed = err.errno
            else:
                closed = None
            assert closed == errno.EPERM, \
                f"a refused FSETSTAT behind the writes must fail close: {closed}"
            assert (e / "f").read_bytes() == b"x" * 4096
            assert os.stat(e / "f").st_mtime != 1_100_000_000
            assert os.stat(mp / "f").st_mtime == int(os.stat(e / "f").st_mtime)  # (SFTP v3: seconds)
            return True
        assert m.run(body)
    finally:
        unmount_ok(m)


def test_copy_file_range_counts_exactly(mnt):
    """copy-data and the FSTAT that says how much it copied go together:
    the count is exact for a short source, an offset past its end, and a
    source still being written through the mount."""
    def body(m, e):
        (e / "src").write_bytes(bytes(range(256)) * 40)
        fi = os.open(m / "src", os.O_RDONLY)
        fo = os.open(m / "dst", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            assert os.copy_file_range(fi, fo, 1 << 30, 100, 0) == 10240 - 100
            assert os.copy_file_range(fi, fo, 1 << 20, 20000, 0) == 0
        finally:
            os.close(fi)
            os.close(fo)
        assert (e / "dst").read_bytes() == (bytes(range(256)) * 40)[100:]
        w = os.open(m / "grow", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(w, b"g" * 3000)
        fo = os.open(m / "dst2", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            assert os.copy_file_range(w, fo, 1 << 30, 0, 0) == 3000
        finally:
            os.close(fo)
            os.close(w)
        assert (e / "dst2").read_bytes() == b"g" * 3000
        return True
    assert mnt.run(body)


def test_copy_file_range_counts_what_the_server_has(mnt):
    """The source changed on the server after its size was cached (lookup,
    open): the count copy_file_range returns is what was copied. Grown: the
    kernel asks for no more than the size it knows, and gets that much.
    Shrunk: the copy ends at the server's end, and so does the count."""
    def body(m, e):
        for name, before, after in (("grown", b"a" * 1000, b"a" * 1000 + b"b" * 5000),
                                    ("shrunk", b"c" * 6000, b"c" * 1000)):
            (e / name).write_bytes(before)
            assert os.stat(m / name).st_size == len(before)
            fi = os.open(m / name, os.O_RDONLY)
            fo = os.open(m / (name + ".copy"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                (e / name).write_bytes(after)
                n = os.copy_file_range(fi, fo, 1 << 30, 0, 0)
            finally:
                os.close(fi)
                os.close(fo)
            assert n == min(len(before), len(after)), name
            assert (e / (name + ".copy")).read_bytes() == after[:n], name
        return True
    assert mnt.run(body)


def test_small_file_read_sends_one_read(menv, tmp_path):
    """A small file whose size the open knows (the lookup's attributes): one
    READ of exactly that size, no second READ to hear of EOF, and a read at
    that size is EOF without a request."""
    from test_cache import DebugMount  # hashi -d: its log counts the requests
    dm = DebugMount(menv, tmp_path)
    try:
        data = os.urandom(3000)
        (dm.export / "s").write_bytes(data)
        assert os.stat(dm.path / "s").st_size == 3000
        dm.requests()
        fd = os.open(dm.path / "s", os.O_RDONLY)
        try:
            assert os.read(fd, 65536) == data
            assert os.read(fd, 65536) == b""
            assert os.pread(fd, 100, 3000) == b""
        finally:
            os.close(fd)
        assert dm.requests().get("READ", 0) == 1
        assert re.search(r"-> READ handle \S+ offset 0 length 3000\b", dm.log())
    finally:
        dm.close()


@pytest.mark.parametrize("server", ["openssh", "hashi"])
def test_read_at_cached_size_sees_growth_once_it_expires(menv, server):
    """The size an open took from the cache means EOF only while the cache
    may be believed: after dcache_timeout, a read at that size on the same
    descriptor gets what the server appended since."""
    m = menv.mount("root", server, opts=["dcache_timeout=1"])
    try:
        def body(mp, e):
            (e / "g").write_bytes(b"a" * 3000)
            assert os.stat(mp / "g").st_size == 3000
            fd = os.open(mp / "g", os.O_RDONLY)
            try:
                assert os.read(fd, 65536) == b"a" * 3000
                with open(e / "g", "ab") as f:
                    f.write(b"b" * 2000)
                got = []

                def grown():
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    got[:] = [os.pread(fd, 65536, 3000)]
                    return got[0] != b""
                _wait_for(grown, "the appended bytes at the old size", 30)
                assert got[0] == b"b" * 2000
            finally:
                os.close(fd)
            return True
        assert m.run(body)
    finally:
        unmount_ok(m)
