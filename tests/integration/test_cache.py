"""hashi's metadata cache (dir_cache, dcache_*_timeout, cache=no) on real mounts.

What another client does on the server shows through the mount once the
cache timeout has passed (never sooner than the kernel and our cache allow,
and with a long timeout a stale answer is still shown); what this mount
does itself shows at once, however long the timeout. Round trips are
counted from hashi -d's one-line request log: `ls -l` of a directory costs
its READDIRs, not one LSTAT per file.

The export directory (e) is the same directory the server sees; changes
made there are "server-side" changes. Nothing waits by sleeping a fixed
time: a change that must appear is polled for with a deadline.
"""

import errno
import os
import re
import stat
import subprocess
import time

import pytest

from mountfix import *  # noqa: F401,F403 - fixtures
from mountfix import force_unmount

LONG = 600    # seconds: nothing expires during a test
SHORT = 1


def raises_errno(code, fn, *args):
    try:
        fn(*args)
    except OSError as e:
        assert e.errno == code, f"{fn.__name__}{args}: expected {errno.errorcode[code]}, " \
                                f"got {errno.errorcode.get(e.errno, e.errno)}"
        return
    raise AssertionError(f"{fn.__name__}{args} succeeded; expected {errno.errorcode[code]}")


def exists(p):
    try:
        os.lstat(p)
        return True
    except FileNotFoundError:
        return False


def poll(cond, what, limit=30.0):
    """Wait for cond() to be true (a change on the server reaching us)."""
    deadline = time.monotonic() + limit
    delay = 0.01
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def put(p, text):
    with open(p, "w") as f:
        f.write(text)


@pytest.fixture(scope="module", params=SERVERS)
def short(request, menv):
    """dcache_timeout=1, as the unprivileged user."""
    m = menv.mount("user", request.param, opts=[f"dcache_timeout={SHORT}"])
    yield m
    assert m.unmount() == 0


@pytest.fixture(scope="module", params=SERVERS)
def long(request, menv):
    """dcache_timeout=600: nothing expires while a test runs."""
    m = menv.mount("user", request.param, opts=[f"dcache_timeout={LONG}"])
    yield m
    assert m.unmount() == 0


@pytest.fixture(scope="module", params=SERVERS)
def nocache(request, menv):
    m = menv.mount("user", request.param, opts=["cache=no"])
    yield m
    assert m.unmount() == 0


# --------------------------------------------------------------------------
# changes made on the server

def test_server_change_seen_after_timeout(short):
    """Changed, renamed, deleted and created on the server: each is seen
    once dcache_timeout has passed."""
    m, e = short.fresh()
    put(e / "f", "one")
    assert short.do(lambda: os.stat(m / "f").st_size) == 3
    assert short.do(os.listdir, m) == ["f"]
    put(e / "f", "one two")
    short.do(poll, lambda: os.stat(m / "f").st_size == 7, "the new size")
    os.rename(e / "f", e / "g")
    short.do(poll, lambda: not exists(m / "f") and exists(m / "g"), "the rename")
    assert short.do(lambda: (m / "g").read_text()) == "one two"
    os.unlink(e / "g")
    short.do(poll, lambda: not exists(m / "g"), "the deletion")
    put(e / "h", "new")
    short.do(poll, lambda: os.listdir(m) == ["h"], "a new file in the listing")
    os.symlink("target-one", e / "l")
    short.do(poll, lambda: exists(m / "l"), "a new symlink")
    assert short.do(os.readlink, m / "l") == "target-one"
    os.unlink(e / "l")
    os.symlink("target-two", e / "l")
    short.do(poll, lambda: os.readlink(m / "l") == "target-two", "the new symlink target")


