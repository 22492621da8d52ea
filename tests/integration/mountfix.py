"""Fixtures for hashi's tests on real FUSE mounts (test_mount_*.py).

Import with `from mountfix import *` (pytest then sees the fixtures).

What is set up once per session (fixture `menv`, a MountEnv):
  - a base directory /tmp/hashi-mnt-XXXX (mode 0755, so the test user can
    reach it; pytest's own tmp_path is mode 0700), removed at the end when
    nothing is mounted under it any more;
  - /dev/fuse made mode 0666, so that an unprivileged user can mount through
    the setuid fusermount3;
  - a test user (`hashimnt`, with password PASSWORD, usable for key login);
  - two OpenSSH sshd on 127.0.0.1, each in its own mount namespace (made with
    `unshare -m --propagation private`, before any mount of ours exists, so
    that server-side paths never resolve into our FUSE mounts and the
    namespace holds none of them): `menv.sshd` (the one we mount from; its
    `Subsystem sftp` is OpenSSH's sftp-server; our server is reached with
    -o sftp_server=PATH) and `menv.jump` (a second host for ProxyJump).
    Both allow public-key and password logins, root logins, UsePAM no.

Accounts (`menv.root`, `menv.user`) each have their own ed25519 key, owned by
them with mode 0600, listed in the sshds' authorized_keys.

`menv.mount(who, server, ...)` runs hashi as `who` (it daemonizes once
mounted), checks the mount table, and finds the daemon's pid; the pytest
process is made a child subreaper, so daemons become our children and
`Mount.unmount()` can collect a daemon's exit status. Nothing waits by
sleeping: the mount table and pidfds (with deadlines) are what we wait on.

`Mount.do(fn, *args)` runs fn as the mount's account: directly when that is
us (root), else in a forked child that has dropped to the test user (a FUSE
mount without allow_other admits only its owner, root included). The result
or the exception (with the child's traceback) comes back to the test.
"""

import ctypes
import itertools
import os
import pickle
import pwd
import select
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import traceback
from pathlib import Path

import pytest

__all__ = [
    "menv", "mnt", "mnt_nocache", "mount_watchdog", "MountEnv", "Mount", "Account",
    "mounted", "mount_fstype", "run_as", "wait_pid", "find_daemon", "hashi_env",
    "PASSWORD", "TEST_USER", "SERVERS", "WHO", "COMBOS", "RUN_TIMEOUT", "WRAPPER",
    "renameat2", "RENAME_NOREPLACE", "RENAME_EXCHANGE", "DETACH_FUSE_MOUNTS",
]

REPO = Path(__file__).resolve().parents[2]
SSHD_BIN = "/usr/sbin/sshd"
OPENSSH_SFTP_SERVER = "/usr/lib/openssh/sftp-server"
FUSERMOUNT = shutil.which("fusermount3") or "/usr/bin/fusermount3"
TEST_USER = "hashimnt"
PASSWORD = "hashi-mount-pw 42"
RUN_TIMEOUT = 60
# Run first in a mount namespace we keep (an sshd's): a new namespace gets a
# copy of every mount that exists, and a FUSE mount copied into a namespace
# that lives on keeps its daemon alive after fusermount3 -u (the kernel
# connection lives on in the copy). So FUSE mounts there are detached at once:
# a mount of another test session on this host, or one of ours that exists
# when the namespace is made, does not outlive its unmount.
DETACH_FUSE_MOUNTS = ("awk '$3 ~ /^fuse($|\\.|blk)/ {print $2}' /proc/self/mounts | "
                      "while read -r m; do umount -l \"$(printf '%b' \"$m\")\" 2>/dev/null; done")
# A test on a mount that takes longer than this is stuck: the watchdog kills
# the hashi daemons, so that blocked system calls fail instead of hanging.
WATCHDOG_SECONDS = float(os.environ.get("HASHI_MOUNT_WATCHDOG", "120"))
SERVERS = ("openssh", "hashi")
WHO = ("root", "user")
COMBOS = [(w, s) for w in WHO for s in SERVERS]

# HASHI_WRAPPER: a command that every hashi the mount tests start runs
# under, e.g. "valgrind --error-exitcode=99 --log-file=DIR/%p.log" (see
# tests/run-all.sh); a daemon's exit status is then the wrapper's.
WRAPPER = shlex.split(os.environ.get("HASHI_WRAPPER", ""))

PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)


# --------------------------------------------------------------------------
# small helpers

def _unescape_mountinfo(s):
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 3 < len(s) and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def _mount_entries():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            yield _unescape_mountinfo(fields[4]), right.split()[0]


def mount_fstype(path):
    """The fstype of the mount at exactly path (e.g. 'fuse.hashi'), or None."""
    path = os.path.abspath(str(path))
    found = None
    for mp, fstype in _mount_entries():
        if mp == path:
            found = fstype  # the last one is on top
    return found


def mounted(path):
    return mount_fstype(path) is not None


def _mounts_under(base):
    base = os.path.abspath(str(base))
    return [mp for mp, _ in _mount_entries() if mp == base or mp.startswith(base + "/")]


def _wait_for(cond, what, limit=30.0):
    """Poll a cheap condition (the mount table, a pid file) with a deadline."""
    deadline = time.monotonic() + limit
    delay = 0.001
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _pid_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def _pid_alive(pid):
    st = _pid_state(pid)
    return st is not None and st != "Z"


def wait_pid(pid, timeout=30.0):
    """Wait until pid exits; return its exit status (as from os.waitpid's
    decoded code: >=0 exit code, <0 -signal) if it is our child (we are a
    subreaper, so daemons are), else None. Raises AssertionError on timeout."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        fd = None
    if fd is not None:
        try:
            p = select.poll()
            p.register(fd, select.POLLIN)
            if not p.poll(timeout * 1000):
                raise AssertionError(f"pid {pid} did not exit within {timeout}s "
                                     f"(state {_pid_state(pid)})")
        finally:
            os.close(fd)
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        _wait_for(lambda: not _pid_alive(pid), f"pid {pid} to exit", timeout)
        return None
    return os.waitstatus_to_exitcode(status)


def find_daemon(exe, mountpoint):
    """Pids of running processes of exe whose arguments include mountpoint."""
    mountpoint = os.path.abspath(str(mountpoint)).encode()
    exe = str(exe).encode()
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        ours = args and (args[0] == exe or (WRAPPER and exe in args))
        if ours and mountpoint in args[1:] and _pid_alive(int(d)):
            pids.append(int(d))
    return pids


class _ChildError(Exception):
    pass


def run_as(account, fn, *args, **kw):
    """fn(*args, **kw) as account (an Account, or None for ourselves)."""
    if account is None or account.uid == os.geteuid():
        return fn(*args, **kw)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(r)
            try:
                os.setgroups([])
                os.setgid(account.gid)
                os.setuid(account.uid)
                os.environ["HOME"] = account.home
                res = ("ok", fn(*args, **kw))
            except BaseException as e:  # noqa: B902 - everything goes back
                res = ("exc", e, traceback.format_exc())
            try:
                data = pickle.dumps(res)
            except Exception:
                data = pickle.dumps(("exc", None, res[2] if len(res) > 2 else repr(res)))
            with os.fdopen(w, "wb") as f:
                f.write(data)
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    if not data:
        raise _ChildError("the child running as %s died" % account.name)
    res = pickle.loads(data)
    if res[0] == "ok":
        return res[1]
    exc, tb = res[1], res[2]
    if exc is None:
        raise _ChildError(tb)
    if isinstance(exc, AssertionError):
        raise AssertionError(f"{exc}\n--- in the child running as {account.name}:\n{tb}")
    if hasattr(exc, "add_note"):
        exc.add_note(f"--- in the child running as {account.name}:\n{tb}")
    raise exc


RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
AT_FDCWD = -100


def renameat2(old, new, flags):
    """renameat2(2) through libc; raises OSError with the errno."""
    f = _libc.renameat2
    f.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if f(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), str(old), None, str(new))


def hashi_env(account):
    """A clean environment for hashi: no agent, the account's HOME; the
    sanitizers' options (log files, suppressions) pass through, so that a
    daemon's report under the ASan run is seen, not lost on its stderr."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "HOME": account.home,
        "USER": account.name,
        "LOGNAME": account.name,
        "LANG": "C.UTF-8",
    }
    for k in ("ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS"):
        if k in os.environ:
            env[k] = os.environ[k]
    return env


# --------------------------------------------------------------------------
# accounts and sshd

