"""Reconnect: hashi rides out a broken connection.

Faults are injected into a private OpenSSH sshd (FaultSshd below), on its own
port, in its own mount namespace, that each test may break without disturbing
the other tests' servers:

  - SIGKILL the per-connection sshd processes that serve one mount (the
    privilege-separation monitor, the session process and its sftp-server):
    the TCP connection breaks at once;
  - SIGSTOP them (and SIGCONT later): the connection stays up but nothing
    answers, which only hashi's dead-peer timer (ServerAliveInterval x
    ServerAliveCountMax) can notice;
  - stop the listener and every session (and start it again on the same port
    with the same host key), for a server that restarts or dies for good;
  - a TCP proxy that lets a request through but holds the server's reply once
    the request has taken effect server-side (an SFTP mkdir whose reply is
    lost), which is what a retried mkdir/rename/unlink/rmdir must survive.

hashi runs in the foreground (-f) with its stderr on a pipe, read by a thread
that timestamps each line: the time from a fault to hashi's "connection ...
lost" line is the time to detect a dead link. Those figures, and the time from
a kill to the first successful operation (the time to reconnect), are printed
(run pytest with -s to see them).

Every operation that could hang runs in a thread joined with a deadline; a
watchdog per test thaws the server and kills the daemons if a test hangs.
Nothing sleeps to wait for an event: the mount table, pidfds, the log pipe and
events set by the I/O threads are what we wait on. The only pause is in
test_alive_interval_zero_keeps_a_frozen_link, where a stretch of silence is
the thing being tested.
"""

import errno
import hashlib
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from mountfix import *  # noqa: F401,F403 - fixtures (menv, ...)
from mountfix import (FUSERMOUNT, SERVERS, NsSshd, _free_port, _pid_alive, _pid_state, _port_open,
                      _wait_for, hashi_env, mount_fstype, mounted)

MiB = 1 << 20
SAI, SACM = 1, 2                      # ServerAliveInterval, ServerAliveCountMax
ALIVE = (f"ServerAliveInterval={SAI}", f"ServerAliveCountMax={SACM}")
DEAD_AFTER = SAI * SACM               # seconds without a reply: the link is dead
LOST_RE = re.compile(r"(?i)connection\b.*\blost|\blost\b.*\bconnection")
ACCEPTED_RE = re.compile(r"Accepted publickey for root from")
# Each test is done well within this; past it the watchdog thaws the server,
# kills the hashi daemons (blocked system calls then fail) and fails the test.
WATCHDOG = 100.0
BAD_ERRNOS = (errno.ETIMEDOUT, errno.EIO)


# --------------------------------------------------------------------------
# deterministic data

_POOL = random.Random(20240923).randbytes(8 * MiB)


def chunk(i, size=MiB):
    """The i-th MiB of a test file: a slice of a random pool at an offset
    that is no multiple of any block size, so that data put at a wrong
    offset, a stale block or a hole never matches."""
    off = (i * 1_048_573) % (len(_POOL) - size)
    return _POOL[off:off + size]


def digest_of_chunks(n):
    h = hashlib.sha256()
    for i in range(n):
        h.update(chunk(i))
    return h.hexdigest()


def file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(4 * MiB)
            if not b:
                return h.hexdigest()
            h.update(b)


def make_server_file(path, n):
    """n MiB of test data written straight into the export (server side)."""
    with open(path, "wb") as f:
        for i in range(n):
            f.write(chunk(i))
    return digest_of_chunks(n)


# --------------------------------------------------------------------------
# processes and sockets (from /proc)

def _ppids():
    """{pid: ppid} of every live (non-zombie) process."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            out[int(d)] = int(fields[1])
    return out


def _subtree(root, ppids):
    """root and its descendants, parents first."""
    kids = {}
    for pid, pp in ppids.items():
        kids.setdefault(pp, []).append(pid)
    out, todo = [], [root]
    while todo:
        p = todo.pop(0)
        if p in ppids or p == root:
            out.append(p)
            todo.extend(sorted(kids.get(p, [])))
    return out


def _socket_inodes(pid):
    inos = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inos
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inos.add(int(link[8:-1]))
    return inos


def _tcp_table():
    """{inode: (local port, remote port)} of established TCP sockets."""
    out = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            if len(f) < 10 or f[3] != "01":  # 01: ESTABLISHED
                continue
            out[int(f[9])] = (int(f[1].rsplit(":", 1)[1], 16), int(f[2].rsplit(":", 1)[1], 16))
    return out


def _ports(pid, table, local=None, remote=None):
    """The (local, remote) ports of pid's TCP connections, filtered."""
    res = []
    for ino in _socket_inodes(pid):
        lr = table.get(ino)
        if lr and (local is None or lr[0] == local) and (remote is None or lr[1] == remote):
            res.append(lr)
    return res


