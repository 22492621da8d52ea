"""hashi-sftp-server against a hostile client.

- `-r DIR` / `--root DIR`: every path resolved beneath DIR by the kernel
  (openat2 RESOLVE_BENEATH): "..", absolute symbolic links, links pointing
  out, chains of links, renames, hard links and symlinks out, realpath and
  expand-path never reveal or reach anything outside, and never show DIR's
  real path.
- The same for hashi's @hashi extensions (every path-taking one, following
  links and not, with the sandbox and without it: Landlock alone would stop
  creations outside, not xattrs, owners, modes or times); a link that points
  out, named without following, is acted on itself; and every extension
  works inside, sandboxed, over a pipe (as `sftp -D` runs the server) and
  through sshd, with -r and without.
- The sandbox: seccomp in effect for a server started by `sftp -D` and by
  sshd, Landlock with -R (tests/unit/test-sandbox.c checks that writes are
  refused, and that forbidden system calls kill).
- Bounds: the server stops reading while its replies are not read (memory
  stays bounded), long paths, copy-data into a read-only handle, -R and
  copy-data/hardlink.

The other bounds (READ length cap, ATTRS extended count, handle table, packet
length, malformed packets) are tested in test_raw.py; -P/-p/-R for every
request and open flag in test_permissions.py.
"""

import errno
import os
import select
import shutil
import subprocess
import time

import stat

import pytest

from conftest import run_sftp_d
from sftpwire import (
    Attrs, FX_BAD_MESSAGE, FX_EOF, FX_NO_SUCH_FILE, FX_OK, FX_PERMISSION_DENIED,
    FXF_APPEND, FXF_CREAT, FXF_READ, FXF_TRUNC, FXF_WRITE, FXP_ATTRS, FXP_DATA,
    FXP_EXTENDED_REPLY, FXP_HANDLE, FXP_NAME, FXP_READ, MAX_READ_LENGTH, SFTPWire,
    sstr, u32, u64, spawn,
    FALLOC_KEEP_SIZE, FXF_EXCL, LOCK_FLOCK, LOCK_GET, LOCK_SET, O_NOFOLLOW, RDLCK, SEEK_DATA,
    SEEK_HOLE, TARGET_HANDLE, TARGET_NOFOLLOW, UNLCK, WRLCK, XATTR_REPLACE,
)

SECRET = b"outside-secret\n"
REFUSED = (FX_PERMISSION_DENIED, FX_NO_SUCH_FILE)


@pytest.fixture
def jail(tmp_path):
    """tmp/root (the -r directory) and tmp/outside (must stay unreachable).

    root/file, root/sub/inner, and symbolic links:
      abs   -> <outside> (absolute)      rel   -> ../outside
      chain -> rel                        inside -> sub
      sub/up -> ../../outside/secret      abs_in -> /file (absolute, names a
                                          file inside as the client sees it)
    """
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret").write_bytes(SECRET)
    (root / "file").write_bytes(b"inside\n")
    (root / "sub" / "inner").write_bytes(b"inner\n")
    os.symlink(str(outside), root / "abs")
    os.symlink("../outside", root / "rel")
    os.symlink("rel", root / "chain")
    os.symlink("sub", root / "inside")
    os.symlink("../../outside/secret", root / "sub" / "up")
    os.symlink("/file", root / "abs_in")
    return root, outside


def rooted(hashi_server, root, *args, cwd=None):
    """Our server confined to root; its working directory is elsewhere, so
    nothing relative can work by accident."""
    return spawn(hashi_server, cwd or root.parent, "-r", str(root), *args)


def refused(r):
    assert r.type == 101 and r.code in REFUSED, r
    return r


ESCAPES = [
    "../outside/secret",
    "sub/../../outside/secret",
    "abs/secret",
    "/abs/secret",
    "rel/secret",
    "chain/secret",
    "sub/up",
    "inside/up",
    "inside/../rel/secret",
    "/proc/self/root/%(outside)s/secret",
    "/proc/self/cwd/../outside/secret",
]


@pytest.mark.parametrize("path", ESCAPES)
def test_root_read_escapes_refused(hashi_server, jail, path):
    root, outside = jail
    path = path % {"outside": str(outside).lstrip("/")}
    with rooted(hashi_server, root) as c:
        refused(c.open(path, FXF_READ))
        refused(c.stat(path))
        refused(c.statvfs(path))
        refused(c.setstat(path, Attrs(perm=0o777)))
        c.stat("file").ok(FXP_ATTRS)  # the session goes on
    assert oct(os.stat(outside / "secret").st_mode & 0o777) != "0o777"


def test_escapes_work_without_root(hashi_server, jail):
    """The same links do lead out without -r: the test above proves -r."""
    root, _ = jail
    with spawn(hashi_server, root) as c:
        for path in ("rel/secret", "chain/secret", "sub/up", "abs/secret"):
            assert c.read_file(path) == SECRET


def test_root_dotdot_at_root_stays_at_root(hashi_server, jail):
    """"/.." is "/" (as on a real root); a ".." past the root later in a
    path is refused by the kernel."""
    root, _ = jail
    with rooted(hashi_server, root) as c:
        assert c.realpath("..").ok(FXP_NAME).name == "/"
        assert c.realpath("/../..").ok(FXP_NAME).name == "/"
        assert c.read_file("/../../file") == b"inside\n"
        refused(c.open("sub/../../file", FXF_READ))
        c.stat("../outside/secret").expect(FX_NO_SUCH_FILE)  # that is /outside, not there