def test_server_change_not_seen_before_timeout(long):
    """With a long timeout, what was cached is what is shown: the proof that
    the cache is used at all (and that the tests above wait for it)."""
    m, e = long.fresh()
    put(e / "f", "one")
    os.symlink("a", e / "l")
    assert long.do(lambda: os.stat(m / "f").st_size) == 3
    assert long.do(os.readlink, m / "l") == "a"
    assert sorted(long.do(os.listdir, m)) == ["f", "l"]
    put(e / "f", "one two")
    put(e / "new", "x")
    os.unlink(e / "l")
    os.symlink("b", e / "l")
    assert long.do(lambda: os.stat(m / "f").st_size) == 3
    assert long.do(os.readlink, m / "l") == "a"
    assert sorted(long.do(os.listdir, m)) == ["f", "l"]


def test_nocache_sees_server_changes_at_once(nocache):
    m, e = nocache.fresh()
    put(e / "f", "one")
    os.symlink("a", e / "l")

    def body():
        assert os.stat(m / "f").st_size == 3
        assert os.readlink(m / "l") == "a"
        raises_errno(errno.ENOENT, os.stat, m / "new")
        return sorted(os.listdir(m))
    assert nocache.do(body) == ["f", "l"]
    put(e / "f", "one two")
    put(e / "new", "x")
    os.unlink(e / "l")
    os.symlink("b", e / "l")

    def after():
        assert os.stat(m / "f").st_size == 7
        assert os.readlink(m / "l") == "b"
        assert os.stat(m / "new").st_size == 1
        return sorted(os.listdir(m))
    assert nocache.do(after) == ["f", "l", "new"]
    os.unlink(e / "new")
    nocache.do(raises_errno, errno.ENOENT, os.stat, m / "new")


# --------------------------------------------------------------------------
# our own changes: seen at once, however long the timeout

def test_local_changes_seen_at_once(long):
    """Each local change invalidates what it changes, so that a stale
    cached answer never undoes it."""
    m, e = long.fresh()
    put(e / "f", "one")
    put(e / "g", "gg")
    os.mkdir(e / "d")
    long.who.chown(e)

    def body():
        assert sorted(os.listdir(m)) == ["d", "f", "g"]
        assert os.stat(m / "f").st_size == 3
        dir_mtime = os.stat(m).st_mtime_ns
        with open(m / "f", "a") as f:           # write: size and mtime
            f.write("+4444")
        assert os.stat(m / "f").st_size == 8
        os.truncate(m / "f", 2)                   # truncate
        assert os.stat(m / "f").st_size == 2
        os.chmod(m / "f", 0o600)                  # chmod
        assert stat.S_IMODE(os.stat(m / "f").st_mode) == 0o600
        os.utime(m / "f", (1_000_000_000, 1_100_000_000))
        assert os.stat(m / "f").st_mtime == 1_100_000_000
        put(m / "n", "new")                       # create: the parent's listing
        assert sorted(os.listdir(m)) == ["d", "f", "g", "n"]
        os.mkdir(m / "d" / "sub")                 # mkdir
        assert os.listdir(m / "d") == ["sub"]
        os.symlink("tgt", m / "l")                # symlink
        assert os.readlink(m / "l") == "tgt"
        os.rename(m / "g", m / "f")               # rename over a file
        assert (m / "f").read_text() == "gg"
        raises_errno(errno.ENOENT, os.stat, m / "g")
        os.unlink(m / "l")                        # unlink
        raises_errno(errno.ENOENT, os.readlink, m / "l")
        os.symlink("tgt2", m / "l")               # the same name again
        assert os.readlink(m / "l") == "tgt2"
        os.rmdir(m / "d" / "sub")                 # rmdir
        assert os.listdir(m / "d") == []
        assert sorted(os.listdir(m)) == ["d", "f", "l", "n"]
        return dir_mtime
    long.do(body)
    assert (e / "f").read_text() == "gg"


def test_local_change_refreshes_server_change(long):
    """A stale entry is dropped by a local operation on it: what the server
    has now is shown, including a change someone else made."""
    m, e = long.fresh()
    put(e / "f", "one")
    long.who.chown(e)
    assert long.do(lambda: os.stat(m / "f").st_size) == 3
    put(e / "f", "one two")
    assert long.do(lambda: os.stat(m / "f").st_size) == 3   # stale, as above
    long.do(os.chmod, m / "f", 0o640)
    assert long.do(lambda: os.stat(m / "f").st_size) == 7
    # The listing: a name added on the server appears after a local create.
    assert long.do(os.listdir, m) == ["f"]
    put(e / "other", "x")
    assert long.do(os.listdir, m) == ["f"]
    long.do(put, m / "mine", "y")
    assert sorted(long.do(os.listdir, m)) == ["f", "mine", "other"]