class Account:
    def __init__(self, name, base):
        pw = pwd.getpwnam(name)
        self.name = name
        self.uid = pw.pw_uid
        self.gid = pw.pw_gid
        self.home = pw.pw_dir
        self.dir = Path(base) / f"acct-{name}"
        self.dir.mkdir(mode=0o700)
        os.chown(self.dir, self.uid, self.gid)
        self.key = str(self.dir / "id_ed25519")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                        f"hashi-mount-{name}", "-f", self.key], check=True,
                       capture_output=True)
        for p in (self.key, self.key + ".pub"):
            os.chown(p, self.uid, self.gid)
        self.pubkey = Path(self.key + ".pub").read_text()

    @property
    def is_root(self):
        return self.uid == 0

    def chown(self, path):
        """Give path (recursively) to this account."""
        os.lchown(path, self.uid, self.gid)
        if os.path.isdir(path) and not os.path.islink(path):
            for root, dirs, files in os.walk(path):
                for n in dirs + files:
                    os.lchown(os.path.join(root, n), self.uid, self.gid)

    def __repr__(self):
        return f"Account({self.name})"


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return True
    except OSError:
        return False


class NsSshd:
    """OpenSSH sshd on 127.0.0.1, in its own private mount namespace."""

    host = "127.0.0.1"

    def __init__(self, directory, authorized_keys, subsystem=OPENSSH_SFTP_SERVER):
        self.dir = Path(directory)
        self.dir.mkdir(mode=0o755)
        self.subsystem = subsystem
        self.authorized_keys = str(authorized_keys)
        self.host_key = str(self.dir / "host_ed25519")
        self.config = str(self.dir / "sshd_config")
        self.pidfile = str(self.dir / "sshd.pid")
        self.log = str(self.dir / "sshd.log")
        self.known_hosts = str(self.dir / "known_hosts")
        self.port = None
        self.pid = None
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hashi-mount-host",
                        "-f", self.host_key], check=True, capture_output=True)
        self.host_pub = Path(self.host_key + ".pub").read_text().split()[:2]

    def known_hosts_line(self):
        return f"[{self.host}]:{self.port} {self.host_pub[0]} {self.host_pub[1]}\n"

    def start(self):
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        last = None
        for _ in range(5):
            self.port = _free_port()
            Path(self.known_hosts).write_text(self.known_hosts_line())
            os.chmod(self.known_hosts, 0o644)
            Path(self.config).write_text(f"""\
# written by tests/integration/mountfix.py
ListenAddress {self.host}:{self.port}
HostKey {self.host_key}
PidFile {self.pidfile}
AuthorizedKeysFile {self.authorized_keys}
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitEmptyPasswords no
UsePAM no
PermitRootLogin yes
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
MaxStartups 100
MaxSessions 100
LogLevel VERBOSE
Subsystem sftp {self.subsystem}
""")
            for p in (self.pidfile, self.log):
                if os.path.exists(p):
                    os.unlink(p)
            # Its own mount namespace: server-side paths resolve as on a real
            # remote host (never into our FUSE mounts), and it is made before
            # any mount of ours, so it holds none of them open.
            r = subprocess.run(["unshare", "-m", "--propagation", "private", "/bin/sh", "-c",
                                DETACH_FUSE_MOUNTS + '; exec "$0" "$@"', SSHD_BIN,
                                "-f", self.config, "-E", self.log],
                               capture_output=True, text=True, timeout=RUN_TIMEOUT)
            if r.returncode != 0:
                last = f"sshd exited {r.returncode}: {r.stderr}{self.log_text()}"
                continue
            try:
                _wait_for(self._ready, f"sshd on port {self.port}")
                return self
            except (AssertionError, RuntimeError) as e:
                last = f"{e}: {self.log_text()}"
                self.stop()
        raise RuntimeError(f"could not start sshd: {last}")

    def _ready(self):
        try:
            self.pid = int(Path(self.pidfile).read_text().strip())
        except (OSError, ValueError):
            if "Cannot bind" in self.log_text() or "fatal" in self.log_text():
                raise RuntimeError("sshd failed")
            return False
        return _port_open(self.port)

    def log_text(self):
        try:
            return Path(self.log).read_text(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        else:
            wait_pid(self.pid)
        self.pid = None


# --------------------------------------------------------------------------
# mounts

class Mount:
    """A live hashi mount. path: the mount point; export: the same directory
    as the server sees it (a local path: the sshd runs on this machine)."""

    def __init__(self, env, who, server, export, path, pid, argv, stderr):
        self.env = env
        self.who = who
        self.server = server
        self.export = Path(export)
        self.path = Path(path)
        self.pid = pid
        self.argv = argv
        self.stderr = stderr
        self.exit_status = None
        self._seq = itertools.count()

    def do(self, fn, *args, **kw):
        """Run fn(*args, **kw) as the mount's account."""
        return run_as(self.who, fn, *args, **kw)

    def fresh(self):
        """A new, empty directory: (its path on the mount, on the server)."""
        name = f"t{next(self._seq):03d}"
        e = self.export / name
        e.mkdir()
        self.who.chown(e)
        return self.path / name, e

    def run(self, body):
        """body(m, e) as the account, in a fresh directory (m on the mount,
        e the same directory server-side)."""
        m, e = self.fresh()
        return self.do(body, m, e)

    def unmount(self, timeout=None):
        """fusermount3 -u (lazily with -z if busy); wait for the daemon to
        exit and return its exit status."""
        if mounted(self.path):
            r = run_as_cmd(self.who, [FUSERMOUNT, "-u", str(self.path)])
            if r.returncode != 0:
                r = run_as_cmd(self.who, [FUSERMOUNT, "-uz", str(self.path)])
            assert r.returncode == 0, f"fusermount3 -u {self.path}: {r.stderr}"
        assert not mounted(self.path)
        if self.pid is not None and self.exit_status is None:
            # (under a wrapper such as valgrind, exiting takes longer)
            limit = timeout or (120.0 if WRAPPER else 30.0)
            try:
                self.exit_status = wait_pid(self.pid, limit)
            except AssertionError as e:
                raise AssertionError(f"{e}; processes of other mount namespaces that still "
                                     f"hold {self.path}: {namespace_holders(self.path)}") from None
        return self.exit_status

    def __repr__(self):
        return f"Mount({self.who.name}, {self.server}, {self.path})"


def namespace_holders(path):
    """{mount namespace: (pid, command)} of processes outside ours whose
    namespace still has a copy of the mount at path (made by unshare -m or
    clone while it existed: the FUSE connection lives on there after our
    unmount, and so does the daemon)."""
    ours = os.readlink("/proc/self/ns/mnt")
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            ns = os.readlink(f"/proc/{pid}/ns/mnt")
            if ns == ours or ns in found:
                continue
            with open(f"/proc/{pid}/mountinfo") as f:
                if any(_unescape_mountinfo(l.split()[4]) == str(path) for l in f):
                    with open(f"/proc/{pid}/cmdline", "rb") as c:
                        found[ns] = (pid, c.read(120).replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            pass
    return found


def run_as_cmd(account, argv, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", RUN_TIMEOUT)
    kw.setdefault("env", hashi_env(account))
    kw.setdefault("cwd", "/")
    # No controlling terminal: nothing may prompt and hang a test.
    kw.setdefault("start_new_session", True)
    if kw.get("input") is None:
        kw.pop("input", None)
        kw.setdefault("stdin", subprocess.DEVNULL)
    if account.uid != os.geteuid():
        kw.update(user=account.uid, group=account.gid, extra_groups=[])
    return subprocess.run(argv, **kw)


class MountEnv:
    def __init__(self, base, hashi, hashi_server):
        self.base = Path(base)
        self.hashi = str(hashi)
        self.hashi_server = str(hashi_server)
        self.openssh_server = OPENSSH_SFTP_SERVER
        self._seq = itertools.count()
        self.mounts = []

        _ensure_user(TEST_USER, PASSWORD)
        self.root = Account("root", self.base)
        self.user = Account(TEST_USER, self.base)
        self.authorized_keys = self.base / "authorized_keys"
        self.authorized_keys.write_text(self.root.pubkey + self.user.pubkey)
        os.chmod(self.authorized_keys, 0o644)
        # An empty ssh_config, so neither ~/.ssh/config nor /etc/ssh/ssh_config
        # changes what the tests ask for.
        self.ssh_config = self.base / "ssh_config_empty"
        self.ssh_config.write_text("")
        os.chmod(self.ssh_config, 0o644)

        self.sshd = NsSshd(self.base / "sshd", self.authorized_keys)
        self.jump = NsSshd(self.base / "sshd-jump", self.authorized_keys)

    def start(self):
        self.sshd.start()
        self.jump.start()

    def account(self, who):
        return self.user if who == "user" else self.root

    def server_path(self, server):
        return self.hashi_server if server == "hashi" else self.openssh_server

    def authorize(self, pubkey_text):
        with open(self.authorized_keys, "a") as f:
            f.write(pubkey_text if pubkey_text.endswith("\n") else pubkey_text + "\n")

    def new_dir(self, prefix, owner=None, mode=0o755):
        d = self.base / f"{prefix}-{next(self._seq):03d}"
        d.mkdir(mode=mode)
        os.chmod(d, mode)
        if owner is not None:
            owner.chown(d)
        return d

    def ssh_opts(self, who, port=None, key=None, known_hosts=None, config=None,
                 strict="yes", batch=True):
        """The options that point hashi at our sshd, key and known_hosts."""
        a = self.account(who) if isinstance(who, str) else who
        opts = ["-F", str(config or self.ssh_config),
                "-o", f"Port={port or self.sshd.port}",
                "-o", f"IdentityFile={key or a.key}",
                "-o", "IdentitiesOnly=yes",
                "-o", f"UserKnownHostsFile={known_hosts or self.sshd.known_hosts}",
                "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", f"StrictHostKeyChecking={strict}"]
        if batch:
            opts += ["-o", "BatchMode=yes"]
        return opts

    def server_opts(self, server):
        # OpenSSH's sftp-server is the sshd's `Subsystem sftp` (reached the
        # default way); ours is run by path, as sshfs's -o sftp_server does.
        return ["-o", f"sftp_server={self.hashi_server}"] if server == "hashi" else []

    def run_hashi(self, who, args, input=None, timeout=RUN_TIMEOUT, env=None, pipes=False):
        """Run hashi as who. Its stdout and stderr go to files, not pipes,
        unless pipes=True: an ssh that hashi started may keep them open after
        hashi went to the background (see test_mount_cli's pipe tests)."""
        a = self.account(who) if isinstance(who, str) else who
        argv = [*WRAPPER, self.hashi, *args]
        env = env or hashi_env(a)
        if pipes:
            return run_as_cmd(a, argv, input=input, timeout=timeout, env=env)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            r = run_as_cmd(a, argv, input=input, timeout=timeout, env=env,
                           capture_output=False, stdout=out, stderr=err)
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(
                argv, r.returncode, out.read().decode(errors="replace"),
                err.read().decode(errors="replace"))

    def mountpoint(self, who):
        a = self.account(who) if isinstance(who, str) else who
        return self.new_dir("mnt", owner=a)

    def mount(self, who, server, export=None, mountpoint=None, opts=(), remote=None,
              host=None, extra=None, input=None, source=None):
        """Mount export (a new directory by default) with hashi as who, from
        server ('openssh' or 'hashi'); returns a Mount. Fails the test with
        hashi's stderr if it does not mount."""
        a = self.account(who)
        if export is None:
            export = self.new_dir("exp", owner=a)
        if mountpoint is None:
            mountpoint = self.mountpoint(a)
        src = source or f"{a.name}@{host or '127.0.0.1'}:{remote if remote is not None else export}"
        args = [src, str(mountpoint)]
        args += extra if extra is not None else self.ssh_opts(a)
        args += self.server_opts(server)
        for o in opts:
            args += ["-o", o]
        try:
            r = self.run_hashi(a, args, input=input)
        except subprocess.TimeoutExpired:
            force_unmount(self.hashi, mountpoint)
            raise
        if r.returncode != 0:
            force_unmount(self.hashi, mountpoint)
            pytest.fail(f"hashi {' '.join(args)} exited {r.returncode}:\n{r.stderr}\n"
                        f"--- sshd log tail:\n{self.sshd.log_text()[-3000:]}", pytrace=False)
        assert mount_fstype(mountpoint) == "fuse.hashi", \
            f"hashi exited 0 but {mountpoint} is not a hashi mount"
        self._check_server(a, server)
        pids = find_daemon(self.hashi, mountpoint)
        assert len(pids) == 1, f"expected one hashi daemon for {mountpoint}, found {pids}"
        m = Mount(self, a, server, export, mountpoint, pids[0], args, r.stderr)
        self.mounts.append(m)
        return m

    def _check_server(self, a, server):
        """The sshd log says which server our SFTP session runs: the subsystem
        (OpenSSH's sftp-server) or, through sftp_server=PATH, a command."""
        starts = [ln for ln in self.sshd.log_text().splitlines()
                  if ln.startswith("Starting session:") and f" for {a.name} from " in ln]
        if not starts:
            return  # (through a jump host or a proxy: not this sshd's session)
        want = "Starting session: command" if server == "hashi" else \
            "Starting session: subsystem 'sftp'"
        assert starts[-1].startswith(want), f"expected the {server} server: {starts[-1]}"

    def cleanup_mounts(self):
        for m in self.mounts:
            if mounted(m.path):
                try:
                    m.unmount()
                except AssertionError:
                    subprocess.run([FUSERMOUNT, "-uz", str(m.path)], capture_output=True)


def force_unmount(hashi, mountpoint):
    """Clean up after a mount attempt that went wrong: lazily unmount and
    wait for (or, past a deadline, kill) the daemons left for mountpoint."""
    if mounted(mountpoint):
        subprocess.run([FUSERMOUNT, "-uz", str(mountpoint)], capture_output=True)
    for pid in find_daemon(hashi, mountpoint):
        try:
            wait_pid(pid, 10)
        except AssertionError:
            os.kill(pid, signal.SIGKILL)
            wait_pid(pid, 10)


def _ensure_user(name, password):
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True,
                       capture_output=True)
    # A real password both unlocks the account for sshd (UsePAM no refuses a
    # locked one) and allows the password-login test.
    subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True,
                   capture_output=True)


# --------------------------------------------------------------------------
# fixtures

@pytest.fixture(scope="session")
def menv(build_dir, hashi_server):
    if os.geteuid() != 0:
        pytest.skip("the mount tests need root (test users, /dev/fuse, sshd)")
    for tool in (SSHD_BIN, OPENSSH_SFTP_SERVER, FUSERMOUNT):
        if not os.access(tool, os.X_OK):
            pytest.skip(f"{tool} is not installed")
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not installed")
    hashi = Path(build_dir) / "fuse" / "hashi"
    if not hashi.is_file():
        pytest.fail(f"hashi is not built: {hashi} does not exist", pytrace=False)
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.fail("prctl(PR_SET_CHILD_SUBREAPER) failed", pytrace=False)
    # Debian's usual mode: users may open /dev/fuse (fusermount3 is setuid).
    os.chmod("/dev/fuse", 0o666)
    base = tempfile.mkdtemp(prefix="hashi-mnt-", dir="/tmp")
    os.chmod(base, 0o755)
    env = MountEnv(base, hashi, hashi_server)
    # Before any mount of ours: see NsSshd.start.
    env.start()
    try:
        yield env
    finally:
        env.cleanup_mounts()
        env.sshd.stop()
        env.jump.stop()
        _libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        if not _mounts_under(base):
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(autouse=True)
def mount_watchdog(request):
    if "menv" not in request.fixturenames:
        yield
        return
    env = request.getfixturevalue("menv")
    fired = []

    def fire():
        fired.append(True)
        for m in list(env.mounts):
            if m.exit_status is None and m.pid and _pid_alive(m.pid):
                os.kill(m.pid, signal.SIGKILL)

    t = threading.Timer(WATCHDOG_SECONDS, fire)
    t.daemon = True
    t.start()
    yield
    t.cancel()
    if fired:
        pytest.fail(f"the test hung for over {WATCHDOG_SECONDS}s on a hashi mount; "
                    "the watchdog killed the hashi daemons", pytrace=False)


def _combo_id(c):
    return f"{c[0]}-{c[1]}"


@pytest.fixture(scope="module", params=COMBOS, ids=_combo_id)
def mnt(request, menv):
    """One mount per (account, server), shared by a module's tests; each test
    takes a fresh directory in it with mnt.run(body) or mnt.fresh()."""
    who, server = request.param
    m = menv.mount(who, server)
    yield m
    status = m.unmount()
    assert status == 0, f"hashi daemon exited {status} after fusermount3 -u"


@pytest.fixture(params=COMBOS, ids=_combo_id)
def mnt_nocache(request, menv):
    """A mount with cache=no: neither the kernel nor hashi keeps anything."""
    who, server = request.param
    m = menv.mount(who, server, opts=["cache=no"])
    yield m
    status = m.unmount()
    assert status == 0, f"hashi daemon exited {status} after fusermount3 -u"