def test_root_absolute_link_refused_not_followed(hashi_server, jail):
    """An absolute link is refused even when its target names a path that
    exists inside as the client sees it (RESOLVE_BENEATH, not chroot)."""
    root, _ = jail
    with rooted(hashi_server, root) as c:
        refused(c.open("abs_in", FXF_READ))
        assert c.lstat("abs_in").ok(FXP_ATTRS).attrs.perm & 0o170000 == 0o120000
        assert c.readlink("abs_in").ok(FXP_NAME).name == "/file"


def test_root_trailing_slash_does_not_follow_out(hashi_server, jail):
    root, outside = jail
    with rooted(hashi_server, root) as c:
        for p in ("abs/", "rel/", "chain/"):
            refused(c.lstat(p))
            refused(c.rmdir(p))
            refused(c.opendir(p))
        # a link to a directory inside may be followed
        c.lstat("inside/").ok(FXP_ATTRS)
        names = {n for n, _, _ in c.listdir("inside/")}
        assert "inner" in names
    assert (outside / "secret").read_bytes() == SECRET


def test_root_mutations_cannot_escape(hashi_server, jail):
    root, outside = jail
    before = sorted(os.listdir(outside))
    with rooted(hashi_server, root) as c:
        refused(c.open("rel/new", FXF_WRITE | FXF_CREAT))
        refused(c.open("abs/secret", FXF_WRITE | FXF_TRUNC))
        refused(c.mkdir("rel/newdir"))
        refused(c.remove("rel/secret"))
        refused(c.remove("sub/../../outside/secret"))
        refused(c.rmdir("abs/.."))
        refused(c.rename("file", "rel/moved"))
        refused(c.rename("rel/secret", "stolen"))
        refused(c.posix_rename("file", "abs/moved"))
        refused(c.posix_rename("chain/secret", "stolen"))
        refused(c.hardlink("rel/secret", "stolen"))
        refused(c.hardlink("file", "abs/planted"))
        refused(c.setstat("rel/secret", Attrs(size=0)))
        refused(c.lsetstat("rel/secret", Attrs(perm=0o600)))
        refused(c.symlink("rel/planted", "/etc/passwd"))
        # a symlink's target is stored as given, but following it is confined
        c.symlink("pw", "/etc/passwd").ok()
        assert os.readlink(root / "pw") == "/etc/passwd"
        assert c.readlink("pw").ok(FXP_NAME).name == "/etc/passwd"
        refused(c.open("pw", FXF_READ))
        c.symlink("up2", "../outside/secret").ok()
        refused(c.open("up2", FXF_READ))
        # a hard link of such a link links the link, not the file
        c.hardlink("pw", "pw2").ok()
        assert os.path.islink(root / "pw2")
        # and ordinary work inside goes on
        c.write_file("sub/new", b"data")
        c.rename("sub/new", "sub/renamed").ok()
        c.mkdir("/d").ok()
        c.hardlink("sub/renamed", "d/link").ok()
        assert (root / "d" / "link").read_bytes() == b"data"
    assert sorted(os.listdir(outside)) == before
    assert (outside / "secret").read_bytes() == SECRET


def test_root_realpath_shows_paths_from_the_root(hashi_server, jail):
    root, _ = jail
    real = str(root.resolve())
    with rooted(hashi_server, root) as c:
        assert c.realpath(".").ok(FXP_NAME).name == "/"
        assert c.realpath("").ok(FXP_NAME).name == "/"
        assert c.realpath("sub").ok(FXP_NAME).name == "/sub"
        assert c.realpath("inside/inner").ok(FXP_NAME).name == "/sub/inner"
        assert c.realpath("sub/missing").ok(FXP_NAME).name == "/sub/missing"
        assert c.expand_path("~").ok(FXP_NAME).name == "/"
        assert c.expand_path("~/sub").ok(FXP_NAME).name == "/sub"
        assert c.expand_path("inside").ok(FXP_NAME).name == "/sub"
        refused(c.realpath("abs"))
        refused(c.realpath("rel/secret"))
        refused(c.expand_path("chain"))
        # the home directory (outside the root here) is not shown
        r = c.home_directory("")
        assert r.type == 101 or not r.name.startswith(real)
        r = c.expand_path("~root")
        assert r.type == 101 or real not in r.name


def test_root_never_shows_its_real_path(hashi_server, jail):
    """Every reply of a session that tries everything: the root's real path
    appears in none of them."""
    root, outside = jail
    real = str(root.resolve()).encode()
    seen = []
    with rooted(hashi_server, root) as c:
        reqs = [
            lambda: c.realpath("."), lambda: c.realpath("/.."), lambda: c.realpath("abs"),
            lambda: c.expand_path("~"), lambda: c.expand_path("~root/x"),
            lambda: c.home_directory(""), lambda: c.home_directory("root"),
            lambda: c.stat("rel/secret"), lambda: c.readlink("rel"),
            lambda: c.open("chain/x", FXF_READ), lambda: c.opendir("/"),
        ]
        for f in reqs:
            seen.append(f().body)
        h = c.opendir("/").ok(FXP_HANDLE).handle
        while True:
            r = c.readdir(h)
            seen.append(r.body)
            if r.type != FXP_NAME:
                break
        c.close_handle(h).ok()
    for body in seen:
        assert real not in body