def test_rename_dir_moves_cached_children(long):
    m, e = long.fresh()
    os.makedirs(e / "d" / "deep")
    put(e / "d" / "f", "ff")
    put(e / "d" / "deep" / "x", "xxx")
    long.who.chown(e)

    def body():
        # Everything below d in the cache (and in the kernel).
        assert sorted(os.listdir(m / "d")) == ["deep", "f"]
        assert os.listdir(m / "d" / "deep") == ["x"]
        assert os.stat(m / "d" / "deep" / "x").st_size == 3
        os.rename(m / "d", m / "d2")
        assert os.stat(m / "d2" / "f").st_size == 2
        assert os.stat(m / "d2" / "deep" / "x").st_size == 3
        assert sorted(os.listdir(m / "d2")) == ["deep", "f"]
        assert (m / "d2" / "deep" / "x").read_text() == "xxx"
        raises_errno(errno.ENOENT, os.stat, m / "d")
        raises_errno(errno.ENOENT, os.stat, m / "d" / "f")
        # A new directory under the old name has none of the old children.
        os.mkdir(m / "d")
        assert os.listdir(m / "d") == []
        raises_errno(errno.ENOENT, os.stat, m / "d" / "f")
        raises_errno(errno.ENOENT, os.stat, m / "d" / "deep")
        assert sorted(os.listdir(m)) == ["d", "d2"]
        # And back over the new, empty one.
        os.rename(m / "d2", m / "d")
        assert os.stat(m / "d" / "deep" / "x").st_size == 3
        raises_errno(errno.ENOENT, os.stat, m / "d2")
        return sorted(os.listdir(m / "d"))
    assert long.do(body) == ["deep", "f"]
    assert (e / "d" / "deep" / "x").read_text() == "xxx"


def test_negative_entry_replaced_by_local_create(long):
    m, e = long.fresh()

    def body():
        for n in ("f", "d", "l", "h"):
            raises_errno(errno.ENOENT, os.stat, m / n)   # now cached: missing
        put(m / "f", "made")
        os.mkdir(m / "d")
        os.symlink("f", m / "l")
        os.link(m / "f", m / "h")
        assert os.stat(m / "f").st_size == 4
        assert stat.S_ISDIR(os.stat(m / "d").st_mode)
        assert os.readlink(m / "l") == "f"
        assert os.stat(m / "h").st_size == 4
        return sorted(os.listdir(m))
    assert long.do(body) == ["d", "f", "h", "l"]


def test_negative_entry_is_cached(long):
    """A missing name stays missing until the timeout (or a local change)."""
    m, e = long.fresh()
    long.do(raises_errno, errno.ENOENT, os.stat, m / "late")
    put(e / "late", "x")
    long.do(raises_errno, errno.ENOENT, os.stat, m / "late")
    # A listing read from the server replaces what was cached.
    long.do(put, m / "touch", "")    # a local create drops the listing
    assert "late" in long.do(os.listdir, m)


def test_negative_entry_expires(short):
    m, e = short.fresh()
    short.do(raises_errno, errno.ENOENT, os.stat, m / "late")
    put(e / "late", "x")
    short.do(poll, lambda: exists(m / "late"), "a file made on the server")


# --------------------------------------------------------------------------
# round trips: hashi -d logs one line per request

