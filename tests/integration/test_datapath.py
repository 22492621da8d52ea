"""hashi's data path on real mounts: write-behind (errors held for fsync and
close, -o sshfs_sync), O_APPEND from two processes, read-ahead (never stale
after a write through the mount, short files, EOF, files that grow), large
sequential and random transfers compared by hash, and -o max_conns=N.

The export of the disk-full tests is a small tmpfs mounted inside the test
sshd's own mount namespace (nsenter): there the server's writes fail with
ENOSPC while our namespace never sees the tmpfs.
"""

import hashlib
import os
import random
import re
import subprocess
import threading
import time

import pytest

from mountfix import *  # noqa: F401,F403 - fixtures
from mountfix import _wait_for

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