def test_root_with_start_directory(hashi_server, jail):
    """-d names a directory inside the root."""
    root, _ = jail
    with rooted(hashi_server, root, "-d", "/sub") as c:
        assert c.realpath(".").ok(FXP_NAME).name == "/sub"
        assert c.read_file("inner") == b"inner\n"
        assert c.read_file("../file") == b"inside\n"
        # ".." from /sub twice reaches the root and stays there
        c.stat("../../outside/secret").expect(FX_NO_SUCH_FILE)
        refused(c.open("up", FXF_READ))
        assert c.expand_path("~").ok(FXP_NAME).name == "/sub"


def test_root_long_option_and_tilde(hashi_server, jail):
    root, _ = jail
    with spawn(hashi_server, "/", "--root", str(root)) as c:
        assert c.realpath(".").ok(FXP_NAME).name == "/"
        assert c.read_file("/file") == b"inside\n"


def test_root_missing_directory_refuses_to_start(hashi_server, tmp_path):
    r = subprocess.run([hashi_server, "-e", "-r", str(tmp_path / "nope")],
                       input=b"", capture_output=True, timeout=60)
    assert r.returncode != 0
    lines = r.stderr.decode().strip().splitlines()
    assert any("No such file or directory" in line and "nope" in line for line in lines)


def test_root_without_openat2_refuses_to_start(hashi_server, tmp_path):
    """A kernel without openat2 (simulated: strace makes it fail with
    ENOSYS): -r refuses to start with one line."""
    if not shutil.which("strace"):
        pytest.skip("strace not installed")
    # LeakSanitizer cannot run under ptrace: off for this run.
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
    for log in ([], ["-e"]):
        r = subprocess.run(["strace", "-f", "-qq", "-o", "/dev/null",
                            "-e", "inject=openat2:error=ENOSYS",
                            hashi_server, *log, "-r", str(tmp_path)],
                           input=b"", capture_output=True, timeout=60, env=env)
        assert r.returncode == 1
        err = r.stderr.decode().strip().splitlines()
        assert len(err) == 1 and "openat2 needs Linux 5.6" in err[0], err


def test_root_with_openssh_sftp(hashi_server, jail, tmp_path):
    """OpenSSH's sftp client in a confined session: cd .. stays at /, get
    through a link out fails, put lands inside."""
    root, outside = jail
    src = tmp_path / "upload"
    src.write_bytes(b"uploaded\n")
    batch = f"""cd ..
pwd
-get rel/secret {tmp_path}/stolen
-get abs/secret {tmp_path}/stolen
put {src} up.txt
cd inside
pwd
"""
    r = run_sftp_d(f"{hashi_server} -r {root}", batch)
    assert r.returncode == 0, r.stderr
    assert "Remote working directory: /\n" in r.stdout
    assert "Remote working directory: /sub\n" in r.stdout
    assert not (tmp_path / "stolen").exists()
    assert (root / "up.txt").read_bytes() == b"uploaded\n"
    assert str(root) not in r.stdout


# ----------------------------------------------------------------- sandbox

def _status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def _find_server(exe, marker):
    """The pid of the running exe whose command line has marker."""
    exe = os.path.realpath(exe)
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.path.realpath(f"/proc/{d}/exe") != exe:
                continue
            with open(f"/proc/{d}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    return int(d)
        except OSError:
            continue
    return None


class OpenSession:
    """An OpenSSH sftp session kept open (sftp reads its batch from a pipe):
    `ask(cmd, expect)` sends one command and waits for its output."""

    def __init__(self, argv):
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT)
        self.buf = b""

    def ask(self, cmd, expect, timeout=60):
        self.p.stdin.write(cmd.encode() + b"\n")
        self.p.stdin.flush()
        deadline = time.monotonic() + timeout
        while expect.encode() not in self.buf:
            left = deadline - time.monotonic()
            assert left > 0, f"no {expect!r} from sftp: {self.buf!r}"
            r, _, _ = select.select([self.p.stdout], [], [], left)
            if r:
                chunk = os.read(self.p.stdout.fileno(), 65536)
                assert chunk, f"sftp exited: {self.buf!r}"
                self.buf += chunk

    def close(self):
        self.p.stdin.close()
        self.p.wait(60)
        self.p.stdout.close()


@pytest.mark.parametrize("extra,seccomp", [((), "2"), (("--no-sandbox",), "0")])
def test_seccomp_in_effect_under_sftp_d(hashi_server, tmp_path, extra, seccomp):
    marker = str(tmp_path / "start")
    os.mkdir(marker)
    s = OpenSession(["sftp", "-b", "-", "-D",
                     " ".join([hashi_server, "-d", marker, *extra])])
    try:
        s.ask("pwd", "Remote working directory")
        pid = _find_server(hashi_server, marker)
        assert pid, "server process not found"
        st = _status(pid)
        assert st["Seccomp"] == seccomp
        assert st["NoNewPrivs"] == ("1" if seccomp == "2" else "0")
        s.ask("ls -l", "sftp>")  # the session still works
    finally:
        s.close()


def test_seccomp_in_effect_under_sshd(sshd, hashi_server, tmp_path):
    marker = str(tmp_path / "sshd-start")
    os.mkdir(marker)
    (tmp_path / "sshd-start" / "f").write_bytes(b"x" * 100000)
    argv = ["sftp", *sshd.ssh_args(), "-b", "-", "-P", str(sshd.port),
            "-s", f"{hashi_server} -R -d {marker}", sshd.destination]
    s = OpenSession(argv)
    try:
        s.ask("pwd", "Remote working directory")
        pid = _find_server(hashi_server, marker)
        assert pid, "server process not found"
        assert _status(pid)["Seccomp"] == "2"
        s.ask(f"get f {tmp_path}/got", "sftp>")
        s.ask("df .", "sftp>")
    finally:
        s.close()
    assert (tmp_path / "got").read_bytes() == b"x" * 100000