class DebugMount:
    """hashi -d in the foreground as root; its log is the request count."""

    def __init__(self, menv, tmp_path, opts=()):
        self.export = menv.new_dir("cache-exp")
        self.path = menv.mountpoint("root")
        self.logf = tmp_path / "hashi-d.log"
        args = [menv.hashi, f"root@127.0.0.1:{self.export}", str(self.path), "-d",
                *menv.ssh_opts("root")]
        for o in opts:
            args += ["-o", o]
        self.hashi = menv.hashi
        with open(self.logf, "wb") as err:
            self.p = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=err,
                                      env=hashi_env(menv.root), cwd="/",
                                      start_new_session=True)
        poll(lambda: mounted(self.path) or self.p.poll() is not None, "the mount")
        assert mounted(self.path), f"hashi -d exited:\n{self.log()[-3000:]}"
        self.mark = 0

    def log(self):
        return self.logf.read_text(errors="replace")

    def requests(self):
        """{type: count} of SFTP requests sent since the last call."""
        text = self.log()
        new = text[self.mark:]
        self.mark = len(text)
        counts = {}
        for t in re.findall(r"sftp \d+ -> ([A-Z_]+)", new):
            counts[t] = counts.get(t, 0) + 1
        return counts

    def close(self):
        if mounted(self.path):
            subprocess.run(["fusermount3", "-u", str(self.path)], capture_output=True)
        try:
            self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            force_unmount(self.hashi, self.path)
            self.p.kill()
            self.p.wait()


@pytest.fixture
def dmount(menv, tmp_path):
    dm = DebugMount(menv, tmp_path)
    yield dm
    dm.close()


def make_tree(top, dirs, files):
    """top/d<a>/f<b>, server-side."""
    for a in range(dirs):
        for b in range(files):
            p = top / f"d{a}" / f"f{b}"
            p.parent.mkdir(parents=True, exist_ok=True)
            put(p, "y")
    return top


def lstats(counts):
    return counts.get("LSTAT", 0) + counts.get("STAT", 0)


def test_ls_l_costs_the_readdirs_only(dmount):
    d = dmount.export / "many"
    d.mkdir()
    for i in range(200):
        put(d / f"file{i:03d}", "x" * i)
    m = dmount.path / "many"
    dmount.requests()
    out = subprocess.run(["ls", "-l", str(m)], capture_output=True, text=True, check=True)
    assert out.stdout.count("file") == 200
    cold = dmount.requests()
    # OpenSSH's server sends up to 100 names per READDIR: 2 or 3, then EOF
    # (and the two more that were in flight with it, fs.c's DIR_PIPELINE).
    assert cold.get("READDIR", 0) <= 6, cold
    assert lstats(cold) <= 2, f"one attribute request per file? {cold}"
    # Warm: the listing and every attribute come from the caches.
    out2 = subprocess.run(["ls", "-l", str(m)], capture_output=True, text=True, check=True)
    assert out2.stdout == out.stdout
    warm = dmount.requests()
    assert warm.get("READDIR", 0) + warm.get("OPENDIR", 0) + lstats(warm) == 0, warm
    # stat of each name after the listing: no request either.
    for i in range(200):
        assert os.stat(m / f"file{i:03d}").st_size == i
    assert lstats(dmount.requests()) == 0


def test_find_and_stat_cost_one_listing_per_dir(dmount):
    top = make_tree(dmount.export / "tree", 5, 20)
    dmount.requests()
    r = subprocess.run(["find", str(dmount.path / "tree"), "-type", "f", "-size", "-2k"],
                       capture_output=True, text=True, check=True)
    assert len(r.stdout.split()) == 100
    c = dmount.requests()
    assert c.get("OPENDIR", 0) == 6, c
    assert lstats(c) <= 3, c
    # A name that is not in a listing we hold is missing without asking.
    raises_errno(errno.ENOENT, os.stat, dmount.path / "tree" / "d0" / "nothere")
    assert lstats(dmount.requests()) == 0


