"""hashi against a hostile SFTP server (hostile_server.py).

Each test mounts a directory served by hostile_server.py through
-o directport= (plain SFTP on TCP, no SSH) with real FUSE, lets one scenario
misbehave on a request for a name starting with "evil", and asserts that:

  - the operation fails cleanly (EIO, or another errno a filesystem may give)
    or, where the scenario only breaks the connection, that hashi drops it,
    reconnects and carries on;
  - hashi says what happened in one line on its stderr (it runs with -f);
  - hashi is never killed by a signal: it is alive, or it exited with a
    status, and it unmounts with status 0;
  - its peak memory (VmHWM in /proc) stays below MEM_LIMIT;
  - no name the server sent makes a path outside the mount.

Operations that may block run in a child process with a deadline, so a hang
is a failure and not a stuck test run.
"""

import errno
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mountfix
from mountfix import *  # noqa: F401,F403  (fixtures: menv, ...)
from mountfix import FUSERMOUNT, SERVERS, mounted

sys.path.insert(0, str(Path(__file__).parent))
from hostile_server import HostileServer  # noqa: E402

MEM_LIMIT_KB = 200 * 1024
if os.environ.get("ASAN_OPTIONS"):
    # Under AddressSanitizer (the CI's second pass) freed memory sits in its
    # quarantine (256 MiB by default) and every block has red zones.
    MEM_LIMIT_KB = 700 * 1024
OP_TIMEOUT = 40
PY = "/usr/bin/python3"
# A dead link is found after ServerAliveInterval x ServerAliveCountMax.
ALIVE = ["-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2"]