def _reap(pid):
    """Collect a dead process that was re-parented to us (we are a child
    subreaper): harmless when it is not our child."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _signal_all(pids, sig):
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def _wait_gone(pids, what, limit=15.0):
    def gone():
        for p in pids:
            _reap(p)
        return not any(_pid_alive(p) for p in pids)
    _wait_for(gone, what, limit)


# --------------------------------------------------------------------------
# an sshd we may break

class FaultSshd(NsSshd):
    """OpenSSH sshd on its own port and in its own mount namespace, held by a
    small shell made before any mount, which starts the listener each time we
    write a line to it. So a restart (while mounts exist) does not copy our
    FUSE mounts into a new namespace (which would keep them alive after
    fusermount3 -u), and the test process never forks while it holds files
    open on a mount: a child's exec closes those descriptors, each close is a
    FLUSH, and a FLUSH waits for the writes queued behind it, so with the
    server down the exec (and the restart) would wait for hashi's timeout."""

    def __init__(self, directory, authorized_keys):
        super().__init__(directory, authorized_keys)
        self.holder = None
        self.frozen = []

    # -- lifecycle
    def start(self):
        launcher = (DETACH_FUSE_MOUNTS + '; while read -r _; do '
                    '/usr/sbin/sshd -f "$1" -E "$2" 2>"$3"; echo "$?"; done')
        self.holder = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "/bin/sh", "-c", launcher, "sh",
             self.config, self.log, self.config + ".stderr"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        # the namespace exists once unshare has exec'd cat
        _wait_for(lambda: os.readlink(f"/proc/{self.holder.pid}/ns/mnt")
                  != os.readlink("/proc/self/ns/mnt"), "the sshd's mount namespace")
        last = None
        for _ in range(5):
            self.port = _free_port()
            Path(self.known_hosts).write_text(self.known_hosts_line())
            os.chmod(self.known_hosts, 0o644)
            self._write_config()
            try:
                self._launch()
                return self
            except RuntimeError as e:  # the port was taken meanwhile
                last = e
        raise RuntimeError(f"could not start sshd: {last}")

    def _write_config(self):
        Path(self.config).write_text(f"""\
# written by tests/integration/test_reconnect.py
ListenAddress {self.host}:{self.port}
HostKey {self.host_key}
PidFile {self.pidfile}
AuthorizedKeysFile {self.authorized_keys}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
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

    def _launch(self):
        """Start the listener on self.port (the same port and host key every
        time); it appends to the same log."""
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        if os.path.exists(self.pidfile):
            os.unlink(self.pidfile)
        mark = len(self.log_text())
        self.holder.stdin.write("start\n")
        self.holder.stdin.flush()
        rc = self.holder.stdout.readline().strip()
        if rc != "0":
            raise RuntimeError(f"sshd exited {rc or 'unknown'}: "
                               f"{Path(self.config + '.stderr').read_text()}"
                               f"{self.log_text()[mark:]}")

        def ready():
            try:
                self.pid = int(Path(self.pidfile).read_text().strip())
            except (OSError, ValueError):
                new = self.log_text()[mark:]
                if "Cannot bind" in new or "fatal" in new:
                    raise RuntimeError(f"sshd failed: {new}")
                return False
            return _port_open(self.port)
        _wait_for(ready, f"sshd on port {self.port}")

    def running(self):
        return self.pid is not None and _pid_alive(self.pid)

    def ensure_running(self):
        self.thaw()
        if not self.running():
            self.pid = None
            self._launch()

    def stop_all(self):
        """The whole server goes: every session (SIGKILL) and the listener
        (SIGTERM). Returns once they are all gone."""
        self.thaw()
        if self.pid is None:
            return
        pids = _subtree(self.pid, _ppids())
        _signal_all(pids[1:], signal.SIGKILL)
        _signal_all(pids[:1], signal.SIGTERM)
        _wait_gone(pids, "the sshd listener and its sessions to exit")
        self.pid = None

    def restart(self):
        """Stop everything, then start the listener again (same port, same
        host key). Returns the time the new listener was ready."""
        self.stop_all()
        self._launch()
        return time.monotonic()

    def shutdown(self):
        self.stop_all()
        if self.holder is not None:
            self.holder.stdin.close()
            self.holder.wait(timeout=30)
            self.holder = None

    # -- the sessions that serve a client
    def sessions(self):
        """All per-connection process trees: {child of the listener: [its
        subtree]}."""
        if self.pid is None:
            return {}
        ppids = _ppids()
        return {c: _subtree(c, ppids) for c, pp in sorted(ppids.items()) if pp == self.pid}

    def sessions_of(self, client_pid):
        """The pids (monitor, session, sftp-server) serving the TCP
        connections that client_pid has to this sshd."""
        table = _tcp_table()
        cports = {lp for lp, _ in _ports(client_pid, table, remote=self.port)}
        pids = []
        for _, tree in self.sessions().items():
            if any(rp in cports for p in tree for _, rp in _ports(p, table, local=self.port)):
                pids.extend(tree)
        return pids

    def kill(self, pids):
        """SIGKILL these processes and wait until they are gone."""
        assert pids, "no sshd session to kill"
        _signal_all(pids, signal.SIGKILL)
        _wait_gone(pids, f"sshd session processes {pids} to die")

    def freeze(self, pids):
        """SIGSTOP these processes; returns once they are all stopped."""
        assert pids, "no sshd process to freeze"
        _signal_all(pids, signal.SIGSTOP)
        self.frozen.extend(pids)
        _wait_for(lambda: all(_pid_state(p) in (None, "T", "t", "Z") for p in pids),
                  f"sshd processes {pids} to stop", 10)

    def freeze_all(self):
        """The listener and every session stop answering (the host hangs)."""
        self.freeze(_subtree(self.pid, _ppids()))

    def thaw(self):
        _signal_all(self.frozen, signal.SIGCONT)
        self.frozen = []

    def accepted(self):
        """How many logins (connections hashi made) the log shows."""
        return len(ACCEPTED_RE.findall(self.log_text()))


# --------------------------------------------------------------------------
# a TCP proxy that can lose a reply

class _Pair:
    def __init__(self, proxy, cli, srv):
        self.proxy = proxy
        self.cli, self.srv = cli, srv
        self.predicate = None
        self.holding = False
        self.held = threading.Event()
        self.done = 0
        self.lock = threading.Lock()
        for fn in (self._c2s, self._s2c):
            threading.Thread(target=fn, daemon=True).start()

    def _c2s(self):
        try:
            while True:
                data = self.cli.recv(65536)
                if not data:
                    break
                self.srv.sendall(data)
        except OSError:
            pass
        try:
            self.srv.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self._end()

    def _s2c(self):
        try:
            while True:
                data = self.srv.recv(65536)
                if not data:
                    break
                pred = self.predicate
                if not self.holding and pred is not None and pred():
                    self.holding = True
                    self.held.set()
                if self.holding:
                    continue  # the client never sees it
                self.cli.sendall(data)
        except OSError:
            pass
        try:
            self.cli.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self._end()

    def _end(self):
        with self.lock:
            self.done += 1
            if self.done == 2:
                self.cli.close()
                self.srv.close()

    def close(self):
        for s in (self.cli, self.srv):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class HoldProxy:
    """127.0.0.1:port -> the sshd. hold_after(pred) arms the connections open
    now: from the first server->client chunk that arrives once pred() is
    true (the request took effect on the server, its reply is on its way),
    the client gets nothing more on that connection. New connections (the
    reconnect) pass everything."""

    def __init__(self, target_port):
        self.target = target_port
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.pairs = []
        self.t = threading.Thread(target=self._accept, daemon=True)
        self.t.start()

    def _accept(self):
        while True:
            try:
                cli, _ = self.lsock.accept()
            except OSError:
                return
            try:
                srv = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                cli.close()
                continue
            self.pairs.append(_Pair(self, cli, srv))

    def hold_after(self, pred):
        live = [p for p in self.pairs if p.done == 0]
        assert live, "no connection through the proxy"
        for p in live:
            p.predicate = pred
        return live

    def close(self):
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.lsock.close()
        for p in self.pairs:
            p.close()


# --------------------------------------------------------------------------
# a hashi mount in the foreground, its log read line by line

class HMount:
    def __init__(self, rig, opts, port=None, known_hosts=None, name="mount"):
        menv, sshd = rig.menv, rig.sshd
        a = menv.root
        self.rig = rig
        self.export = menv.new_dir("rexp", owner=a)
        self.path = menv.mountpoint(a)
        self.logfile = menv.base / f"{self.path.name}-{name}.log"
        self.lines = []                 # (monotonic time, text)
        self.cv = threading.Condition()
        self.argv = [menv.hashi, f"root@127.0.0.1:{self.export}", str(self.path), "-f",
                     *menv.ssh_opts(a, port=port or sshd.port,
                                    known_hosts=known_hosts or sshd.known_hosts)]
        for o in opts:
            self.argv += ["-o", o]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env=hashi_env(a), cwd="/", start_new_session=True)
        self.pid = self.proc.pid
        self.reader = threading.Thread(target=self._read_log, daemon=True)
        self.reader.start()
        rig.mounts.append(self)
        deadline = time.monotonic() + 30
        while mount_fstype(self.path) != "fuse.hashi":
            if self.proc.poll() is not None:
                self.reader.join(5)
                pytest.fail(f"hashi exited {self.proc.returncode} without mounting:\n"
                            f"{' '.join(self.argv)}\n{self.log()}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"hashi did not mount within 30s:\n{self.log()}", pytrace=False)
            with self.cv:
                self.cv.wait(0.01)

    def _read_log(self):
        with open(self.logfile, "w") as out:
            for raw in self.proc.stderr:
                line = raw.decode(errors="replace").rstrip("\r\n")
                out.write(line + "\n")
                out.flush()
                with self.cv:
                    self.lines.append((time.monotonic(), line))
                    self.cv.notify_all()

    def log(self, since=0):
        with self.cv:
            return "\n".join(ln for _, ln in self.lines[since:]) or "(hashi logged nothing)"

    def mark(self):
        with self.cv:
            return len(self.lines)

    def count(self, regex, since=0):
        with self.cv:
            return sum(1 for _, ln in self.lines[since:] if regex.search(ln))

    def wait_line(self, regex, since=0, timeout=20.0):
        """The first line at index >= since that matches: (time, text), or
        None after timeout."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for t, ln in self.lines[since:]:
                    if regex.search(ln):
                        return t, ln
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cv.wait(left)

    def sessions(self):
        pids = self.rig.sshd.sessions_of(self.pid)
        assert pids, (f"no sshd session serves hashi pid {self.pid}: "
                      f"{self.rig.sshd.sessions()}\n{self.log()}")
        return pids

    def alive(self):
        return self.proc.poll() is None

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"hashi pid {self.pid} still running {timeout}s later; "
                                 f"mounted: {mounted(self.path)}\n{self.log()}") from None

    def fusermount_u(self, timeout=20):
        return subprocess.run([FUSERMOUNT, "-u", str(self.path)], capture_output=True,
                              text=True, timeout=timeout)

    def close(self):
        if mounted(self.path):
            subprocess.run([FUSERMOUNT, "-uz", str(self.path)], capture_output=True, timeout=30)
        if self.alive():
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.reader.join(10)