def test_find_keeps_fetching_listings_ahead(dmount):
    """find over 48 sibling directories: after the second is opened, their
    listings are fetched side by side, and as the traversal goes on the
    next ones are, so that nearly every directory find opens is already
    held, not only the first batch (DIR_FETCH_MAX at a time)."""
    make_tree(dmount.export / "wide", 48, 3)
    dmount.requests()
    subprocess.run(["find", str(dmount.path / "wide")], capture_output=True, check=True)
    text = dmount.log()[dmount.mark:]
    dmount.requests()
    kernel = sent = 0
    ahead = []  # listings asked of the server, less the directories find has opened
    for line in text.splitlines():
        if "opcode: OPENDIR" in line:
            kernel += 1
            ahead.append(sent - kernel)
        elif re.search(r"sftp \d+ -> OPENDIR", line):
            sent += 1
    assert kernel == 49 and sent == 49, (kernel, sent)
    # past the first few, listings are always on their way ahead of find
    assert min(ahead[4:40]) > 0, ahead


def test_small_files_in_a_new_directory(dmount):
    """What tar does: mkdir, then per file a lookup of a new name, create,
    write, close, chmod and utime. The new directory's listing is known
    (empty, then what we add), so no lookup asks the server; the chmod is
    answered from the attributes the server gave just before it (the LSTAT
    that tells a symlink), the utime with an LSTAT after it (answers from
    our cache alone would hide a change made on the server): two LSTATs
    per file, where hashi without the cache needed eight. The create sends
    an LSTAT of its own right behind the OPEN (answered in the same round
    trip, it saves the FSTAT after it), hence three."""
    d = dmount.path / "new"
    dmount.requests()
    os.mkdir(d)
    for i in range(50):
        p = d / f"f{i:02d}"
        put(p, "z" * i)
        os.chmod(p, 0o640)
        os.utime(p, (1_000_000_000 + i, 1_100_000_000 + i))
    c = dmount.requests()
    assert lstats(c) <= 3 * 50 + 2, c  # (+ the lookup of "new" and the mkdir's answer)
    for i in range(50):
        st = os.stat(d / f"f{i:02d}")
        assert (st.st_size, stat.S_IMODE(st.st_mode), st.st_mtime) == \
            (i, 0o640, 1_100_000_000 + i)
        est = os.stat(dmount.export / "new" / f"f{i:02d}")
        assert (est.st_size, stat.S_IMODE(est.st_mode), est.st_mtime, est.st_atime) == \
            (i, 0o640, 1_100_000_000 + i, 1_000_000_000 + i)
    assert lstats(dmount.requests()) == 0


def test_stats_in_an_unlisted_dir_cost_one_listing(dmount):
    """What git status does cold: an lstat of every tracked file, one
    directory after another, none of them listed. After the second miss in
    a directory its listing is fetched, and the names after come from it:
    one OPENDIR and its READDIRs instead of an LSTAT per file."""
    w = dmount.export / "w"
    w.mkdir()
    for i in range(30):
        put(w / f"f{i:02d}", "x" * i)
    m = dmount.path / "w"
    dmount.requests()
    for i in range(30):
        assert os.lstat(m / f"f{i:02d}").st_size == i
    c = dmount.requests()
    assert lstats(c) <= 3, f"one LSTAT per file? {c}"  # w, then two misses in it
    assert c.get("OPENDIR", 0) == 1, c
    # A listing fetched ahead is not a reader's: a name the server has now
    # and the listing lacks is asked for, and found.
    put(w / "late", "late")
    assert os.lstat(m / "late").st_size == 4
    # A local removal is out of the fetched listing at once.
    os.unlink(m / "f00")
    raises_errno(errno.ENOENT, os.lstat, m / "f00")
    names = os.listdir(m)
    assert "f00" not in names and "f01" in names and "late" in names, names


def test_listing_fetched_on_misses_sees_server_changes_after_timeout(menv, tmp_path):
    dm = DebugMount(menv, tmp_path, opts=[f"dcache_timeout={SHORT}"])
    try:
        e, m = dm.export, dm.path
        for n in ("a", "b", "c"):
            put(e / n, n)
        dm.requests()
        for n in ("a", "b", "c"):   # the second miss fetches the listing
            assert os.lstat(m / n).st_size == 1
        assert dm.requests().get("OPENDIR", 0) == 1
        put(e / "c", "ccc")
        put(e / "d", "dddd")
        poll(lambda: os.lstat(m / "c").st_size == 3, "c's new size")
        poll(lambda: exists(m / "d"), "d, made on the server")
        assert sorted(os.listdir(m)) == ["a", "b", "c", "d"]
    finally:
        dm.close()