class Hostile:
    """A hostile server and a foreground hashi mounted from it."""

    def __init__(self, menv, scenario, once=False, opts=(), expect_mount=True):
        self.menv = menv
        self.export = menv.new_dir("hostile-exp")
        self._fill(self.export)
        self.mnt = menv.new_dir("hostile-mnt")
        self.outside_before = set(os.listdir(self.mnt.parent))
        self.srv = HostileServer(self.export, scenario, once=once)
        self.errpath = self.mnt.parent / (self.mnt.name + ".stderr")
        self.err = open(self.errpath, "wb")
        argv = [*mountfix.WRAPPER, menv.hashi, "127.0.0.1:/", str(self.mnt), "-f",
                "-o", f"directport={self.srv.port}", *ALIVE, "-o", "timeout=20"]
        for o in opts:
            argv += ["-o", o]
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.err, start_new_session=True)
        mountfix._wait_for(lambda: mounted(self.mnt) or self.proc.poll() is not None,
                           "the hostile mount", 60)
        self.fuse_conn = None
        if expect_mount:
            assert mounted(self.mnt), f"hashi did not mount: {self.log()}"
            self.fuse_conn = os.minor(os.stat(self.mnt).st_dev)

    @staticmethod
    def _fill(d):
        (d / "f").write_text("plain file\n")
        (d / "evil").write_bytes(bytes(range(256)) * 64)
        (d / "evildir").mkdir()
        (d / "evildir" / "inside").write_text("x")
        (d / "okdir").mkdir()
        for name in ("evil-nul", "evil-empty", "evil-long"):
            os.symlink("f", d / name)

    def log(self):
        self.err.flush()
        return self.errpath.read_text(errors="replace")

    def wait_log(self, pattern, limit=30):
        rx = re.compile(pattern)
        mountfix._wait_for(lambda: rx.search(self.log()), f"/{pattern}/ in hashi's log:\n"
                           + self.log(), limit)
        return rx.search(self.log()).group(0)

    def op(self, code, timeout=OP_TIMEOUT):
        """Run python code (with `m` the mount's Path, `os` imported) in a
        child; returns ('ok', value repr) or ('err', errno)."""
        prog = ("import os, sys, errno\nfrom pathlib import Path\n"
                f"m = Path({str(self.mnt)!r})\n"
                "try:\n"
                f"    v = ({code})\n"
                "    print('ok', repr(v))\n"
                "except OSError as e:\n"
                "    print('err', e.errno)\n")
        p = subprocess.Popen([PY, "-c", prog], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            # A system call on a hung mount ends only when the daemon does.
            self.proc.kill()
            p.kill()
            p.communicate()
            raise AssertionError(f"{code}: no answer in {timeout} s; hashi killed:\n"
                                 + self.log()) from None
        assert p.returncode == 0, err
        kind, val = out.strip().split(" ", 1)
        return (kind, int(val)) if kind == "err" else (kind, val)

    def mem_kb(self):
        fields = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                fields[k] = v.strip()
        return int(fields["VmHWM"].split()[0]), int(fields["VmRSS"].split()[0])

    def check_alive_and_bounded(self):
        assert self.proc.poll() is None, f"hashi exited {self.proc.returncode}: {self.log()}"
        if mountfix.WRAPPER:
            return None  # (valgrind's memory is not hashi's)
        hwm, rss = self.mem_kb()
        assert hwm < MEM_LIMIT_KB, f"hashi's peak memory {hwm} kB (RSS {rss} kB)"
        return hwm

    def finish(self):
        """Unmount; hashi must exit by itself with status 0 (never a signal)."""
        try:
            if mounted(self.mnt):
                subprocess.run([FUSERMOUNT, "-u", str(self.mnt)], capture_output=True)
                if mounted(self.mnt):
                    subprocess.run([FUSERMOUNT, "-uz", str(self.mnt)], capture_output=True)
            try:
                status = self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                # Unmounted here, but a mount namespace made meanwhile (by
                # any test on this machine) still holds the connection:
                # end it as the kernel would once the last one went.
                with open(f"/sys/fs/fuse/connections/{self.fuse_conn}/abort", "w") as f:
                    f.write("1")
                status = self.proc.wait(timeout=30)
            assert status >= 0, f"hashi was killed by signal {-status}: {self.log()}"
            return status
        finally:
            self.srv.close()
            self.err.close()
            # nothing the server sent became a name next to the mount point
            assert set(os.listdir(self.mnt.parent)) <= self.outside_before | {self.errpath.name}

    def close_quietly(self):
        if self.proc.poll() is None:
            subprocess.run([FUSERMOUNT, "-uz", str(self.mnt)], capture_output=True)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.srv.close()
        self.err.close()


@pytest.fixture
def hostile(menv):
    made = []

    def make(scenario, **kw):
        h = Hostile(menv, scenario, **kw)
        made.append(h)
        return h
    yield make
    for h in made:
        h.close_quietly()


def _assert_plain_ok(h):
    """After the hostile reply the mount still works for honest requests."""
    assert h.op("(m / 'f').read_text()") == ("ok", repr("plain file\n"))


LSTAT = "os.lstat(m / 'evil').st_size"
EVIL_SIZE = repr(256 * 64)

# --------------------------------------------------------------------------
# a reply whose fields do not fit its packet, or do not answer the request:
# the request fails with EIO, the connection stays.

FIELD_CASES = {
    "short_attrs": (LSTAT, r"malformed ATTRS reply"),
    "attrs_ext_huge": (LSTAT, r"malformed ATTRS reply"),
    "status_short": (LSTAT, r"malformed STATUS reply"),
    "wrong_type": (LSTAT, r"DATA reply to a LSTAT request"),
    "unknown_type": (LSTAT, r"unknown reply type 200"),
    "name_huge_count": ("os.listdir(m / 'evildir')", r"malformed NAME reply"),
    "handle_4g": ("os.listdir(m / 'evildir')", r"malformed HANDLE reply"),
    "handle_long": ("(m / 'evil').read_bytes()", r"handle of 300 bytes"),
    "data_short": ("(m / 'evil').read_bytes()", r"malformed DATA reply"),
    "read_too_much": ("(m / 'evil').read_bytes()", r"DATA reply .*more than"),
}


@pytest.mark.parametrize("scenario", sorted(FIELD_CASES))
def test_malformed_reply_fails_the_request(hostile, scenario):
    code, msg = FIELD_CASES[scenario]
    h = hostile(scenario)
    assert h.op(code) == ("err", errno.EIO)
    assert h.srv.fired.is_set()
    h.wait_log(msg)
    h.check_alive_and_bounded()
    _assert_plain_ok(h)
    assert h.srv.connections == 1, "the connection was dropped: " + h.log()
    assert h.finish() == 0


# --------------------------------------------------------------------------
# broken framing or a reply nobody asked for: the connection is dropped and
# made again; a request that meets the same on each connection fails.

FRAMING_CASES = {
    "len_4g": r"packet length 4294967295",
    "len_200m_trickle": r"packet length 209715200",
    "short_id": r"too short for an id",
    "unsolicited": r"reply to request id \d+ that was never sent",
}


@pytest.mark.parametrize("scenario", sorted(FRAMING_CASES))
def test_broken_framing_drops_the_connection(hostile, scenario):
    h = hostile(scenario)
    assert h.op(LSTAT) == ("err", errno.EIO)
    h.wait_log(FRAMING_CASES[scenario])
    h.wait_log(r"connection to the server lost")
    h.wait_log(r"failing .* request")
    assert h.srv.connections >= 2
    h.check_alive_and_bounded()
    h.wait_log(r"reconnected")
    _assert_plain_ok(h)
    assert h.finish() == 0


@pytest.mark.parametrize("scenario", sorted(FRAMING_CASES))
def test_broken_framing_once_recovers(hostile, scenario):
    """Only the first connection misbehaves: the request is sent again on
    the next one and succeeds."""
    h = hostile(scenario, once=True)
    assert h.op(LSTAT) == ("ok", EVIL_SIZE)
    h.wait_log(FRAMING_CASES[scenario])
    h.wait_log(r"reconnected")
    h.check_alive_and_bounded()
    assert h.finish() == 0


def test_broken_framing_noreconnect(hostile):
    h = hostile("unsolicited", opts=["noreconnect"])
    assert h.op(LSTAT) == ("err", errno.EIO)
    h.wait_log(r"reply to request id \d+ that was never sent")
    assert h.op("(m / 'f').read_text()") == ("err", errno.EIO)
    h.check_alive_and_bounded()
    assert h.finish() == 0


def test_duplicate_reply(hostile):
    """The first of two replies answers the request; the second is one
    nobody asked for: the connection is dropped and made again."""
    h = hostile("duplicate")
    assert h.op(LSTAT) == ("ok", EVIL_SIZE)
    h.wait_log(r"reply to request id \d+ that was never sent")
    h.wait_log(r"reconnected")
    h.check_alive_and_bounded()
    _assert_plain_ok(h)
    assert h.finish() == 0


# --------------------------------------------------------------------------
# a server that stops talking, or talks too slowly to ever finish a reply:
# found by the dead-peer check (ServerAliveInterval x ServerAliveCountMax)

@pytest.mark.parametrize("scenario", ["silent", "trickle", "long_packet"])
def test_stalled_server_is_found_dead(hostile, scenario):
    h = hostile(scenario, once=True)
    assert h.op(LSTAT) == ("ok", EVIL_SIZE)
    h.wait_log(r"no answer from the server for 2 s")
    h.wait_log(r"reconnected")
    h.check_alive_and_bounded()
    assert h.finish() == 0


def test_silent_server_noreconnect(hostile):
    h = hostile("silent", opts=["noreconnect"])
    assert h.op(LSTAT) == ("err", errno.EIO)
    h.wait_log(r"no answer from the server for 2 s")
    h.check_alive_and_bounded()
    assert h.finish() == 0


# --------------------------------------------------------------------------
# directory listings

def test_readdir_bad_names_are_dropped(hostile):
    h = hostile("readdir_names")
    for code in ("sorted(os.listdir(m / 'evildir'))",
                 # readdirplus: the kernel gets each entry with its attributes
                 "sorted((e.name, e.is_file()) for e in os.scandir(m / 'evildir'))"):
        kind, val = h.op(code)
        assert kind == "ok"
        assert "good" in val and "also-good" in val
        for bad in ("a/b", "abs", "escape", "LLLL", "x\\x00y", "''"):
            assert bad not in val, val
    for bad in ("a/b", "/abs", "../../escape", "x\\000y", ""):
        h.wait_log(r"invalid name in a directory listing of /+evildir: " + re.escape(f'"{bad}"'))
    h.wait_log(r"name of 300 bytes")
    h.check_alive_and_bounded()
    assert not (h.mnt.parent / "escape").exists()
    assert not Path("/abs").exists()
    assert h.finish() == 0


def test_readdir_that_never_ends(hostile):
    h = hostile("readdir_forever")
    assert h.op("sum(1 for _ in os.scandir(m / 'evildir'))", timeout=120) == ("err", errno.EIO)
    h.wait_log(r"listing of .*evildir.* is over \d+ MiB")
    h.check_alive_and_bounded()
    _assert_plain_ok(h)
    assert h.finish() == 0


# --------------------------------------------------------------------------
# symlink targets that cannot be

@pytest.mark.parametrize("name,err", [("evil-nul", errno.EIO), ("evil-empty", errno.EIO),
                                      ("evil-long", errno.ENAMETOOLONG)])
def test_weird_symlink_targets(hostile, name, err):
    h = hostile("symlink_weird")
    assert h.op(f"os.readlink(m / {name!r})") == ("err", err)
    h.wait_log(r"symbolic link|symlink")
    h.check_alive_and_bounded()
    assert h.finish() == 0


# --------------------------------------------------------------------------
# VERSION

def test_version_with_many_extensions(hostile):
    h = hostile("version_huge_ext")
    _assert_plain_ok(h)
    h.check_alive_and_bounded()
    assert h.finish() == 0


@pytest.mark.parametrize("scenario,msg", [("version_too_big", r"packet length 4194\d+"),
                                          ("version_malformed", r"malformed VERSION")])
def test_version_refused(hostile, scenario, msg):
    h = hostile(scenario, expect_mount=False)
    status = h.proc.wait(timeout=30)
    assert status == 1
    assert not mounted(h.mnt)
    log = h.log()
    assert re.search(msg, log), log
    assert len([ln for ln in log.splitlines() if ln.strip()]) == 1, log


# --------------------------------------------------------------------------
# contain_symlinks: link targets that lead out of the mount

def test_contain_symlinks_hostile(hostile):
    """The hostile server's root is "/": absolute targets are beneath it and
    shown relative; "../.." past the root is refused."""
    h = hostile("none")
    os.symlink("/f", h.export / "abs")
    os.symlink("../../../../../tmp", h.export / "okdir" / "up")
    assert h.op("os.readlink(m / 'abs')") == ("ok", repr("f"))
    assert h.op("(m / 'abs').read_text()") == ("ok", repr("plain file\n"))
    assert h.op("os.readlink(m / 'okdir' / 'up')") == ("err", errno.EPERM)
    assert h.op("os.listdir(m / 'okdir' / 'up')") == ("err", errno.EPERM)
    h.wait_log(r"symbolic link /+okdir/up -> \"\.\./\.\./\.\./\.\./\.\./tmp\" refused: it "
               r"climbs above the mount")
    assert h.finish() == 0


def _escape_links(export, sentinel):
    (export / "sub").mkdir()
    (export / "sub" / "f").write_text("inside\n")
    (export / "top").write_text("top\n")
    os.symlink(str(sentinel), export / "abs_out")
    os.symlink("../../../../../../../../.." + str(sentinel), export / "up_out")
    os.symlink("sub/../../x", export / "mid")
    os.symlink("sub/f", export / "rel_ok")
    os.symlink(str(export / "sub" / "f"), export / "abs_in")
    os.symlink("../top", export / "sub" / "up_ok")


@pytest.mark.parametrize("server", SERVERS)
def test_contain_symlinks_default(menv, server):
    """Through sshd: a link to a file of the client (absolute, or by "..")
    is neither shown nor followed, so writing through it cannot reach the
    client's own file; links beneath the mount work."""
    sentinel = menv.new_dir("sentinel", owner=menv.user) / "mine"
    sentinel.write_text("untouched\n")
    menv.user.chown(sentinel)
    export = menv.new_dir("contain-exp", owner=menv.user)
    _escape_links(export, sentinel)
    menv.user.chown(export)
    m = menv.mount("user", server, export=export)

    def body(p):
        assert os.readlink(p / "rel_ok") == "sub/f"
        assert (p / "rel_ok").read_text() == "inside\n"
        assert os.readlink(p / "abs_in") == "sub/f"
        assert (p / "abs_in").read_text() == "inside\n"
        assert os.readlink(p / "sub" / "up_ok") == "../top"
        assert (p / "sub" / "up_ok").read_text() == "top\n"
        for name in ("abs_out", "up_out", "mid"):
            for fn in (os.readlink, os.stat, lambda x: open(x, "w").write("pwned\n")):
                try:
                    fn(p / name)
                except OSError as e:
                    assert e.errno == errno.EPERM, (name, e)
                else:
                    raise AssertionError(f"{name}: followed")
            assert os.lstat(p / name).st_mode & 0o170000 == 0o120000
    m.do(body, m.path)
    assert sentinel.read_text() == "untouched\n"
    assert m.unmount() == 0


def test_no_contain_symlinks(menv):
    """-o no_contain_symlinks: targets as the server gives them, followed by
    the kernel on the client (here: to the client's own file)."""
    sentinel = menv.new_dir("sentinel", owner=menv.user) / "mine"
    sentinel.write_text("untouched\n")
    menv.user.chown(sentinel)
    export = menv.new_dir("nocontain-exp", owner=menv.user)
    _escape_links(export, sentinel)
    menv.user.chown(export)
    m = menv.mount("user", "openssh", export=export, opts=["no_contain_symlinks"])

    def body(p):
        assert os.readlink(p / "abs_out") == str(sentinel)
        assert os.readlink(p / "mid") == "sub/../../x"
        assert os.readlink(p / "abs_in") == str(export / "sub" / "f")
        with open(p / "abs_out", "w") as f:
            f.write("written through the mount\n")
    m.do(body, m.path)
    assert sentinel.read_text() == "written through the mount\n"
    assert m.unmount() == 0


# --------------------------------------------------------------------------
# a server that never says VERSION

def test_reconnect_to_a_server_that_never_answers_init(hostile):
    """After the first connection breaks, the server accepts connections but
    never answers INIT: each attempt gives up after the dead-peer time, and
    the waiting request fails once timeout= has passed."""
    h = hostile("init_silent", opts=["timeout=3"])
    assert h.op(LSTAT)[1] in (errno.EIO, errno.ETIMEDOUT)
    h.wait_log(r"reconnecting: no answer from the server for 2 s")
    assert h.op("(m / 'f').read_text()")[1] in (errno.EIO, errno.ETIMEDOUT)
    h.check_alive_and_bounded()
    assert h.finish() == 0


def test_mount_from_a_server_that_never_answers_init(hostile):
    h = hostile("version_never", expect_mount=False)
    status = h.proc.wait(timeout=60)
    assert status == 1
    assert not mounted(h.mnt)
    assert "no answer from the server for 30 s" in h.log()


# --------------------------------------------------------------------------
# a server whose handles follow another rule than OpenSSH's sftp-server
# (the slot freed last), which hashi learns in order to send a new file's
# writes before the server names its handle

CREATES_BEHIND = """
d = m / 'okdir'
fd = os.open(d / 'first', os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)  # waits, and teaches
os.close(fd)
os.listdir(d)
made = {}
def new(name, data):
    fd = os.open(d / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    made[name] = data
for i in range(8):  # slots freed and given again: what hashi learns from
    new('w%d' % i, b'w%d;' % i * 10)
for k in range(6):
    # three slots freed in order, then in reverse: the slot freed last is
    # the lowest free one only in the second case
    held = [os.open(d / ('w%d' % j), os.O_RDONLY) for j in range(3)]
    for fd in held:
        os.close(fd)
    new('n%d' % k, b'n%d;' % k * 100)
    held = [os.open(d / ('w%d' % j), os.O_RDONLY) for j in range(3)]
    for fd in reversed(held):
        os.close(fd)
    new('r%d' % k, b'r%d;' % k * 100)
result = made
"""


@pytest.mark.parametrize("scenario", ["handles_lowest", "handles_fresh"])
def test_creates_behind_on_handles_of_another_rule(hostile, scenario):
    """Every file created behind arrives whole and no close fails: hashi
    sends on a handle it foresees only where this server's rule and
    OpenSSH's agree (lowest free slot), or never (no slot given twice)."""
    h = hostile(scenario)
    kind, val = h.op(f"(exec({CREATES_BEHIND!r}, g := {{'m': m, 'os': os}}), g['result'])[1]")
    assert kind == "ok", f"errno {val}: {h.log()}"
    made = eval(val)  # noqa: S307 - our own repr of a dict of bytes
    assert len(made) == 20
    for name, data in made.items():
        assert (h.export / "okdir" / name).read_bytes() == data, name
    assert "not the one foreseen" not in h.log()
    h.check_alive_and_bounded()
    assert h.finish() == 0