def test_landlock_reported_with_readonly(hashi_server, tmp_path):
    """-R and -r put the server in a Landlock domain (whose effect on writes
    tests/unit/test-sandbox.c checks); the debug log says so."""
    for args in (["-R"], ["-r", str(tmp_path)]):
        with spawn(hashi_server, tmp_path, "-l", "DEBUG", *args) as c:
            c.realpath(".").ok(FXP_NAME)
            assert "sandbox: landlock on, seccomp on" in c.stderr_text()
    with spawn(hashi_server, tmp_path, "-l", "DEBUG") as c:
        c.realpath(".").ok(FXP_NAME)
        assert "sandbox: landlock off, seccomp on" in c.stderr_text()


def test_sandboxed_server_survives_every_request(hashi_server, jail, tmp_path):
    """A session that uses every request under -r: the seccomp allowlist
    has every call these need (a missing one would be an error reply)."""
    root, _ = jail
    with rooted(hashi_server, root) as c:
        c.write_file("a", b"A" * 300000)
        h = c.open("a", FXF_READ).ok(FXP_HANDLE).handle
        w = c.open("b", FXF_READ | FXF_WRITE | FXF_CREAT).ok(FXP_HANDLE).handle
        assert len(c.read(h, 0, 200000).ok(FXP_DATA).data) == 200000
        c.copy_data(h, 0, 0, w, 0).ok()
        c.fsync(w).ok()
        c.fsetstat(w, Attrs(size=10, perm=0o640, atime=1000, mtime=2000)).ok()
        c.fstat(w).ok(FXP_ATTRS)
        c.fstatvfs(w).ok(FXP_EXTENDED_REPLY)
        c.close_handle(w).ok()
        c.close_handle(h).ok()
        c.setstat("b", Attrs(size=5, perm=0o600, atime=1, mtime=2)).ok()
        c.lsetstat("b", Attrs(perm=0o644, atime=1, mtime=2)).ok()
        c.setstat("b", Attrs(uid=os.getuid(), gid=os.getgid())).ok()
        c.mkdir("d").ok()
        c.rename("b", "d/b").ok()
        c.posix_rename("d/b", "d/c").ok()
        c.hardlink("d/c", "d/e").ok()
        c.symlink("d/l", "c").ok()
        c.readlink("d/l").ok(FXP_NAME)
        c.statvfs("/").ok(FXP_EXTENDED_REPLY)
        names = c.listdir("d")
        assert {n for n, _, _ in names} >= {"c", "e", "l"}
        c.users_groups_by_id([0], [0]).ok(FXP_EXTENDED_REPLY)
        c.home_directory("")
        c.limits().ok(FXP_EXTENDED_REPLY)
        for p in ("d/c", "d/e", "d/l", "a"):
            c.remove(p).ok()
        c.rmdir("d").ok()
    assert sorted(os.listdir(root)) == sorted(["file", "sub", "abs", "rel", "chain",
                                               "inside", "abs_in"])


# ------------------------------------------------------------------ bounds

def _rss_kib(pid):
    return int(_status(pid)["VmRSS"].split()[0])


def _is_asan(binary):
    with open(binary, "rb") as f:
        return b"__asan_init" in f.read()


def test_unread_replies_stop_the_server_reading(hashi_server, tmp_path):
    """A client that sends READs and never reads the replies: the server
    stops reading its input once about 1 MiB of replies waits, so its memory
    stays bounded while the requests written would ask for gigabytes."""
    (tmp_path / "f").write_bytes(os.urandom(MAX_READ_LENGTH))
    with spawn(hashi_server, tmp_path) as c:
        h = c.open("f", FXF_READ).ok(FXP_HANDLE).handle
        req = (u32(1 + 4 + 4 + len(h) + 8 + 4) + bytes([FXP_READ]) + u32(7)
               + sstr(h) + u64(0) + u32(MAX_READ_LENGTH))
        # More requests than the pipe and the server's input buffer hold.
        data = memoryview(req * 200000)
        fd = c.proc.stdin.fileno()
        written = 0
        # Write until the pipe stays full: the server has stopped reading.
        while written < len(data):
            _, w, _ = select.select([], [fd], [], 2.0)
            if not w:
                break
            try:
                written += os.write(fd, data[written:])
            except BlockingIOError:
                pass
        assert written < len(data), "the server read every request"
        sent = written // len(req)
        asked = sent * MAX_READ_LENGTH
        assert asked > 4 << 30
        rss = _rss_kib(c.proc.pid)
        limit = 128 * 1024 if _is_asan(hashi_server) else 64 * 1024
        assert rss < limit, "server RSS %d KiB with %d GiB of replies asked" % (
            rss, asked >> 30)
        assert c.alive()
        # Reading some replies makes it go on.
        for _ in range(20):
            r = c.recv()
            assert r.type == FXP_DATA and len(r.data) == MAX_READ_LENGTH
        c.proc.stdout.close()
        c.proc.kill()
        c.proc.wait()


