"""Differential tests: the same scripted requests against OpenSSH's
sftp-server and ours, each in its own fresh copy of the same tree (relative
paths only, each server started in its tree), comparing every observable
result: status codes, attributes (size, mode, uid, gid, mtime), directory
listings as sets of (name, longname, attrs), file contents, link targets,
and finally the whole tree each server leaves behind.

Where our server differs on purpose (see the project notes), the step is
listed in DELIBERATE with each server's expected result.
"""

import os
import pwd
import re
import shutil
import socket
import stat
import tempfile
import time

import pytest

from sftpwire import (
    Attrs, FX_FAILURE, FX_OK, FX_PERMISSION_DENIED, FXF_APPEND, FXF_CREAT, FXF_EXCL, FXF_READ, FXF_TRUNC,
    FXF_WRITE, FXP_ATTRS, FXP_DATA, FXP_EXTENDED_REPLY, FXP_HANDLE, FXP_NAME,
    FXP_STATUS, SFTPWire, reachable_by_others,
)

FIXED_TIME = 1600000000  # 2020-09-13: old enough for the "%b %e  %Y" longname
# Anything newer than this was set by the run itself (the servers run a few
# seconds apart, so such times are compared as "recent" only).
NOW = time.time()
RECENT = NOW - 24 * 3600
MONTH_OLD = int(NOW) - 30 * 24 * 3600  # "%b %e %H:%M" in a longname
FUTURE = 4000000000  # 2096: a future time is shown with its year
LONGNAME_RE = re.compile(r"^(\S+\s+\d+\s+\S+\s+\S+\s+\d+) (.{12}) (.*)$")


# ------------------------------------------------------------------ the tree

def build_tree(root):
    """The same tree, byte for byte and time for time, wherever it is built."""
    os.makedirs(root)
    files = {
        "file": b"hello world\n",
        "empty": b"",
        "big": bytes(range(256)) * 1000,
        "sub/inner": b"inner file\n",
        "sub/deeper/leaf": b"leaf",
        "full/x": b"x",
        "ro": b"read only",
    }
    for d in ("sub", "sub/deeper", "full", "emptydir", "locked"):
        os.mkdir(os.path.join(root, d))
    for name, data in files.items():
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)
    with open(os.path.join(root, "locked", "secret"), "wb") as f:
        f.write(b"secret")
    os.chmod(os.path.join(root, "ro"), 0o444)
    os.chmod(os.path.join(root, "big"), 0o600)
    os.symlink("file", os.path.join(root, "link"))
    os.symlink("sub", os.path.join(root, "dirlink"))
    os.symlink("nowhere", os.path.join(root, "dangling"))
    os.symlink("loop2", os.path.join(root, "loop1"))
    os.symlink("loop1", os.path.join(root, "loop2"))
    os.mkfifo(os.path.join(root, "fifo"))
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(os.path.join(root, "socket"))
    sock.close()
    # longname corner cases: mode letters, numeric owners, wide sizes, dates
    for name, mode in (("suid", 0o4755), ("suid-noexec", 0o4644), ("sgid", 0o2755),
                       ("sgid-noexec", 0o2644), ("all", 0o777)):
        open(os.path.join(root, name), "wb").close()
        os.chmod(os.path.join(root, name), mode)
    for name, mode in (("sticky", 0o1777), ("sticky-noexec", 0o1776)):
        os.mkdir(os.path.join(root, name))
        os.chmod(os.path.join(root, name), mode)
    with open(os.path.join(root, "sparse"), "wb") as f:
        f.truncate(50 * 1000 * 1000 * 1000)
    if os.getuid() == 0:
        open(os.path.join(root, "numeric-owner"), "wb").close()
        os.chown(os.path.join(root, "numeric-owner"), 3999999, 3999999)
    open(os.path.join(root, "month-old"), "wb").close()
    open(os.path.join(root, "future"), "wb").close()
    long_target = "t" * 1000
    os.symlink(long_target, os.path.join(root, "longlink"))
    # fixed times everywhere, the deepest first so parents keep theirs
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for n in filenames + dirnames:
            os.utime(os.path.join(dirpath, n), (FIXED_TIME, FIXED_TIME), follow_symlinks=False)
    os.utime(os.path.join(root, "month-old"), (MONTH_OLD, MONTH_OLD))
    os.utime(os.path.join(root, "future"), (FUTURE, FUTURE))
    os.chmod(os.path.join(root, "locked"), 0)
    os.utime(root, (FIXED_TIME, FIXED_TIME))