class Outcome:
    def __init__(self):
        self.value = None
        self.error = None
        self.elapsed = None


def bounded(fn, limit, what):
    """fn() in a thread; its Outcome once it returns; AssertionError if it is
    still running limit seconds later (the watchdog then unblocks it)."""
    o = Outcome()

    def run():
        t = time.monotonic()
        try:
            o.value = fn()
        except BaseException as e:  # noqa: B902 - handed to the test
            o.error = e
        o.elapsed = time.monotonic() - t
    th = threading.Thread(target=run, daemon=True)
    th.start()
    th.join(limit)
    if th.is_alive():
        raise AssertionError(f"{what}: still blocked after {limit}s")
    return o


def assert_fails_with(o, what, errnos=BAD_ERRNOS):
    assert o.error is not None, f"{what} succeeded ({o.value!r}); expected an error"
    assert isinstance(o.error, OSError) and o.error.errno in errnos, \
        f"{what} failed with {o.error!r}; expected errno in " \
        f"{[errno.errorcode[e] for e in errnos]}"


def figure(text):
    print(f"\n[reconnect figures] {text}", flush=True)


class Stream(threading.Thread):
    """A process-like reader or writer of n MiB through the mount, 1 MiB per
    system call. at(k) gives an event set once k MiB are done (and at the
    end, however it ended)."""

    def __init__(self, path, n, write, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC):
        super().__init__(daemon=True)
        self.file, self.n, self.write, self.flags = str(path), n, write, flags
        self.progress = 0               # MiB done
        self.nbytes = 0
        self.marks = {}
        self.error = None
        self.digest = None
        self.finished = threading.Event()
        self.t_end = None

    def at(self, k):
        return self.marks.setdefault(k, threading.Event())

    def _advance(self, k):
        self.progress = k
        ev = self.marks.get(k)
        if ev is not None:
            ev.set()

    def run(self):
        h = hashlib.sha256()
        try:
            if self.write:
                fd = os.open(self.file, self.flags, 0o644)
                try:
                    for i in range(self.n):
                        data = memoryview(chunk(i))
                        off = 0
                        while off < len(data):
                            off += os.write(fd, data[off:])
                        h.update(data)
                        self.nbytes += len(data)
                        self._advance(i + 1)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            else:
                fd = os.open(self.file, os.O_RDONLY)
                try:
                    while True:
                        b = os.read(fd, MiB)
                        if not b:
                            break
                        h.update(b)
                        self.nbytes += len(b)
                        if self.nbytes // MiB != self.progress:
                            self._advance(self.nbytes // MiB)
                finally:
                    os.close(fd)
            self.digest = h.hexdigest()
        except BaseException as e:  # noqa: B902 - the test reads it
            self.error = e
        finally:
            self.t_end = time.monotonic()
            for ev in self.marks.values():
                ev.set()
            self.finished.set()

    def finish(self, limit, what):
        if not self.finished.wait(limit):
            raise AssertionError(f"{what}: still blocked after {limit}s at {self.progress} MiB")
        return self


# --------------------------------------------------------------------------
# fixtures

@pytest.fixture(scope="module")
def fsshd(menv):
    s = FaultSshd(menv.base / "sshd-fault", menv.authorized_keys)
    s.start()  # before any mount of this module's (see FaultSshd)
    try:
        yield s
    finally:
        s.shutdown()


class Rig:
    def __init__(self, menv, sshd):
        self.menv, self.sshd = menv, sshd
        self.mounts = []
        self.proxies = []
        self.fired = False

    def mount(self, *opts, **kw):
        return HMount(self, opts, **kw)

    def server_opts(self, server):
        """OpenSSH's sftp-server is the sshd's subsystem; ours is run by
        path (as mountfix does)."""
        return [o for o in self.menv.server_opts(server) if o != "-o"]

    def proxy(self):
        p = HoldProxy(self.sshd.port)
        self.proxies.append(p)
        kh = self.menv.base / f"known_hosts-proxy-{p.port}"
        kh.write_text(f"[127.0.0.1]:{p.port} {self.sshd.host_pub[0]} {self.sshd.host_pub[1]}\n")
        os.chmod(kh, 0o644)
        return p, str(kh)

    def fire(self):
        self.fired = True
        self.sshd.thaw()
        for m in self.mounts:
            if m.alive():
                m.proc.kill()

    def cleanup(self):
        self.sshd.thaw()
        for m in self.mounts:
            m.close()
        for p in self.proxies:
            p.close()


@pytest.fixture
def rig(menv, fsshd):
    fsshd.ensure_running()
    r = Rig(menv, fsshd)
    timer = threading.Timer(WATCHDOG, r.fire)
    timer.daemon = True
    timer.start()
    try:
        yield r
    finally:
        timer.cancel()
        r.cleanup()
    if r.fired:
        pytest.fail(f"the test hung for over {WATCHDOG}s; the watchdog thawed the server "
                    "and killed the hashi daemons", pytrace=False)


# --------------------------------------------------------------------------
# 1. the serving sshd is killed in the middle of a long write, and a long read

N_BIG = 256


@pytest.mark.parametrize("server", SERVERS)
def test_kill_during_write(rig, server):
    m = rig.mount(*ALIVE, "timeout=30", *rig.server_opts(server))
    victims = m.sessions()
    logins = rig.sshd.accepted()
    w = Stream(m.path / "big", N_BIG, write=True)
    half = w.at(N_BIG // 2)
    t0 = time.monotonic()
    w.start()
    assert half.wait(60), "the writer did not reach the middle within 60s"
    at_kill = w.progress
    t_kill = time.monotonic()
    rig.sshd.kill(victims)
    w.finish(60, "the writer")
    assert w.error is None, f"the writer failed after {w.progress} MiB: {w.error!r}\n{m.log()}"
    assert at_kill < N_BIG, "the writer was done before the kill: nothing was tested"
    figure(f"256 MiB write ({server} server) with a SIGKILL of sshd at {at_kill} MiB: "
           f"{w.t_end - t0:.2f}s "
           f"(resumed and finished {w.t_end - t_kill:.2f}s after the kill)")
    assert rig.sshd.accepted() > logins, "hashi did not log in again"
    want = digest_of_chunks(N_BIG)
    assert w.digest == want
    st = os.stat(m.export / "big")
    assert st.st_size == N_BIG * MiB, f"server-side size {st.st_size}"
    assert file_digest(m.export / "big") == want, "the file on the server is corrupt"
    assert m.count(LOST_RE) >= 1, f"no 'connection lost' line:\n{m.log()}"
    r = m.fusermount_u()
    assert r.returncode == 0, r.stderr
    assert m.wait_exit(20) == 0


def test_kill_during_read(rig):
    m = rig.mount(*ALIVE, "timeout=30", "reconnect")
    want = make_server_file(m.export / "big", N_BIG)
    victims = m.sessions()
    logins = rig.sshd.accepted()
    rd = Stream(m.path / "big", N_BIG, write=False)
    half = rd.at(N_BIG // 2)
    t0 = time.monotonic()
    rd.start()
    assert half.wait(60), "the reader did not reach the middle within 60s"
    at_kill = rd.progress
    t_kill = time.monotonic()
    rig.sshd.kill(victims)
    rd.finish(60, "the reader")
    assert rd.error is None, f"the reader failed after {rd.progress} MiB: {rd.error!r}\n{m.log()}"
    assert at_kill < N_BIG, "the reader was done before the kill: nothing was tested"
    figure(f"256 MiB read with a SIGKILL of sshd at {at_kill} MiB: {rd.t_end - t0:.2f}s "
           f"(finished {rd.t_end - t_kill:.2f}s after the kill)")
    assert rig.sshd.accepted() > logins, "hashi did not log in again"
    assert rd.nbytes == N_BIG * MiB, f"read {rd.nbytes} bytes"
    assert rd.digest == want, "the data read across the reconnect is corrupt"
    r = m.fusermount_u()
    assert r.returncode == 0, r.stderr
    assert m.wait_exit(20) == 0


# --------------------------------------------------------------------------
# 2. a frozen server (SIGSTOP): detection, the reader, unmounting

def test_freeze_during_read(rig):
    timeout = 10
    m = rig.mount(*ALIVE, f"timeout={timeout}")
    n = 64
    want = make_server_file(m.export / "f", n)
    victims = m.sessions()
    rd = Stream(m.path / "f", n, write=False)
    quarter = rd.at(n // 4)
    rd.start()
    assert quarter.wait(30), "the reader did not start"
    since = m.mark()
    at_freeze = rd.progress
    t_stop = time.monotonic()
    rig.sshd.freeze(victims)
    lost = m.wait_line(LOST_RE, since, timeout=DEAD_AFTER + SAI + 10)
    assert lost is not None, \
        f"no 'connection lost' line {DEAD_AFTER + SAI + 10}s after SIGSTOP:\n{m.log(since)}"
    detect = lost[0] - t_stop
    figure(f"dead link detected {detect:.2f}s after SIGSTOP "
           f"(ServerAliveInterval={SAI}, ServerAliveCountMax={SACM}): {lost[1]!r}")
    assert detect >= DEAD_AFTER - SAI - 0.25, \
        f"declared dead after {detect:.2f}s, before {SAI}*{SACM}s without a reply"
    assert detect <= DEAD_AFTER + SAI + 3, f"detection took {detect:.2f}s"
    # The listener answers: hashi reconnects while the old session is still
    # frozen, and the reader carries on (or, at worst, gets a clean error).
    t_more = None
    if at_freeze < n:
        more = rd.at(min(n, at_freeze + 8))
        if more.wait(timeout + 10) and rd.error is None:
            t_more = time.monotonic()
    progressed = rd.progress
    rig.sshd.thaw()
    rd.finish(timeout + 15, "the reader after SIGCONT")
    if rd.error is not None:
        assert isinstance(rd.error, OSError) and rd.error.errno in BAD_ERRNOS, \
            f"the reader failed with {rd.error!r}\n{m.log()}"
        figure(f"reader across a freeze: failed with {rd.error!r} after {rd.progress} MiB")
    else:
        assert rd.digest == want, "the data read across the freeze is corrupt"
        figure(f"reader across a freeze: {progressed - at_freeze} MiB read while the old "
               f"session was still frozen"
               + (f" (8 MiB {t_more - lost[0]:.2f}s after the 'lost' line)" if t_more else "")
               + f"; finished {rd.t_end - t_stop:.2f}s after SIGSTOP")
    r = m.fusermount_u()
    assert r.returncode == 0, r.stderr
    assert m.wait_exit(20) == 0


@pytest.mark.parametrize("how", ["fusermount", "umount-l", "SIGTERM", "SIGINT"])
def test_unmount_while_server_frozen(rig, how):
    """The whole host hangs (listener and sessions stopped): hashi detects
    it and tries to reconnect into a server that never answers; unmounting
    (or a signal) still ends the daemon promptly."""
    m = rig.mount(*ALIVE, "timeout=30")
    (m.export / "x").write_text("x")
    assert os.listdir(m.path) == ["x"]
    since = m.mark()
    rig.sshd.freeze_all()
    lost = m.wait_line(LOST_RE, since, timeout=DEAD_AFTER + SAI + 10)
    assert lost is not None, f"no 'connection lost' line while frozen:\n{m.log(since)}"
    t = time.monotonic()
    if how == "fusermount":
        r = m.fusermount_u()
        assert r.returncode == 0, f"fusermount3 -u: {r.stderr}"
        assert not mounted(m.path)
    elif how == "umount-l":
        r = subprocess.run(["umount", "-l", str(m.path)], capture_output=True, text=True,
                           timeout=20)
        assert r.returncode == 0, f"umount -l: {r.stderr}"
        assert not mounted(m.path)
    else:
        m.proc.send_signal(getattr(signal, how))
    status = m.wait_exit(15)
    figure(f"{how} while the server is frozen: the daemon exited "
           f"{time.monotonic() - t:.2f}s later, status {status}")
    assert not mounted(m.path), f"{m.path} still mounted after the daemon exited"
    assert status == 0, f"hashi exited {status}\n{m.log()}"


def test_alive_interval_zero_keeps_a_frozen_link(rig):
    """ServerAliveInterval=0: no dead-peer timer; a server that is silent
    for longer than 1*2 seconds is not declared dead (the pause is the
    test), and the same connection serves again after SIGCONT."""
    m = rig.mount("ServerAliveInterval=0", "ServerAliveCountMax=2", "timeout=30")
    (m.export / "x").write_text("x")
    assert os.listdir(m.path) == ["x"]
    logins = rig.sshd.accepted()
    since = m.mark()
    rig.sshd.freeze(m.sessions())
    assert m.wait_line(LOST_RE, since, timeout=DEAD_AFTER + 2) is None, \
        f"the link was declared dead with ServerAliveInterval=0:\n{m.log(since)}"
    rig.sshd.thaw()
    o = bounded(lambda: sorted(os.listdir(m.path)), 20, "listdir after SIGCONT")
    assert o.error is None and o.value == ["x"], repr(o.error or o.value)
    assert rig.sshd.accepted() == logins, "hashi made a new connection"
    assert m.fusermount_u().returncode == 0
    assert m.wait_exit(20) == 0


# --------------------------------------------------------------------------
# 3. the whole sshd restarts while a file is open for writing, twice

def _wait_logins(sshd, more_than, limit):
    _wait_for(lambda: sshd.accepted() > more_than, "hashi to log in again", limit)


def test_restart_sshd_while_writing(rig):
    m = rig.mount(*ALIVE, "timeout=30")
    n = 96
    # O_EXCL: a reopen after the reconnect must not use it (nor O_TRUNC).
    w = Stream(m.path / "w", n, write=True, flags=os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    first, second = w.at(n // 4), w.at(n // 2)
    w.start()
    assert first.wait(60), "the writer did not start"
    logins = rig.sshd.accepted()
    at1 = w.progress
    t0 = time.monotonic()
    rig.sshd.restart()                     # forced reconnect 1
    # the moment hashi has logged in again, the server goes again (2)
    _wait_logins(rig.sshd, logins, 30)
    t1 = time.monotonic()
    logins = rig.sshd.accepted()
    at2 = w.progress
    rig.sshd.restart()
    _wait_logins(rig.sshd, logins, 30)
    assert at1 < n, "the writer was done before the first restart"
    figure(f"sshd restarted twice while writing (at {at1} and {at2} MiB of {n}): logged in again "
           f"{t1 - t0:.2f}s after the first restart, "
           f"{time.monotonic() - t1:.2f}s after the second")
    assert second.wait(60)
    w.finish(60, "the writer")
    assert w.error is None, f"the writer failed after {w.progress} MiB: {w.error!r}\n{m.log()}"
    want = digest_of_chunks(n)
    assert w.digest == want
    assert os.stat(m.export / "w").st_size == n * MiB
    assert file_digest(m.export / "w") == want, "the file on the server is corrupt"
    # and the mount reads back the same
    assert file_digest(m.path / "w") == want
    assert m.fusermount_u().returncode == 0
    assert m.wait_exit(20) == 0


def _poll(cond, what, limit):
    """Check cond every 2 ms (fio moves 64 MiB in a few hundred ms: the
    kills must land inside a phase)."""
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.002)


def _rchar(pid):
    try:
        with open(f"/proc/{pid}/io") as f:
            for ln in f:
                if ln.startswith("rchar:"):
                    return int(ln.split()[1])
    except OSError:
        pass
    return 0


def test_fio_verify_across_reconnects(rig):
    """fio writes 64 MiB with crc32c checksums and reads them back; the
    serving sshd is killed once during the writes and once during the
    verifying reads."""
    fio = "/usr/bin/fio"
    m = rig.mount(*ALIVE, "timeout=30")
    size = 64
    target = m.path / "fio.dat"
    if not os.access(fio, os.X_OK):
        # the Python equivalent: a write, then a verifying read, each
        # across a kill
        w = Stream(target, size, write=True)
        ev = w.at(size // 2)
        victims = m.sessions()
        w.start()
        ev.wait(60)
        rig.sshd.kill(victims)
        w.finish(60, "the writer")
        assert w.error is None, repr(w.error)
        rd = Stream(target, size, write=False)
        ev = rd.at(size // 2)
        victims = m.sessions()
        rd.start()
        ev.wait(60)
        rig.sshd.kill(victims)
        rd.finish(60, "the reader")
        assert rd.error is None and rd.digest == digest_of_chunks(size), repr(rd.error)
        pytest.skip("fio is not installed: ran the Python equivalent")
    argv = [fio, "--name=reconnect", f"--filename={target}", "--rw=write", "--bs=256k",
            f"--size={size}m", "--ioengine=psync", "--direct=1", "--fallocate=none",
            "--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--end_fsync=1",
            "--thread", "--rate=32m,32m", "--output-format=normal"]
    logins = rig.sshd.accepted()
    victims = m.sessions()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         cwd="/")
    try:
        server = m.export / "fio.dat"
        _poll(lambda: p.poll() is not None or
              (server.exists() and server.stat().st_size >= size * MiB // 4),
              "fio to write a quarter of its file", 60)
        assert p.poll() is None, f"fio ended early:\n{p.communicate()[0]}"
        rig.sshd.kill(victims)                     # during the writes
        _wait_logins(rig.sshd, logins, 30)
        logins = rig.sshd.accepted()
        # fio reads back what it wrote once the writes are done
        _poll(lambda: p.poll() is not None or _rchar(p.pid) >= size * MiB // 4,
              "fio to verify a quarter of its file", 60)
        killed_in_verify = p.poll() is None
        if killed_in_verify:
            rig.sshd.kill(m.sessions())            # during the verifying reads
        out, _ = p.communicate(timeout=90)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, f"fio exited {p.returncode}:\n{out}\n--- hashi:\n{m.log()}"
    assert killed_in_verify, f"fio was done before the second kill:\n{out}"
    assert rig.sshd.accepted() > logins, "hashi did not log in again after the second kill"
    figure(f"fio --verify=crc32c across two kills: passed; "
           f"{re.findall(r'(?:READ|WRITE): bw=[^,]*', out)}")
    assert m.fusermount_u().returncode == 0
    assert m.wait_exit(20) == 0


# --------------------------------------------------------------------------
# 4. a server that dies for good

def test_server_gone_for_good(rig):
    timeout = 5
    m = rig.mount(*ALIVE, f"timeout={timeout}")
    make_server_file(m.export / "f", 16)
    (m.export / "d").mkdir()
    fd = os.open(m.path / "f", os.O_RDONLY)
    try:
        assert os.read(fd, 4096) == chunk(0)[:4096]
        since = m.mark()
        rig.sshd.stop_all()
        t0 = time.monotonic()
        bound = timeout + 4
        ops = [
            ("stat of a new name", lambda: os.stat(m.path / "never-seen")),
            ("listdir", lambda: os.listdir(m.path / "d")),
            ("read of an open file", lambda: os.pread(fd, 65536, 12 * MiB)),
            ("create", lambda: os.close(os.open(m.path / "new", os.O_WRONLY | os.O_CREAT,
                                                0o644))),
        ]
        for what, fn in ops:
            o = bounded(fn, bound + 15, what)
            assert_fails_with(o, what)
            figure(f"server gone, timeout={timeout}: {what} failed with "
                   f"{errno.errorcode[o.error.errno]} after {o.elapsed:.2f}s")
            assert o.elapsed <= bound, f"{what} took {o.elapsed:.2f}s (timeout={timeout})"
        total = time.monotonic() - t0
        assert m.alive(), f"the daemon died:\n{m.log()}"
        assert mounted(m.path)
    finally:
        o = bounded(lambda: os.close(fd), timeout + 15, "close")
    lost = m.wait_line(LOST_RE, since, timeout=1)
    assert lost is not None, f"no 'connection lost' line:\n{m.log(since)}"
    after = m.log(since)
    assert re.search(r"(?i)reconnect|refused|timed out|timeout", after), \
        f"the log says nothing about the failed reconnection:\n{after}"
    figure(f"server gone: 4 failing operations took {total:.2f}s; hashi logged:\n"
           + "\n".join("    " + ln for ln in after.splitlines()[-8:]))
    r = m.fusermount_u()
    assert r.returncode == 0, f"fusermount3 -u: {r.stderr}"
    assert m.wait_exit(15) == 0


def test_syscall_bounded_by_timeout(rig):
    """timeout= bounds what a process waits, not only each request: a stat
    of a name the kernel knows (entry_timeout=0: it revalidates it) costs
    two LOOKUPs when the first fails (the revalidation, then a fresh
    lookup), and the caller must still get its error within the bound."""
    timeout = 5
    # cache=no: an answer from hashi's cache would need no server at all.
    m = rig.mount(*ALIVE, f"timeout={timeout}", "entry_timeout=0", "cache=no")
    (m.export / "f").write_text("f")
    os.stat(m.path / "f")
    rig.sshd.stop_all()
    o = bounded(lambda: os.stat(m.path / "f"), 3 * timeout + 15, "stat of a known name")
    assert_fails_with(o, "stat of a known name")
    figure(f"server gone, timeout={timeout}: stat of a known name failed with "
           f"{errno.errorcode[o.error.errno]} after {o.elapsed:.2f}s")
    assert o.elapsed <= timeout + 4, \
        f"stat of a known name took {o.elapsed:.2f}s with timeout={timeout}:\n{m.log()}"
    assert m.fusermount_u().returncode == 0
    assert m.wait_exit(15) == 0


def test_server_back_after_outage(rig):
    """The server is away for two request timeouts, then comes back: the
    mount recovers by itself (a new request succeeds) within a bound. The
    figure printed says how long a returning server stays unused."""
    timeout = 5
    # cache=no: the cached listing would answer "no such file" by itself.
    m = rig.mount(*ALIVE, f"timeout={timeout}", "cache=no")
    assert os.listdir(m.path) == []
    rig.sshd.stop_all()
    t0 = time.monotonic()
    for i in range(2):  # the outage: two requests that wait out their timeout
        o = bounded(lambda: os.stat(m.path / f"away{i}"), timeout + 15, "stat")
        assert_fails_with(o, "stat while the server is away")
    t_back = rig.sshd.restart()
    tries, failed_after_back = 0, 0
    while True:
        tries += 1
        o = bounded(lambda: os.stat(m.path / f"probe{tries}"), timeout + 15,
                    "stat after the server came back")
        if isinstance(o.error, FileNotFoundError):
            break  # the server answered
        assert_fails_with(o, "stat after the server came back")
        failed_after_back += 1
        assert time.monotonic() - t_back < 40, \
            f"no recovery 40s after the server came back:\n{m.log()}"
    figure(f"server away {t_back - t0:.1f}s, then back: first successful request "
           f"{time.monotonic() - t_back:.2f}s later ({failed_after_back} request(s) failed "
           f"with timeout={timeout} while it was back)")
    assert m.fusermount_u().returncode == 0
    assert m.wait_exit(20) == 0


# --------------------------------------------------------------------------
# 5. -o noreconnect

def test_noreconnect(rig):
    m = rig.mount(*ALIVE, "noreconnect", "timeout=30", "cache=no")  # (as above)
    (m.export / "d").mkdir()
    assert os.listdir(m.path) == ["d"]
    logins = rig.sshd.accepted()
    since = m.mark()
    rig.sshd.kill(m.sessions())
    for what, fn in [("stat of a new name", lambda: os.stat(m.path / "never-seen")),
                     ("listdir", lambda: os.listdir(m.path / "d")),
                     ("mkdir", lambda: os.mkdir(m.path / "e"))]:
        o = bounded(fn, 20, what)
        assert_fails_with(o, what, (errno.EIO,))
        assert o.elapsed < 3, f"{what} took {o.elapsed:.2f}s to fail"
    assert mounted(m.path)
    assert m.alive()
    assert rig.sshd.accepted() == logins, "hashi reconnected with -o noreconnect"
    assert m.wait_line(LOST_RE, since, timeout=1) is not None, m.log(since)
    r = m.fusermount_u()
    assert r.returncode == 0, r.stderr
    assert m.wait_exit(15) == 0


# --------------------------------------------------------------------------
# 6. namespace operations and directory handles across a reconnect

def test_mkdir_rename_after_reconnect(rig):
    m = rig.mount(*ALIVE, "timeout=30")
    (m.export / "a").write_text("a")
    assert os.listdir(m.path) == ["a"]
    t0 = time.monotonic()
    rig.sshd.kill(m.sessions())
    o = bounded(lambda: os.mkdir(m.path / "newdir"), 40, "mkdir after the kill")
    assert o.error is None, f"mkdir after a reconnect: {o.error!r}\n{m.log()}"
    figure(f"reconnect (SIGKILL of sshd -> first successful mkdir): "
           f"{time.monotonic() - t0:.3f}s")
    assert (m.export / "newdir").is_dir()
    o = bounded(lambda: os.rename(m.path / "a", m.path / "newdir" / "b"), 20, "rename")
    assert o.error is None, repr(o.error)
    assert (m.export / "newdir" / "b").read_text() == "a"
    assert not (m.export / "a").exists()
    assert m.fusermount_u().returncode == 0
    assert m.wait_exit(20) == 0


def test_creates_behind_across_reconnect(rig):
    """Small files created behind (answered before the server's HANDLE,
    their writes sent on the handle foreseen or held for it) while the
    serving sshd is killed: every file the writer closed without an error
    is on the server whole, and none failed."""
    m = rig.mount(*ALIVE, "timeout=30", "debug")
    d = m.path / "d"
    os.mkdir(d)
    for i in range(6):  # hashi learns the owner of new files and the server's handles
        (d / f"w{i}").write_bytes(b"warm")
    os.listdir(d)
    done, errors = [], []
    halfway = threading.Event()

    def writer():
        for i in range(300):
            data = b"%d;" % i * (20 + i)
            try:
                fd = os.open(d / f"f{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                try:
                    os.write(fd, data)
                finally:
                    os.close(fd)
                done.append((i, data))
            except OSError as e:
                errors.append((i, e))
            if i == 100:
                halfway.set()
    t = threading.Thread(target=writer, daemon=True)
    t.start()
    assert halfway.wait(60), "the writer did not reach file 100 within 60s"
    rig.sshd.kill(m.sessions())
    t.join(120)
    assert not t.is_alive(), "the writer hung"
    assert not errors, f"{errors[:3]}\n{m.log()[-3000:]}"
    assert len(done) == 300
    for i, data in done:
        assert (m.export / "d" / f"f{i}").read_bytes() == data, f"f{i}"
    assert m.count(LOST_RE) >= 1, "the kill came after the writer was done: nothing was tested"
    assert "its OPEN behind" in m.log()
    assert m.fusermount_u().returncode == 0
    assert m.wait_exit(20) == 0


def test_open_directory_across_reconnect(rig):
    m = rig.mount(*ALIVE, "timeout=30")
    d = m.export / "big"
    d.mkdir()
    # long names: a getdents buffer holds ~150 of them, so the listing is
    # read in several pieces and the later ones come after the reconnect
    names = {f"n{i:03d}-" + "x" * 190 for i in range(500)}
    for n in names:
        (d / n).touch()
    it = os.scandir(m.path / "big")
    try:
        seen = [next(it).name for _ in range(250)]
        rig.sshd.kill(m.sessions())
        o = bounded(lambda: [e.name for e in it], 40, "the rest of the listing")
    finally:
        it.close()
    assert o.error is None, f"listing after a reconnect: {o.error!r}\n{m.log()}"
    seen += o.value
    dups = len(seen) - len(set(seen))
    assert dups == 0, f"{dups} names listed twice"
    assert set(seen) == names, \
        f"missing {len(names - set(seen))}, extra {sorted(set(seen) - names)[:5]}"
    assert len(seen) == 500
    assert m.fusermount_u().returncode == 0
    assert m.wait_exit(20) == 0


@pytest.mark.parametrize("server", SERVERS)
def test_retried_namespace_ops_lose_their_reply(rig, server):
    """Each operation reaches the server and takes effect, then its reply is
    lost (the proxy holds the connection's server-to-client bytes): hashi
    sees no reply, declares the link dead, reconnects and sends the request
    again, which now fails server-side (exists / no such file). That retry
    must not turn into an error for the caller."""
    proxy, kh = rig.proxy()
    m = rig.mount(*ALIVE, "timeout=30", "entry_timeout=60", "attr_timeout=60",
                  *rig.server_opts(server), port=proxy.port, known_hosts=kh)
    e = m.export
    (e / "victim").write_text("v")
    (e / "emptydir").mkdir()
    # the kernel learns these names now, so that each operation below sends
    # no LOOKUP of them (whose reply the proxy would hold instead)
    for n in ("victim", "emptydir"):
        os.stat(m.path / n)

    def through_lost_reply(what, fn, done):
        since = m.mark()
        held = proxy.hold_after(done)
        o = bounded(fn, DEAD_AFTER + 40, what)
        assert any(p.held.is_set() for p in held), \
            f"{what}: the reply was never held (the server never showed the effect)"
        assert o.error is None, \
            f"{what}, retried after a lost reply, failed: {o.error!r}\n{m.log(since)}"
        assert m.count(LOST_RE, since) >= 1, f"{what}: no reconnect happened:\n{m.log(since)}"
        assert done(), f"{what}: not done on the server"
        figure(f"{what} ({server} server) with its reply lost: succeeded after "
               f"{o.elapsed:.2f}s")

    through_lost_reply("mkdir", lambda: os.mkdir(m.path / "made"),
                       lambda: (e / "made").is_dir())
    through_lost_reply("rename", lambda: os.rename(m.path / "victim", m.path / "moved"),
                       lambda: (e / "moved").exists() and not (e / "victim").exists())
    os.stat(m.path / "moved")
    through_lost_reply("unlink", lambda: os.unlink(m.path / "moved"),
                       lambda: not (e / "moved").exists())
    through_lost_reply("rmdir", lambda: os.rmdir(m.path / "emptydir"),
                       lambda: not (e / "emptydir").exists())
    assert sorted(os.listdir(m.path)) == ["made"]
    assert m.fusermount_u().returncode == 0
    assert m.wait_exit(20) == 0