@pytest.mark.parametrize("with_root", [False, True])
def test_long_paths(hashi_server, jail, with_root):
    """Paths past PATH_MAX, and components past NAME_MAX: BAD_MESSAGE (as
    OpenSSH's ENAMETOOLONG); a path longer than a packet ends the session."""
    root, _ = jail
    args = ("-r", str(root)) if with_root else ()
    with spawn(hashi_server, root, *args) as c:
        c.stat("x" * 5000).expect(FX_BAD_MESSAGE)
        c.stat("a/" * 3000).expect(FX_BAD_MESSAGE)
        c.open("y" * 300, FXF_READ).expect(FX_BAD_MESSAGE)
        c.open("d/" * 2100 + "f", FXF_WRITE | FXF_CREAT).expect(FX_BAD_MESSAGE)
        c.realpath("z" * 5000).expect(FX_BAD_MESSAGE)
        c.rename("file", "q" * 300).expect(FX_BAD_MESSAGE)
        c.stat("file").ok(FXP_ATTRS)


def test_copy_data_needs_a_writable_destination(hashi_server, tmp_path):
    (tmp_path / "a").write_bytes(b"source")
    (tmp_path / "b").write_bytes(b"target")
    with spawn(hashi_server, tmp_path) as c:
        ra = c.open("a", FXF_READ).ok(FXP_HANDLE).handle
        rb = c.open("b", FXF_READ).ok(FXP_HANDLE).handle
        r = c.copy_data(ra, 0, 0, rb, 0)
        assert r.type == 101 and r.code != FX_OK
        rb2 = c.open("b", FXF_READ | FXF_APPEND).ok(FXP_HANDLE).handle
        r = c.copy_data(ra, 0, 0, rb2, 0)
        assert r.type == 101 and r.code != FX_OK
    assert (tmp_path / "b").read_bytes() == b"target"


def test_readonly_refuses_copy_data_and_hardlink(hashi_server, tmp_path):
    (tmp_path / "a").write_bytes(b"source")
    (tmp_path / "b").write_bytes(b"target")
    with spawn(hashi_server, tmp_path, "-R") as c:
        assert "copy-data" not in c.extensions and "hardlink@openssh.com" not in c.extensions
        ra = c.open("a", FXF_READ).ok(FXP_HANDLE).handle
        c.open("b", FXF_WRITE).expect(FX_PERMISSION_DENIED)
        rb = c.open("b", FXF_READ).ok(FXP_HANDLE).handle
        c.copy_data(ra, 0, 0, rb, 0).expect(FX_PERMISSION_DENIED)
        c.hardlink("a", "c").expect(FX_PERMISSION_DENIED)
        c.read(ra, 0, 10).ok(FXP_DATA)
        c.read(ra, 100, 10).expect(FX_EOF)
    assert (tmp_path / "b").read_bytes() == b"target"
    assert not (tmp_path / "c").exists()


# ------------------------------------------ hashi's @hashi extensions under -r

XNAME = "user.secret"
IS_ROOT = os.geteuid() == 0


def ext(r):
    return r.ok(FXP_EXTENDED_REPLY).extra


def hx_refused(r):
    """Refused, with the errno of a path that leads out (errno@hashi on)."""
    refused(r)
    assert r.errno in (errno.EACCES, errno.ENOENT), r
    return r


def hx_fails(r, err):
    assert r.type == 101 and r.code != FX_OK and r.errno == err, r
    return r


@pytest.fixture
def hjail(jail):
    """The jail, with an extended attribute on the secret outside; returns
    (root, outside, check) where check() asserts nothing outside changed."""
    root, outside = jail
    secret = outside / "secret"
    os.setxattr(secret, XNAME, b"outside")
    before = os.stat(secret)
    names = sorted(os.listdir(outside))

    def check():
        st = os.stat(secret)
        # ctime moves with any change of mode, owner, times, size or xattrs
        assert (st.st_ino, st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns,
                st.st_ctime_ns) == (before.st_ino, before.st_mode, before.st_uid,
                                    before.st_gid, before.st_size, before.st_mtime_ns,
                                    before.st_ctime_ns)
        assert secret.read_bytes() == SECRET
        assert os.listxattr(secret) == [XNAME]
        assert os.getxattr(secret, XNAME) == b"outside"
        assert sorted(os.listdir(outside)) == names

    return root, outside, check


def hx_rooted(hashi_server, root, *args, cwd=None):
    c = rooted(hashi_server, root, *args, cwd=cwd)
    c.hx_errno().ok()
    return c


# Landlock (on with -r) refuses creating and writing outside on its own:
# without the sandbox, -r's path resolution alone must do it.
SANDBOX = [pytest.param((), id="sandbox"), pytest.param(("--no-sandbox",), id="no-sandbox")]