def test_traversal_lists_siblings_side_by_side(dmount):
    """find opens each directory once, and once a second subdirectory of
    one parent is opened, the listings of the others are fetched side by
    side (their OPENDIRs sent back to back), not one after the other."""
    top = make_tree(dmount.export / "t", 6, 5)
    dmount.requests()
    start = len(dmount.log())
    r = subprocess.run(["find", str(dmount.path / "t")], capture_output=True, text=True,
                       check=True)
    assert len(r.stdout.split()) == 1 + 6 + 30
    sent = re.findall(r"sftp \d+ -> ([A-Z_]+)", dmount.log()[start:])
    c = dmount.requests()
    assert c.get("OPENDIR", 0) == 7, c
    assert any(a == b == "OPENDIR" for a, b in zip(sent, sent[1:])), sent


def test_rm_r_lists_each_dir_once(dmount):
    """rm -r reads a directory's first names, closes it and opens it again:
    the first listing was read to its EOF (the READDIRs after OPENDIR are
    sent without waiting for the kernel), so the second comes from the
    cache; then one REMOVE or RMDIR per name, and no LSTAT."""
    top = make_tree(dmount.export / "r", 6, 5)
    dmount.requests()
    subprocess.run(["rm", "-rf", str(dmount.path / "r")], check=True)
    c = dmount.requests()
    assert (c.get("OPENDIR", 0), c.get("REMOVE", 0), c.get("RMDIR", 0)) == (7, 30, 7), c
    assert lstats(c) <= 1, c  # the lookup of r itself
    assert not top.exists()


def test_small_file_read_costs_one_read(dmount):
    """A read that comes back short, ending where the file's size (known
    from a fresh stat) ends, is EOF: no second READ to make sure, and no
    read-ahead past the end."""
    put(dmount.export / "small", "content 0 0\n")
    p = dmount.path / "small"
    assert os.stat(p).st_size == 12
    dmount.requests()
    with open(p, "rb") as f:
        assert f.read() == b"content 0 0\n"
    c = dmount.requests()
    assert c.get("READ", 0) == 1, c


def test_nocache_asks_every_time(menv, tmp_path):
    dm = DebugMount(menv, tmp_path, opts=["cache=no"])
    try:
        put(dm.export / "f", "x")
        for _ in range(3):
            os.stat(dm.path / "f")
        # entry_timeout=0, attr_timeout=0 and no cache of ours: 3 lookups.
        assert lstats(dm.requests()) >= 3
    finally:
        dm.close()


# --------------------------------------------------------------------------
# the options

def test_cache_options_in_help(menv):
    r = subprocess.run([menv.hashi, "--help"], capture_output=True, text=True)
    for word in ("dir_cache=yes|no", "dcache_timeout", "dcache_stat_timeout",
                 "dcache_dir_timeout", "dcache_link_timeout", "dcache_max_size",
                 "negative_timeout", "cache_timeout"):
        assert word in r.stdout, word


@pytest.mark.parametrize("opt", ["dir_cache=maybe", "cache=", "dcache_timeout=soon",
                                 "dcache_max_size=0", "cache_stat_timeout=-1"])
def test_bad_cache_option(menv, opt):
    mp = menv.mountpoint("root")
    r = menv.run_hashi("root", ["root@127.0.0.1:/", str(mp), "-o", opt])
    assert r.returncode != 0
    assert opt.split("=")[0] in r.stderr
    assert not mounted(mp)


@pytest.mark.parametrize("opt", ["dir_cache=no", "cache_timeout=5", "dcache_stat_timeout=3",
                                 "cache_max_size=50", "dcache_clean_interval=9"])
def test_cache_option_accepted(menv, opt):
    m = menv.mount("root", "openssh", opts=[opt])
    try:
        put(m.export / "f", "ok")
        assert (m.path / "f").read_text() == "ok"
    finally:
        assert m.unmount() == 0