def snapshot(root):
    """Everything observable about a tree, with recent times normalised."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in sorted(dirnames + filenames):
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            entry = [stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                     st.st_gid, norm_time(st.st_mtime)]
            if stat.S_ISREG(st.st_mode):
                readable = os.access(p, os.R_OK) and st.st_size < 10 * 1000 * 1000
                entry += [st.st_size, open(p, "rb").read() if readable else None]
            elif stat.S_ISLNK(st.st_mode):
                entry.append(os.readlink(p))
            out[rel] = tuple(entry)
    return out


# ------------------------------------------------------------------ normalising

def norm_time(t):
    if t is None:
        return None
    return "recent" if RECENT < t < time.time() + 3600 else int(t)


def norm_attrs(a):
    # atime is left out: reading changes it, and the servers read differently
    return (a.size, a.perm, a.uid, a.gid, norm_time(a.mtime), a.flags)


def norm_longname(longname, attrs):
    m = LONGNAME_RE.match(longname)
    if not m:
        return longname
    date = m.group(2)
    if attrs.mtime is not None and norm_time(attrs.mtime) == "recent":
        date = "<recent>"
    return "%s %s %s" % (m.group(1), date, m.group(3))


class Run:
    """Runs the script on one server and records a normalised log."""

    def __init__(self, conn, root):
        self.c = conn
        self.root = os.path.realpath(root)
        self.log = []
        self.labels = set()

    def path(self, s):
        parent = os.path.dirname(self.root)  # differs too: .../openssh, .../hashi
        for prefix, tag in ((self.root, "<ROOT>"), (parent, "<PARENT>")):
            if s == prefix or s.startswith(prefix + "/"):
                return tag + s[len(prefix):]
        return s

    def norm(self, r):
        if r.type == FXP_STATUS:
            return ("STATUS", r.code)
        if r.type == FXP_HANDLE:
            return ("HANDLE",)
        if r.type == FXP_DATA:
            return ("DATA", r.data)
        if r.type == FXP_ATTRS:
            return ("ATTRS", norm_attrs(r.attrs))
        if r.type == FXP_NAME:
            return ("NAME", tuple((self.path(n), self.path(ln), norm_attrs(a))
                                  for n, ln, a in r.names))
        if r.type == FXP_EXTENDED_REPLY:
            return ("EXTENDED_REPLY", r.payload)
        return ("TYPE", r.type)

    def rec(self, label, reply, value=None):
        assert label not in self.labels, "duplicate label " + label
        self.labels.add(label)
        self.log.append((label, self.norm(reply) if value is None else value))
        return reply

    def handle(self, label, reply):
        self.rec(label, reply)
        return reply.handle if reply.type == FXP_HANDLE else None

    def listing(self, label, path):
        r = self.c.opendir(path)
        if r.type != FXP_HANDLE:
            return self.rec(label, r)
        h = r.handle
        entries = set()
        while True:
            r = self.c.readdir(h)
            if r.type != FXP_NAME:
                end = self.norm(r)
                break
            for name, longname, a in r.names:
                if name == "..":  # the parents differ: only its presence counts
                    entries.add(("..",))
                else:
                    entries.add((name, norm_longname(longname, a), norm_attrs(a)))
        again = self.norm(self.c.readdir(h))
        self.c.close_handle(h).ok()
        self.log.append((label, ("LISTING", frozenset(entries), end, again)))
        return None

    def content(self, label, path):
        """File contents read through the server."""
        r = self.c.open(path, FXF_READ)
        if r.type != FXP_HANDLE:
            return self.rec(label, r)
        data = b""
        while True:
            d = self.c.read(r.handle, len(data), 100000)
            if d.type != FXP_DATA:
                break
            data += d.data
        self.c.close_handle(r.handle).ok()
        self.log.append((label, ("CONTENT", data, self.norm(d))))
        return None


# ------------------------------------------------------------------ the script

def script(run):
    c, rec = run.c, run.rec

    # -- stat family, success and every errno path
    for p in ("file", "empty", "big", "sub", "link", "dirlink", "dangling", "loop1",
              "missing", "file/x", "sub/missing", "missing/x", "", ".", "fifo", "ro"):
        rec("stat %r" % p, c.stat(p))
        rec("lstat %r" % p, c.lstat(p))

    long_name = "n" * 300
    long_path = "/".join(["sub"] + [".."] * 1000 + ["file"])
    for p in (long_name, long_path, "sub/", "file/", "missing/", "dirlink/", "socket"):
        rec("stat %r" % p[:20], c.stat(p))
    rec("open long name", c.open(long_name, FXF_WRITE | FXF_CREAT))
    rec("readlink longlink", c.readlink("longlink"))

    # -- reading
    h = run.handle("open file READ", c.open("file", FXF_READ))
    if h:
        rec("read file 0 5", c.read(h, 0, 5))
        rec("read file 6 100", c.read(h, 6, 100))
        rec("read file at EOF", c.read(h, 12, 10))
        rec("read file past EOF", c.read(h, 1000, 10))
        rec("read file len 0", c.read(h, 0, 0))
        rec("fstat file", c.fstat(h))
        rec("fsetstat size on READ handle", c.fsetstat(h, Attrs(size=1)))
        rec("write to READ handle", c.write(h, 0, b"no"))
        rec("fsync READ handle", c.fsync(h))
        rec("close file", c.close_handle(h))
        rec("close file again", c.close_handle(h))
    run.content("content big", "big")
    for p, flags in (("missing", FXF_READ), ("sub", FXF_WRITE), ("sub", FXF_READ | FXF_WRITE),
                     ("loop1", FXF_READ), ("file/x", FXF_READ), ("dangling", FXF_READ),
                     ("missing/new", FXF_WRITE | FXF_CREAT), ("file", FXF_WRITE | FXF_CREAT | FXF_EXCL),
                     ("link", FXF_WRITE | FXF_CREAT | FXF_EXCL), ("", FXF_READ)):
        r = c.open(p, flags)
        rec("open %r %#x" % (p, flags), r)
        if r.type == FXP_HANDLE:
            c.close_handle(r.handle).ok()
    # a directory opened as a file: reads fail
    h = run.handle("open dir READ", c.open("sub", FXF_READ))
    if h:
        rec("read dir handle", c.read(h, 0, 10))
        rec("readdir on file handle of a dir", c.readdir(h))
        c.close_handle(h).ok()

    # -- writing
    h = run.handle("create new 0640", c.open("new", FXF_WRITE | FXF_CREAT | FXF_EXCL,
                                             Attrs(perm=0o640)))
    if h:
        rec("write new 0", c.write(h, 0, b"0123456789"))
        rec("write new hole", c.write(h, 20, b"end"))
        rec("write new overwrite", c.write(h, 2, b"ab"))
        rec("read from WRITE handle", c.read(h, 0, 10))
        rec("fsetstat new times", c.fsetstat(h, Attrs(atime=FIXED_TIME, mtime=FIXED_TIME + 5)))
        rec("fstat new", c.fstat(h))
        rec("fsync new", c.fsync(h))
        rec("close new", c.close_handle(h))
    run.content("content new", "new")
    h = run.handle("open new APPEND", c.open("new", FXF_WRITE | FXF_APPEND))
    if h:
        rec("append new", c.write(h, 0, b"+tail"))
        c.close_handle(h).ok()
    run.content("content new appended", "new")
    h = run.handle("open empty TRUNC", c.open("file", FXF_WRITE | FXF_TRUNC))
    if h:
        c.close_handle(h).ok()
    rec("stat truncated", c.stat("file"))
    rec("open ro WRITE", c.open("ro", FXF_WRITE))
    h = run.handle("create with type bits", c.open("typebits", FXF_WRITE | FXF_CREAT,
                                                   Attrs(perm=0o104755)))
    if h:
        rec("write at huge offset", c.write(h, 0xFFFFFFFFFFFFFFF0, b"x"))
        rec("write at 2^62", c.write(h, 1 << 62, b"x"))
        rec("write nothing", c.write(h, 0, b""))
        rec("read past 2^63", c.read(h, 1 << 63, 10))
        c.close_handle(h).ok()
    rec("stat typebits", c.stat("typebits"))

    # -- setstat
    rec("setstat size", c.setstat("big", Attrs(size=1000)))
    rec("setstat perm", c.setstat("big", Attrs(perm=0o751)))
    rec("setstat times", c.setstat("big", Attrs(atime=FIXED_TIME, mtime=FIXED_TIME + 100)))
    st = os.stat(os.path.join(run.root, "big"))
    rec("setstat owner same", c.setstat("big", Attrs(uid=st.st_uid, gid=st.st_gid)))
    rec("stat after setstat", c.stat("big"))
    rec("setstat missing", c.setstat("missing", Attrs(perm=0o600)))
    rec("setstat via link", c.setstat("link", Attrs(perm=0o604)))
    rec("stat link target", c.lstat("file"))
    rec("setstat nothing", c.setstat("big", Attrs()))
    rec("setstat unknown flag bits", c.setstat("big", Attrs(flags=0x7FFFFFF0)))
    rec("setstat huge size", c.setstat("big", Attrs(size=0xFFFFFFFFFFFFFFFF)))
    rec("setstat perm with type bits", c.setstat("big", Attrs(perm=0o40751)))
    rec("setstat max times", c.setstat("empty", Attrs(atime=0xFFFFFFFF, mtime=0xFFFFFFFF)))
    rec("stat max times", c.stat("empty"))
    rec("setstat size and bad owner", c.setstat("empty", Attrs(size=3, uid=0xFFFFFFFE,
                                                               gid=0xFFFFFFFE)))
    rec("setstat size on dir", c.setstat("sub", Attrs(size=0)))
    rec("lsetstat link times", c.lsetstat("link", Attrs(atime=FIXED_TIME, mtime=FIXED_TIME + 7)))
    rec("lstat link after lsetstat", c.lstat("link"))
    rec("lsetstat link perm", c.lsetstat("link", Attrs(perm=0o700)))
    rec("lsetstat missing", c.lsetstat("missing", Attrs(perm=0o700)))

    # -- directories
    run.listing("list root", ".")
    run.listing("list sub", "sub")
    run.listing("list emptydir", "emptydir")
    run.listing("list dirlink", "dirlink")
    for p in ("file", "missing", "loop1", "dangling"):
        rec("opendir %r" % p, c.opendir(p))
    rec("mkdir new", c.mkdir("newdir", Attrs(perm=0o750)))
    rec("mkdir sticky", c.mkdir("newsticky", Attrs(perm=0o41777)))
    rec("stat newsticky", c.stat("newsticky"))
    rec("mkdir default mode", c.mkdir("newdir2"))
    rec("stat newdir", c.stat("newdir"))
    rec("stat newdir2", c.stat("newdir2"))
    rec("mkdir existing", c.mkdir("sub"))
    rec("mkdir over file", c.mkdir("file"))
    rec("mkdir missing parent", c.mkdir("missing/d"))
    rec("rmdir nonempty", c.rmdir("full"))
    rec("rmdir file", c.rmdir("file"))
    rec("rmdir missing", c.rmdir("missing"))
    rec("rmdir link to dir", c.rmdir("dirlink"))
    rec("rmdir empty", c.rmdir("emptydir"))
    rec("rmdir .", c.rmdir("."))
    rec("remove dir", c.remove("sub/deeper"))
    rec("remove missing", c.remove("missing"))
    rec("remove dangling", c.remove("dangling"))
    rec("remove through dir", c.remove("file/x"))

    # -- links
    rec("readlink link", c.readlink("link"))
    rec("readlink dirlink", c.readlink("dirlink"))
    rec("readlink file", c.readlink("file"))
    rec("readlink missing", c.readlink("missing"))
    rec("readlink loop", c.readlink("loop1"))
    rec("symlink new", c.symlink("newlink", "sub/inner"))
    rec("readlink newlink", c.readlink("newlink"))
    rec("symlink existing", c.symlink("file", "whatever"))
    rec("symlink missing dir", c.symlink("missing/l", "x"))
    rec("symlink empty target", c.symlink("emptylink", ""))
    rec("hardlink", c.hardlink("sub/inner", "hard"))
    rec("stat hard", c.stat("hard"))
    rec("hardlink existing", c.hardlink("sub/inner", "file"))
    rec("hardlink missing", c.hardlink("missing", "hard2"))
    rec("hardlink dir", c.hardlink("sub", "subhard"))

    # -- realpath / expand-path
    for p in ("missing/", "sub/missing/", "file/", "sub/", "../", "/..", "sub//inner",
              ".", "", "sub/../file", "dirlink", "dirlink/inner", "missing", "sub/missing",
              "missing/x", "file/x", "loop1", "/", "//", "sub/./deeper/.."):
        rec("realpath %r" % p, c.realpath(p))
    for p in ("sub", "~/sub", "missing", "sub/missing/x"):
        rec("expand-path %r" % p, c.expand_path(p))

    # -- renames
    rec("rename file to new name", c.rename("hard", "hard-renamed"))
    rec("rename onto existing file", c.rename("hard-renamed", "ro"))
    rec("rename dir", c.rename("newdir2", "newdir3"))
    rec("rename dir onto existing dir", c.rename("newdir3", "newdir"))
    rec("rename missing", c.rename("missing", "x"))
    rec("rename into missing dir", c.rename("ro", "missing/ro"))
    rec("rename dir into itself", c.rename("full", "full/inside"))
    rec("rename symlink onto dangling", c.rename("newlink", "loop2"))
    rec("posix-rename over file", c.posix_rename("hard-renamed", "empty"))
    rec("posix-rename dir over nonempty", c.posix_rename("newdir3", "full"))
    rec("posix-rename dir over file", c.posix_rename("newdir3", "ro"))
    rec("posix-rename missing", c.posix_rename("missing", "y"))

    # -- copy-data
    src = run.handle("copy src", c.open("big", FXF_READ))
    dst = run.handle("copy dst", c.open("copy", FXF_WRITE | FXF_CREAT | FXF_TRUNC))
    if src and dst:
        rec("copy all", c.copy_data(src, 0, 0, dst, 0))
        rec("copy slice", c.copy_data(src, 10, 100, dst, 2000))
        rec("copy past EOF, short", c.copy_data(src, 900, 1000, dst, 3000))
        rec("copy from EOF", c.copy_data(src, 5000, 10, dst, 0))
        rec("copy onto read handle", c.copy_data(dst, 0, 0, src, 0))
        app = run.handle("copy append dst", c.open("copy", FXF_WRITE | FXF_APPEND))
        if app:
            rec("copy to APPEND handle", c.copy_data(src, 0, 50, app, 0))
            c.close_handle(app).ok()
        c.close_handle(src).ok()
        c.close_handle(dst).ok()
    run.content("content copy", "copy")

    # -- handles of directories
    h = run.handle("opendir sub for handle ops", c.opendir("sub"))
    if h:
        rec("fstat dir handle", c.fstat(h))
        rec("fsync dir handle", c.fsync(h))
        rec("fstatvfs dir handle", c.fstatvfs(h))
        rec("fsetstat dir handle", c.fsetstat(h, Attrs(perm=0o755)))
        c.close_handle(h).ok()

    # -- other extensions
    rec("statvfs missing", c.statvfs("missing"))
    rec("home-directory empty", c.home_directory(""))
    rec("home-directory daemon", c.home_directory("daemon"))
    rec("home-directory unknown", c.home_directory("nosuchuserxyz"))
    rec("users-groups", c.users_groups_by_id([0, 1, 65534, 3999999], [0, 3999999]))
    rec("users-groups many", c.users_groups_by_id(list(range(5000)), []))
    rec("limits packet sizes", c.limits(), value=c.limits().payload[:24])


# Steps where our server differs on purpose: label -> (openssh, hashi).
DELIBERATE = {
    # plain rename never replaces anything, not even a dangling symlink
    "rename symlink onto dangling": (("STATUS", FX_OK), ("STATUS", FX_FAILURE)),
    # fstat works on directory handles
    "fstat dir handle": (("STATUS", FX_FAILURE), None),  # None: checked in the test
    "fstatvfs dir handle": (("STATUS", FX_FAILURE), None),
    "fsetstat dir handle": (("STATUS", FX_FAILURE), ("STATUS", FX_OK)),
    # home-directory "" is the current user's home; a named user has their own
    "home-directory empty": (("STATUS", FX_FAILURE), None),
    "home-directory daemon": (None, None),
}


def short(v, limit=300):
    r = repr(v)
    return r if len(r) <= limit else r[:limit] + "... (%d chars)" % len(r)


def compare(openssh_log, hashi_log, deliberate=DELIBERATE):
    assert [l for l, _ in openssh_log] == [l for l, _ in hashi_log], \
        "the script took different paths"
    diffs = []
    for (label, o), (_, h) in zip(openssh_log, hashi_log):
        if label in deliberate:
            eo, eh = deliberate[label]
            if eo is not None and o != eo:
                diffs.append("%s: OpenSSH gave %s, expected %s (update DELIBERATE?)"
                             % (label, short(o), short(eo)))
            if eh is not None and h != eh:
                diffs.append("%s: ours gave %s, expected %s" % (label, short(h), short(eh)))
            continue
        if o != h:
            diffs.append("%s:\n    openssh: %s\n    hashi:   %s" % (label, short(o), short(h)))
    return diffs


@pytest.fixture
def two_trees(tmp_path):
    a, b = str(tmp_path / "openssh" / "tree"), str(tmp_path / "hashi" / "tree")
    os.mkdir(tmp_path / "openssh")
    os.mkdir(tmp_path / "hashi")
    build_tree(a)
    build_tree(b)
    assert snapshot(a) == snapshot(b)
    yield a, b
    for t in (a, b):
        os.chmod(os.path.join(t, "locked"), 0o700)


def test_differential(hashi_server, openssh_server, two_trees):
    a, b = two_trees
    olog = run_log(openssh_server, a, None, script)
    hlog = run_log(hashi_server, b, None, script)
    d = dict(hlog)
    # the deliberate differences with a shape rather than a value
    assert d["fstat dir handle"][0] == "ATTRS"
    assert d["fstatvfs dir handle"][0] == "EXTENDED_REPLY"
    me = pwd.getpwuid(os.getuid())
    assert d["home-directory empty"] == ("NAME", ((me.pw_dir, me.pw_dir, (None,) * 5 + (0,)),))
    daemon = pwd.getpwnam("daemon").pw_dir
    assert d["home-directory daemon"] == ("NAME", ((daemon, daemon, (None,) * 5 + (0,)),))
    od = dict(olog)
    assert od["home-directory daemon"] == ("NAME", ((me.pw_dir, me.pw_dir, (None,) * 5 + (0,)),))
    diffs = compare(olog, hlog)
    # the trees each server leaves behind
    for t in (a, b):
        os.chmod(os.path.join(t, "locked"), 0o700)
    sa, sb = snapshot(a), snapshot(b)
    # "rename symlink onto dangling": OpenSSH replaced loop2, we did not
    assert sa.pop("loop2")[-1] == "sub/inner" and "newlink" not in sa
    assert sb.pop("loop2")[-1] == "loop1" and sb.pop("newlink")[-1] == "sub/inner"
    if sa != sb:
        for k in sorted(set(sa) | set(sb)):
            if sa.get(k) != sb.get(k):
                diffs.append("tree %s:\n    openssh: %s\n    hashi:   %s"
                             % (k, short(sa.get(k)), short(sb.get(k))))
    assert not diffs, "%d differences:\n" % len(diffs) + "\n".join(diffs)


# ------------------------------------------------------------------ unprivileged

def unprivileged_script(run):
    c, rec = run.c, run.rec
    rec("stat locked", c.stat("locked"))
    rec("stat in locked", c.stat("locked/secret"))
    rec("opendir locked", c.opendir("locked"))
    rec("open in locked", c.open("locked/secret", FXF_READ))
    rec("realpath in locked", c.realpath("locked/secret"))
    rec("realpath missing in locked", c.realpath("locked/nothing"))
    r = c.statvfs("locked/secret")  # free counts change between runs: the type only
    rec("statvfs locked/secret", r, value=r.status if r.type == FXP_STATUS else r.type)
    rec("mkdir in locked", c.mkdir("locked/d"))
    rec("remove in locked", c.remove("locked/secret"))
    rec("rename out of locked", c.rename("locked/secret", "stolen"))
    rec("open ro WRITE", c.open("ro", FXF_WRITE))
    rec("setstat chown to root", c.setstat("file", Attrs(uid=0, gid=0)))
    rec("setstat chmod locked", c.setstat("locked", Attrs(perm=0o700)))
    rec("lsetstat times link", c.lsetstat("link", Attrs(atime=FIXED_TIME, mtime=FIXED_TIME)))
    rec("hardlink root file", c.hardlink("/etc/shadow", "shadow"))
    rec("open /etc/shadow", c.open("/etc/shadow", FXF_READ))
    rec("write in /", c.open("/hashi-test-should-not-exist", FXF_WRITE | FXF_CREAT))
    run.listing("list root", ".")


def test_differential_unprivileged(hashi_server, openssh_server):
    """EACCES paths. As root they need an unprivileged user: the trees are
    made in a fresh world-traversable directory, owned by nobody, and both
    servers run as nobody."""
    if os.getuid() == 0:
        try:
            nobody = pwd.getpwnam("nobody")
        except KeyError:
            pytest.skip("running as root and there is no 'nobody' user to drop to")
        uid, gid = nobody.pw_uid, nobody.pw_gid

        def drop():
            os.setgid(gid)
            os.setgroups([])
            os.setuid(uid)
        # the server binaries must be reachable by nobody
        for p in (hashi_server, openssh_server):
            if not reachable_by_others(p):
                pytest.skip("%s is not reachable by other users" % p)
    else:
        uid, gid, drop = os.getuid(), os.getgid(), None
    base = tempfile.mkdtemp(prefix="hashi-diff-")
    try:
        os.chmod(base, 0o755)
        a, b = os.path.join(base, "openssh"), os.path.join(base, "hashi")
        for t in (a, b):
            build_tree(t)
            for dirpath, dirnames, filenames in os.walk(t):
                for n in dirnames + filenames + [""]:
                    os.lchown(os.path.join(dirpath, n), uid, gid)
            os.chmod(t, 0o755)
            os.utime(t, (FIXED_TIME, FIXED_TIME))
        olog = run_log(openssh_server, a, drop, unprivileged_script)
        hlog = run_log(hashi_server, b, drop, unprivileged_script)
        d = dict(olog)
        # the script really exercised permission errors
        assert d["opendir locked"] == ("STATUS", FX_PERMISSION_DENIED)
        assert d["open /etc/shadow"] == ("STATUS", FX_PERMISSION_DENIED)
        diffs = compare(olog, hlog, deliberate={})
        assert not diffs, "%d differences:\n" % len(diffs) + "\n".join(diffs)
        assert not os.path.exists("/hashi-test-should-not-exist")
    finally:
        for t in ("openssh", "hashi"):
            p = os.path.join(base, t, "locked")
            if os.path.isdir(p):
                os.chmod(p, 0o700)
        shutil.rmtree(base)


def run_log(server, root, drop, fn):
    with SFTPWire([server, "-e"], cwd=root, preexec_fn=drop) as c:
        run = Run(c, root)
        fn(run)
    return run.log