@pytest.mark.parametrize("sandbox", SANDBOX)
@pytest.mark.parametrize("path", ESCAPES)
def test_root_hashi_path_escapes_refused(hashi_server, hjail, path, sandbox):
    """Every path-taking @hashi extension, following links and not: "..",
    absolute links and links out are refused; nothing outside changes."""
    root, outside, check = hjail
    path = path % {"outside": str(outside).lstrip("/")}
    # "sub/up" itself is a link inside: without following, it is reachable
    link_inside = path.endswith("/up")
    with hx_rooted(hashi_server, root, *sandbox, cwd=root) as c:
        for fl in (0,) if link_inside else (0, TARGET_NOFOLLOW):
            hx_refused(c.hx_stat(path, fl))
            hx_refused(c.hx_setstat(path, fl, mode=0o777))
            hx_refused(c.hx_setstat(path, fl, mtime=(1, 1), atime_now=True))
            hx_refused(c.hx_setstat(path, fl, size=0))
            if IS_ROOT:
                hx_refused(c.hx_setstat(path, fl, uid=65534, gid=65534))
            hx_refused(c.hx_getxattr(path, XNAME, fl))
            hx_refused(c.hx_listxattr(path, fl))
            hx_refused(c.hx_setxattr(path, "user.planted", b"x", flags=fl))
            hx_refused(c.hx_setxattr(path, XNAME, b"x", XATTR_REPLACE, flags=fl))
            hx_refused(c.hx_removexattr(path, XNAME, fl))
        hx_refused(c.hx_open(path, FXF_READ))
        hx_refused(c.hx_open(path, FXF_READ | FXF_WRITE))
        hx_refused(c.hx_open(path, FXF_WRITE | FXF_CREAT | FXF_TRUNC, 0o666))
        if not link_inside:
            hx_refused(c.hx_open(path, FXF_READ | O_NOFOLLOW))
            hx_refused(c.hx_open(path, FXF_WRITE | FXF_CREAT | FXF_EXCL, 0o666))
        ext(c.hx_stat("file"))  # the session goes on
    check()


MKNOD_ESCAPES = [
    "../outside/planted",
    "sub/../../outside/planted",
    "abs/planted",
    "/abs/planted",
    "rel/planted",
    "chain/planted",
    "inside/../rel/planted",
    "sub/up/../planted",
    "abs/",
    "rel/newdir/",
]


@pytest.mark.parametrize("sandbox", SANDBOX)
@pytest.mark.parametrize("path", MKNOD_ESCAPES)
def test_root_hashi_create_cannot_escape(hashi_server, hjail, path, sandbox):
    """mknod@hashi of every kind, and open@hashi with O_CREAT, beneath the
    root only. The server's working directory is the root here, so that a
    path used as given would lead out through the links."""
    root, outside, check = hjail
    kinds = [stat.S_IFIFO | 0o666, stat.S_IFSOCK | 0o666, stat.S_IFREG | 0o666,
             stat.S_IFDIR | 0o777, stat.S_IFLNK | 0o777]
    if IS_ROOT:
        kinds.append(stat.S_IFCHR | 0o666)
    with hx_rooted(hashi_server, root, *sandbox, cwd=root) as c:
        for mode in kinds:
            hx_refused(c.hx_mknod(path, mode, 1, 3, target="/etc/passwd"))
        opens = [c.hx_open(path, FXF_WRITE | FXF_CREAT, 0o666),
                 c.hx_open(path, FXF_WRITE | FXF_CREAT | FXF_EXCL, 0o666)]
        if IS_ROOT:
            opens.append(c.hx_open(path, FXF_WRITE | FXF_CREAT, 0o666, uid=65534, gid=65534))
        for r in opens:
            if path.endswith("/"):  # open(2) of "name/" with O_CREAT may say so first
                assert r.type == 101 and r.errno in (errno.EACCES, errno.EISDIR), r
            else:
                hx_refused(r)
    check()
    assert os.path.islink(root / "abs") and os.path.islink(root / "rel")


def test_root_hashi_links_out_are_acted_on_themselves(hashi_server, hjail):
    """Without following, a link that points out is the link itself: its
    attributes, times, owner and (as root) trusted.* attributes change, never
    what it points to; following it is refused."""
    root, outside, check = hjail
    links = ["abs", "rel", "chain", "sub/up", "abs_in"]
    with hx_rooted(hashi_server, root) as c:
        for i, name in enumerate(links):
            lst = os.lstat(root / name)
            h = ext(c.hx_stat(name, TARGET_NOFOLLOW))
            assert stat.S_ISLNK(h["mode"]) and h["ino"] == lst.st_ino
            hx_refused(c.hx_stat(name))
            ext(c.hx_setstat(name, TARGET_NOFOLLOW, atime=(5, 6), mtime=(7, 8 + i)))
            assert os.lstat(root / name).st_mtime_ns == 7 * 10**9 + 8 + i
            hx_fails(c.hx_setstat(name, TARGET_NOFOLLOW, size=0), errno.ELOOP)
            hx_fails(c.hx_setstat(name, TARGET_NOFOLLOW, mode=0o600), errno.EOPNOTSUPP)
            # no user.* attributes on a symbolic link: the call reached the link
            hx_fails(c.hx_setxattr(name, "user.x", b"1", flags=TARGET_NOFOLLOW), errno.EPERM)
            hx_fails(c.hx_getxattr(name, XNAME, TARGET_NOFOLLOW), errno.ENODATA)
            if IS_ROOT:
                ext(c.hx_setstat(name, TARGET_NOFOLLOW, uid=65534, gid=65533))
                assert (os.lstat(root / name).st_uid, os.lstat(root / name).st_gid) == (65534, 65533)
                c.hx_setxattr(name, "trusted.hashi", b"on the link", flags=TARGET_NOFOLLOW).ok()
                assert os.getxattr(root / name, "trusted.hashi",
                                   follow_symlinks=False) == b"on the link"
                assert ext(c.hx_getxattr(name, "trusted.hashi", TARGET_NOFOLLOW)) == b"on the link"
                assert b"trusted.hashi" in ext(c.hx_listxattr(name, TARGET_NOFOLLOW))
                c.hx_removexattr(name, "trusted.hashi", TARGET_NOFOLLOW).ok()
                assert "trusted.hashi" not in os.listxattr(root / name, follow_symlinks=False)
            if name in ("abs", "rel", "chain"):  # directories out
                hx_refused(c.hx_open(name + "/x", FXF_WRITE | FXF_CREAT))
                hx_refused(c.hx_mknod(name + "/x", stat.S_IFIFO | 0o600))
        # readdir@hashi: the links are entries inside, with their own attributes
        dh = c.opendir("sub").ok(FXP_HANDLE).handle
        entries = dict(ext(c.hx_readdir(dh)))
        assert stat.S_ISLNK(entries["up"]["mode"])
        assert entries["up"]["ino"] == os.lstat(root / "sub" / "up").st_ino
        secret_ino = os.stat(outside / "secret").st_ino
        assert all(e["ino"] != secret_ino for e in entries.values())
        # a directory out is not opened, so never listed
        for p in ("rel", "abs", "chain", "rel/", "../outside", "sub/up/.."):
            refused(c.opendir(p))
    check()


