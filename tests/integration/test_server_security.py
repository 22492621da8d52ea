"""hashi-sftp-server against a hostile client.

- `-r DIR` / `--root DIR`: every path resolved beneath DIR by the kernel
  (openat2 RESOLVE_BENEATH): "..", absolute symbolic links, links pointing
  out, chains of links, renames, hard links and symlinks out, realpath and
  expand-path never reveal or reach anything outside, and never show DIR's
  real path.
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

import os
import select
import shutil
import subprocess
import time

import pytest

from conftest import run_sftp_d
from sftpwire import (
    Attrs, FX_BAD_MESSAGE, FX_EOF, FX_NO_SUCH_FILE, FX_OK, FX_PERMISSION_DENIED,
    FXF_APPEND, FXF_CREAT, FXF_READ, FXF_TRUNC, FXF_WRITE, FXP_ATTRS, FXP_DATA,
    FXP_EXTENDED_REPLY, FXP_HANDLE, FXP_NAME, FXP_READ, MAX_READ_LENGTH, SFTPWire,
    sstr, u32, u64, spawn,
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
