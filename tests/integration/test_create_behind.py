"""Create behind: a create whose success is certain but for a race (O_EXCL,
or a name the cache knows absent, in a directory the cache says the remote
user may write) is answered before the server's HANDLE; the file's writes
and setattrs wait for the handle and go out in order. A refusal the server
gives (a directory made read-only behind the cache's back, a name taken in
the meantime) comes back at fsync and close, and nothing is left claimed
written. -o sync_create and cache=no create as before.

The server is OpenSSH's sftp-server (hashi's own server has open@hashi, with
which hashi does not create behind).
"""

import errno
import io
import os
import subprocess
import tarfile
import threading
import time

import pytest

from mountfix import *  # noqa: F401,F403 - fixtures
from test_cache import DebugMount


def unmount_ok(m):
    assert m.unmount() == 0, "hashi exited non-zero after fusermount3 -u"


def behind_count(dm):
    return dm.log().count("its OPEN behind")


def learn(mp):
    """A first create (O_EXCL) waits, and teaches hashi the server's owner
    and umask for new files; the directory's attributes are cached."""
    os.mkdir(mp / "d")
    fd = os.open(mp / "d" / "first", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.close(fd)
    os.listdir(mp / "d")  # a complete listing: names not in it are absent
    # a few more, for hashi to learn how the server numbers its handles
    for i in range(HANDLES_TO_LEARN):
        (mp / "d" / f"w{i}").write_bytes(b"warm")


HANDLES_TO_LEARN = 5  # (sftp-client.c's HM_LEARN is 4)
FORESEEN = "goes out on the handle foreseen"


def make_tarball(path, dirs=5, files=40):
    src = {}
    with tarfile.open(path, "w") as t:
        for a in range(dirs):
            info = tarfile.TarInfo(f"t/d{a}")
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = 1_000_000_000
            t.addfile(info)
            for b in range(files):
                data = os.urandom(100 + 37 * b)
                info = tarfile.TarInfo(f"t/d{a}/f{b}")
                info.size = len(data)
                info.mode = 0o640 if b % 2 else 0o644
                info.mtime = 1_100_000_000 + b
                t.addfile(info, io.BytesIO(data))
                src[f"t/d{a}/f{b}"] = (data, info.mode, info.mtime)
    return src


def test_tar_of_small_files_arrives_whole(menv, tmp_path):
    """tar -x of 200 small files into the mount: every file on the server
    has its bytes, mode and mtime, and the creates went behind."""
    dm = DebugMount(menv, tmp_path)
    try:
        learn(dm.path)
        ball = tmp_path / "small.tar"
        src = make_tarball(ball)
        r = subprocess.run(["tar", "-x", "-f", str(ball), "-C", str(dm.path / "d")],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        for name, (data, mode, mtime) in src.items():
            for top in (dm.export / "d", dm.path / "d"):
                p = top / name
                assert p.read_bytes() == data, p
                st = os.stat(p)
                assert (st.st_mode & 0o7777, int(st.st_mtime)) == (mode, mtime), p
        assert behind_count(dm) >= len(src), "tar's creates did not go behind"
        # files' WRITE and FSETSTAT left before their OPEN was answered
        # (two each; not when another OPEN, a listing's, was unanswered)
        assert dm.log().count(FORESEEN) >= len(src), "few requests went out on a foreseen handle"
    finally:
        dm.close()


def test_stat_right_after_create(menv):
    """fstat and stat of a file created behind, before and after its
    writes: the mode asked for under the umask, the mounting user's ids,
    the size written, times of now; after close the server's."""
    m = menv.mount("user", "openssh")
    try:
        def body(mp, e):
            learn(mp)
            old = os.umask(0o027)
            try:
                fd = os.open(mp / "d" / "n", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            finally:
                os.umask(old)
            now = time.time()
            for st in (os.fstat(fd), os.stat(mp / "d" / "n")):
                assert st.st_mode & 0o7777 == 0o640 and st.st_size == 0
                assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
                assert abs(st.st_mtime - now) < 60
            os.write(fd, b"z" * 1234)
            for st in (os.fstat(fd), os.stat(mp / "d" / "n")):
                assert st.st_size == 1234 and st.st_mode & 0o7777 == 0o640
            os.close(fd)
            s, c = os.stat(e / "d" / "n"), os.stat(mp / "d" / "n")
            assert (s.st_size, s.st_mode & 0o7777) == (1234, 0o640)
            assert (c.st_size, c.st_mode, int(c.st_mtime)) == (s.st_size, s.st_mode, int(s.st_mtime))
            return True
        assert m.run(body)
    finally:
        unmount_ok(m)


def refused_create(mp, e, excl):
    """The directory made read-only on the server after the mount cached
    it writable: open returns (created behind), the write is queued (or
    fails, once the refusal is back), and fsync and close say EACCES; no
    file is there, on either side."""
    os.chmod(e / "d", 0o555)
    try:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if excl else 0)
        fd = os.open(mp / "d" / "ro", flags, 0o644)
        try:
            os.write(fd, b"never")
        except PermissionError:
            pass  # (the refusal was back already: a write says it too)
        with pytest.raises(OSError) as fs:
            os.fsync(fd)
        with pytest.raises(OSError) as cl:
            os.close(fd)
        assert (fs.value.errno, cl.value.errno) == (errno.EACCES, errno.EACCES)
        assert not (e / "d" / "ro").exists()
        with pytest.raises(FileNotFoundError):
            os.stat(mp / "d" / "ro")
    finally:
        os.chmod(e / "d", 0o755)
    return True


@pytest.mark.parametrize("excl", [True, False], ids=["excl", "known-absent"])
def test_refused_create_fails_at_fsync_and_close(menv, excl):
    m = menv.mount("user", "openssh")
    try:
        def body(mp, e):
            learn(mp)
            return refused_create(mp, e, excl)
        assert m.run(body)
    finally:
        unmount_ok(m)


def test_name_taken_meanwhile_is_eexist_at_close(menv):
    """The cache says the name is absent; someone makes it on the server;
    our O_EXCL create went behind: close says EEXIST and their file stays
    as it was."""
    m = menv.mount("user", "openssh")
    try:
        def body(mp, e):
            learn(mp)
            (e / "d" / "taken").write_bytes(b"theirs")
            fd = os.open(mp / "d" / "taken", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, b"ours")
            except FileExistsError:
                pass  # (the refusal was back already)
            with pytest.raises(OSError) as cl:
                os.close(fd)
            assert cl.value.errno == errno.EEXIST
            assert (e / "d" / "taken").read_bytes() == b"theirs"
            assert (mp / "d" / "taken").read_bytes() == b"theirs"
            return True
        assert m.run(body)
    finally:
        unmount_ok(m)


@pytest.mark.parametrize("opt", ["sync_create", "cache=no"])
def test_without_create_behind_open_fails_itself(menv, opt):
    """-o sync_create and cache=no: the refused create fails at open."""
    m = menv.mount("user", "openssh", opts=[opt])
    try:
        def body(mp, e):
            learn(mp)
            os.chmod(e / "d", 0o555)
            try:
                with pytest.raises(PermissionError):
                    os.open(mp / "d" / "ro", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            finally:
                os.chmod(e / "d", 0o755)
            fd = os.open(mp / "d" / "ok", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, b"fine")
            os.close(fd)
            assert (e / "d" / "ok").read_bytes() == b"fine"
            return True
        assert m.run(body)
    finally:
        unmount_ok(m)


def test_sync_create_sends_nothing_behind(menv, tmp_path):
    dm = DebugMount(menv, tmp_path, opts=["sync_create"])
    try:
        learn(dm.path)
        for i in range(5):
            (dm.path / "d" / f"s{i}").write_bytes(b"x")
        assert behind_count(dm) == 0
        assert (dm.export / "d" / "s4").read_bytes() == b"x"
    finally:
        dm.close()


def test_many_creates_at_once_past_the_bound(menv, tmp_path):
    """150 files created and written by 150 threads at once: more than the
    64 creates allowed behind at a time; those past the bound wait, as
    without create behind, and every file arrives whole."""
    dm = DebugMount(menv, tmp_path)
    try:
        learn(dm.path)
        go = threading.Barrier(150)
        errors = []

        def one(i):
            try:
                go.wait()
                fd = os.open(dm.path / "d" / f"c{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                os.write(fd, str(i).encode() * 50)
                os.close(fd)
            except Exception as e:  # noqa: B902 - reported below
                errors.append((i, e))
        threads = [threading.Thread(target=one, args=(i,)) for i in range(150)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        for i in range(150):
            assert (dm.export / "d" / f"c{i}").read_bytes() == str(i).encode() * 50
        assert behind_count(dm) > 0
    finally:
        dm.close()


def test_open_by_name_while_created_behind(menv):
    """Another open of a file still being created behind (on another
    connection, max_conns=2) finds it made, and reads what was written."""
    m = menv.mount("user", "openssh", opts=["max_conns=2"])
    try:
        def body(mp, e):
            learn(mp)
            for i in range(20):
                p = mp / "d" / f"r{i}"
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                os.write(fd, b"seen %d" % i)
                rd = os.open(p, os.O_RDONLY)
                try:
                    assert os.read(rd, 100) == b"seen %d" % i
                finally:
                    os.close(rd)
                    os.close(fd)
            return True
        assert m.run(body)
    finally:
        unmount_ok(m)


def test_foreseen_handles_with_other_opens_in_flight(menv, tmp_path):
    """Files created behind (whose writes go out on the server's handle
    foreseen before it answers) while other threads open, read, list and
    hold files open, so that opens and closes of others are in flight and
    the server's table of handles keeps changing: every file created has
    exactly its bytes, every read gets the right bytes, and a handle is
    foreseen only when it is certain (a wrong one would write into another
    file, or fail)."""
    dm = DebugMount(menv, tmp_path)
    try:
        src = {}
        (dm.export / "s").mkdir()  # (on the server: before the mount lists anything)
        for i in range(12):
            data = os.urandom(3000 + 101 * i)
            (dm.export / "s" / f"src{i}").write_bytes(data)
            src[i] = data
        learn(dm.path)
        stop = threading.Event()
        errors = []
        made = {}

        def creator(k):
            try:
                for i in range(40):
                    name = f"new{k}_{i}"
                    data = (b"%d:%d;" % (k, i)) * (50 + 7 * i)
                    fd = os.open(dm.path / "d" / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                    os.write(fd, data)
                    if i % 3 == 0:
                        os.utime(fd, (1_000_000_000, 1_000_000_000 + i))
                    os.close(fd)
                    made[name] = data
            except Exception as e:  # noqa: B902 - reported below
                errors.append(("creator", k, e))

        def reader(k):
            try:
                n = 0
                held = []
                while not stop.is_set() or n < 20:
                    i = (n * 5 + k) % len(src)
                    fd = os.open(dm.path / "s" / f"src{i}", os.O_RDONLY)
                    got = os.read(fd, 1 << 20)
                    assert got == src[i], f"src{i}: wrong bytes"
                    held.append(fd)
                    if len(held) > 3 or n % 2:  # close out of order: the server's free list turns
                        os.close(held.pop(n % len(held)))
                    if n % 4 == 0:
                        os.listdir(dm.path / ("d" if n % 8 else "s"))
                    n += 1
                for fd in held:
                    os.close(fd)
            except Exception as e:  # noqa: B902 - reported below
                errors.append(("reader", k, e))

        creators = [threading.Thread(target=creator, args=(k,)) for k in range(3)]
        readers = [threading.Thread(target=reader, args=(k,)) for k in range(2)]
        for t in creators + readers:
            t.start()
        for t in creators:
            t.join()
        stop.set()
        for t in readers:
            t.join()
        assert not errors, errors
        assert len(made) == 3 * 40
        for name, data in made.items():
            assert (dm.export / "d" / name).read_bytes() == data, name
        for i, data in src.items():
            assert (dm.export / "s" / f"src{i}").read_bytes() == data
        assert dm.log().count(FORESEEN) > 0
        assert "not the one foreseen" not in dm.log()
    finally:
        dm.close()