def test_root_hashi_symlink_made_inside_stays_confined(hashi_server, hjail):
    """mknod@hashi stores a link's target as given (like SYMLINK); using it
    is confined like any other link."""
    root, outside, check = hjail
    with hx_rooted(hashi_server, root) as c:
        for name, target in (("pw", str(outside / "secret")), ("up2", "../outside/secret"),
                             ("sneaky", "sub/../../outside")):
            h = ext(c.hx_mknod(name, stat.S_IFLNK | 0o777, target=target))
            assert stat.S_ISLNK(h["mode"]) and os.readlink(root / name) == target
            ext(c.hx_stat(name, TARGET_NOFOLLOW))
            hx_refused(c.hx_stat(name))
            hx_refused(c.hx_open(name, FXF_READ))
            hx_refused(c.hx_setstat(name, mode=0o777))
            hx_refused(c.hx_getxattr(name, XNAME))
            hx_refused(c.hx_setxattr(name, "user.planted", b"x"))
            hx_refused(c.hx_mknod(name + "/x", stat.S_IFIFO | 0o600))
    check()


def exercise_hashi(c, d):
    """Every @hashi extension on relative paths in the session's start
    directory, d on this side: what each did is checked against the kernel."""
    c.hx_errno().ok()
    h = ext(c.hx_mknod("hx", stat.S_IFDIR | 0o750))
    assert stat.S_ISDIR(h["mode"]) and stat.S_IMODE(os.stat(d / "hx").st_mode) == 0o750
    fh, h = ext(c.hx_open("hx/f", FXF_READ | FXF_WRITE | FXF_CREAT | FXF_EXCL, 0o640))
    assert h["ino"] == os.stat(d / "hx" / "f").st_ino
    assert stat.S_IMODE(os.stat(d / "hx" / "f").st_mode) == 0o640
    c.write(fh, 0, b"x" * 5000).ok()
    c.hx_fallocate(fh, FALLOC_KEEP_SIZE, 0, 1 << 20).ok()
    assert ext(c.hx_lseek(fh, 0, SEEK_DATA)) == 0
    assert ext(c.hx_lseek(fh, 0, SEEK_HOLE)) >= 5000
    # locks by handle: a second open file sees the first one's
    gh, _ = ext(c.hx_open("hx/f", FXF_READ | FXF_WRITE))
    c.hx_lock(fh, LOCK_SET, WRLCK, 0, 10).ok()
    assert c.hx_lock(gh, LOCK_GET, WRLCK, 0, 10).ok(FXP_EXTENDED_REPLY).extra["type"] == WRLCK
    hx_fails(c.hx_lock(gh, LOCK_SET, RDLCK, 5, 1), errno.EAGAIN)
    c.hx_lock(fh, LOCK_SET, UNLCK, 0, 10).ok()
    c.hx_lock(fh, LOCK_FLOCK, WRLCK).ok()
    hx_fails(c.hx_lock(gh, LOCK_FLOCK, RDLCK), errno.EAGAIN)
    c.hx_lock(fh, LOCK_FLOCK, UNLCK).ok()
    c.hx_lock(gh, LOCK_FLOCK, RDLCK).ok()
    # setstat by handle and by path, following and not
    ext(c.hx_setstat(fh, TARGET_HANDLE, mode=0o600, size=4000))
    assert os.stat(d / "hx" / "f").st_size == 4000
    ext(c.hx_setstat("hx/f", 0, size=3000, atime=(10, 11), mtime=(12, 13)))
    st = os.stat(d / "hx" / "f")
    assert (st.st_size, st.st_atime_ns, st.st_mtime_ns) == (3000, 10 * 10**9 + 11, 12 * 10**9 + 13)
    ext(c.hx_setstat("hx/f", TARGET_NOFOLLOW, size=2000, mode=0o644))
    st = os.stat(d / "hx" / "f")
    assert (st.st_size, stat.S_IMODE(st.st_mode)) == (2000, 0o644)
    h = ext(c.hx_mknod("hx/l", stat.S_IFLNK | 0o777, target="f"))
    assert os.readlink(d / "hx" / "l") == "f"
    assert ext(c.hx_stat("hx/l"))["ino"] == st.st_ino
    assert ext(c.hx_stat("hx/l", TARGET_NOFOLLOW))["ino"] == os.lstat(d / "hx" / "l").st_ino
    ext(c.hx_setstat("hx/l", TARGET_NOFOLLOW, mtime=(20, 21)))
    assert os.lstat(d / "hx" / "l").st_mtime_ns == 20 * 10**9 + 21
    ext(c.hx_setstat("hx/l", 0, mtime=(30, 31)))
    assert os.stat(d / "hx" / "f").st_mtime_ns == 30 * 10**9 + 31
    # nodes
    for name, kind in (("fifo", stat.S_IFIFO), ("sock", stat.S_IFSOCK), ("reg", stat.S_IFREG)):
        ext(c.hx_mknod("hx/" + name, kind | 0o604))
        st = os.lstat(d / "hx" / name)
        assert stat.S_IFMT(st.st_mode) == kind and stat.S_IMODE(st.st_mode) == 0o604
    if IS_ROOT:
        ext(c.hx_mknod("hx/null", stat.S_IFCHR | 0o666, 1, 3, uid=65534, gid=65533))
        st = os.lstat(d / "hx" / "null")
        assert st.st_rdev == os.makedev(1, 3) and (st.st_uid, st.st_gid) == (65534, 65533)
        _, h = ext(c.hx_open("hx/owned", FXF_WRITE | FXF_CREAT, 0o2750, uid=65534, gid=65533))
        st = os.stat(d / "hx" / "owned")
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (65534, 65533, 0o2750)
        # the chown clears set-ID bits; they are put back on the node made
        ext(c.hx_mknod("hx/suid", stat.S_IFREG | 0o6755, uid=65534, gid=65533))
        st = os.lstat(d / "hx" / "suid")
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (65534, 65533, 0o6755)
    # xattrs by path (following and not) and by handle
    c.hx_setxattr("hx/l", "user.a", b"via link").ok()
    assert os.getxattr(d / "hx" / "f", "user.a") == b"via link"
    assert ext(c.hx_getxattr("hx/f", "user.a", TARGET_NOFOLLOW)) == b"via link"
    c.hx_setxattr(fh, "user.b", b"by handle", flags=TARGET_HANDLE).ok()
    assert sorted(ext(c.hx_listxattr("hx/f"))) == [b"user.a", b"user.b"]
    assert ext(c.hx_listxattr("hx/l", TARGET_NOFOLLOW)) == []
    hx_fails(c.hx_setxattr("hx/l", "user.c", b"x", flags=TARGET_NOFOLLOW), errno.EPERM)
    c.hx_removexattr("hx/f", "user.a", TARGET_NOFOLLOW).ok()
    c.hx_removexattr("hx/l", "user.b").ok()
    assert os.listxattr(d / "hx" / "f") == []
    # readdir@hashi
    dh = c.opendir("hx").ok(FXP_HANDLE).handle
    entries = {}
    while True:
        r = c.hx_readdir(dh)
        if r.type == 101:
            r.expect(FX_EOF)
            break
        entries.update(ext(r))
    expect = {"f", "l", "fifo", "sock", "reg"} | ({"null", "owned", "suid"} if IS_ROOT else set())
    assert set(entries) - {".", ".."} == expect
    for name, a in entries.items():
        assert a["ino"] == os.lstat(d / "hx" / name).st_ino
    c.close_handle(dh).ok()
    c.close_handle(gh).ok()
    c.close_handle(fh).ok()


def _seccomp_of(hashi_server, marker):
    pid = _find_server(hashi_server, marker)
    assert pid, "server process not found"
    return _status(pid)["Seccomp"]


def test_root_hashi_extensions_work_inside_the_sandbox(hashi_server, jail):
    """Started as `sftp -D` starts it (a pipe, sandbox on by default), under
    -r: every extension works on paths beneath the root."""
    root, _ = jail
    with hx_rooted(hashi_server, root) as c:
        assert _seccomp_of(hashi_server, str(root)) == "2"
        exercise_hashi(c, root)
        assert "sandbox: " not in c.stderr_text()


def test_hashi_extensions_work_inside_the_sandbox_without_root(hashi_server, tmp_path):
    start = tmp_path / "plain-start"
    start.mkdir()
    with spawn(hashi_server, tmp_path, "-d", str(start)) as c:
        assert _seccomp_of(hashi_server, str(start)) == "2"
        exercise_hashi(c, start)


@pytest.mark.parametrize("with_root", [True, False])
def test_hashi_extensions_under_sshd(sshd, hashi_server, tmp_path, with_root):
    """Through sshd (run as a command, as `sftp -s PATH` does), sandboxed,
    with and without -r: the extensions work, and under -r still cannot
    escape."""
    d = tmp_path / ("sshd-root" if with_root else "sshd-start")
    d.mkdir()
    (tmp_path / "secret").write_bytes(SECRET)
    os.symlink("../secret", d / "out")
    opt = "-r" if with_root else "-d"
    argv = ["ssh", *sshd.ssh_args(), "-p", str(sshd.port), sshd.destination,
            f"{hashi_server} -e {opt} {d}"]
    with SFTPWire(argv) as c:
        assert _seccomp_of(hashi_server, str(d)) == "2"
        exercise_hashi(c, d)
        if with_root:
            hx_refused(c.hx_stat("out"))
            hx_refused(c.hx_setxattr("out", "user.planted", b"x"))
            hx_refused(c.hx_mknod("out/../planted", stat.S_IFIFO | 0o600))
            hx_refused(c.hx_mknod("hx/../../planted", stat.S_IFIFO | 0o600))
            hx_refused(c.hx_open("out", FXF_WRITE | FXF_TRUNC))
        else:
            assert ext(c.hx_stat("out"))["size"] == len(SECRET)
    assert (tmp_path / "secret").read_bytes() == SECRET
    assert os.listxattr(tmp_path / "secret") == []
    assert not (tmp_path / "planted").exists()
