"""hashi's control socket (ControlMaster, ControlPath, ControlPersist, -O):
one SSH connection shared by several mounts of the same user@host:port.

Real sshd, real FUSE mounts (mountfix.py). A borrowed mount makes no TCP
connection of its own: we count the logins in the sshd's log ("Accepted
publickey for ..."), and look at ss -tnp."""

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from mountfix import *  # noqa: F401,F403
import mountfix
from mountfix import run_as_cmd, force_unmount

CM = ["ControlMaster=auto"]


def sshd_connections(env):
    """Logins the sshd accepted (each on a TCP connection of its own; its
    "Connection from" lines also count the fixture's readiness probes)."""
    return env.sshd.log_text().count("Accepted publickey for ")


def tcp_conns_of(pid, port):
    """Established TCP connections to the sshd's port held by pid."""
    r = subprocess.run(["ss", "-tnpH", "state", "established", f"dport = :{port}"],
                       capture_output=True, text=True, check=True)
    return [ln for ln in r.stdout.splitlines() if f"pid={pid}," in ln]


def ctl_path(tmpdir_base, who, name):
    d = Path(tmpdir_base) / f"ctl-{who.name}-{name}"
    d.mkdir(mode=0o700, exist_ok=True)
    who.chown(d)
    return str(d / "s-%C")


def hashi_O(env, who, cmd, extra_opts=()):
    a = env.account(who) if isinstance(who, str) else who
    args = ["-O", cmd, f"{a.name}@127.0.0.1", *env.ssh_opts(a)]
    for o in extra_opts:
        args += ["-o", o]
    return env.run_hashi(a, args)


def timed_mount(env, who, export, opts):
    t0 = time.monotonic()
    m = env.mount(who, "openssh", export=export, opts=opts)
    return m, time.monotonic() - t0


def cleanup(*mounts):
    """Unmount (borrowers before masters: a master waits for them), then
    reap every daemon."""
    for m in reversed(mounts):
        if mounted(m.path):
            run_as_cmd(m.who, ["fusermount3", "-uz", str(m.path)])
    for m in reversed(mounts):
        if m.exit_status is None and m.pid is not None:
            try:
                m.exit_status = wait_pid(m.pid, 30)
            except AssertionError:
                dump_stuck(m.pid, m.path)
                os.kill(m.pid, signal.SIGKILL)
                m.exit_status = wait_pid(m.pid, 10)


def dump_stuck(pid, path=None):
    """A daemon that does not exit: where its threads are, and which other
    mount namespaces still hold its mount (one made by another test session
    while the mount existed keeps the FUSE connection open after our
    unmount), for the log."""
    r = subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt"],
                       capture_output=True, text=True)
    print(f"--- threads of stuck pid {pid}:\n{r.stdout[-6000:]}")
    if path is None:
        return
    holders = {}
    for d in os.listdir("/proc"):
        try:
            if d.isdigit() and f" {path} " in Path(f"/proc/{d}/mountinfo").read_text():
                holders.setdefault(os.readlink(f"/proc/{d}/ns/mnt"), d)
        except OSError:
            pass
    print(f"--- mount namespaces holding {path}: {holders}")


def unmount(m):
    try:
        return m.unmount()
    except AssertionError:
        dump_stuck(m.pid)
        raise


def master_pid(env, who, cp):
    r = hashi_O(env, who, "check", [f"ControlPath={cp}"])
    if r.returncode != 0:
        return None
    return int(r.stderr.split("pid=")[1].split(")")[0])


def write_read(path, data):
    p = Path(path)
    p.write_bytes(data)
    return p.read_bytes()


@pytest.fixture(scope="module")
def small_sshd(menv):
    """An sshd allowing 2 sessions per connection (sshd's MaxSessions),
    started (through the fixture's class, then reloaded with SIGHUP) before
    this module makes any mount."""
    from mountfix import NsSshd, _port_open, _wait_for
    d = NsSshd(menv.base / "sshd-maxsessions", menv.authorized_keys).start()
    conf = Path(d.config)
    conf.write_text(conf.read_text().replace("MaxSessions 100", "MaxSessions 2"))
    mark = len(d.log_text())
    os.kill(d.pid, signal.SIGHUP)
    _wait_for(lambda: "Server listening" in d.log_text()[mark:] and _port_open(d.port),
              "sshd to reload")
    yield d
    d.stop()


def test_maxsessions_borrower_connects_on_its_own(menv, small_sshd):
    """With MaxSessions 2 the master has its own channel and one spare: the
    first borrower takes the spare, the next one is refused a channel by
    the server and makes a connection of its own instead of failing."""
    a = menv.root
    d = small_sshd
    cp = ctl_path(menv.base, a, "maxsess")
    extra = menv.ssh_opts(a, port=d.port, known_hosts=d.known_hosts)
    export = menv.new_dir("exp", owner=a)
    opts = CM + [f"ControlPath={cp}"]

    def logins():
        return d.log_text().count("Accepted publickey for ")

    m1 = menv.mount("root", "openssh", export=export, extra=extra, opts=opts)
    mounts = [m1]
    try:
        assert logins() == 1
        m2 = menv.mount("root", "openssh", export=export, extra=extra, opts=opts)
        mounts.append(m2)
        assert logins() == 1, "the first borrower should have borrowed"
        m3 = menv.mount("root", "openssh", export=export, extra=extra, opts=opts)
        mounts.append(m3)
        assert logins() == 2, "the second borrower should have connected on its own"
        for m in mounts:
            assert m.do(write_read, m.path / f"f{m.pid}", b"ok") == b"ok"
    finally:
        cleanup(*mounts)


def test_three_mounts_share_one_connection(menv):
    """The 2nd and 3rd mounts borrow the 1st's connection (no TCP of their
    own); the 1st can be unmounted while they work; then it leaves."""
    who = "root"
    a = menv.account(who)
    cp = ctl_path(menv.base, a, "three")
    opts = CM + [f"ControlPath={cp}"]
    export = menv.new_dir("exp", owner=a)
    before = sshd_connections(menv)
    m1, t1 = timed_mount(menv, who, export, opts)
    after1 = sshd_connections(menv)
    m2, t2 = timed_mount(menv, who, export, opts)
    m3, t3 = timed_mount(menv, who, export, opts)
    try:
        after3 = sshd_connections(menv)
        print(f"\ntime to mount: first (master) {t1 * 1000:.1f} ms; "
              f"borrowed {t2 * 1000:.1f} ms and {t3 * 1000:.1f} ms; "
              f"ratio {t1 / max(t2, 1e-9):.1f}x and {t1 / max(t3, 1e-9):.1f}x")
        assert after1 - before == 1
        assert after3 == after1, "a borrowed mount opened a TCP connection of its own"
        assert len(tcp_conns_of(m1.pid, menv.sshd.port)) == 1
        assert tcp_conns_of(m2.pid, menv.sshd.port) == []
        assert tcp_conns_of(m3.pid, menv.sshd.port) == []
        # all three see the same files
        assert m2.do(write_read, m2.path / "f2", b"two") == b"two"
        assert m3.do(lambda p: Path(p).read_bytes(), m3.path / "f2") == b"two"
        assert m1.do(lambda p: Path(p).read_bytes(), m1.path / "f2") == b"two"

        # the master's mount goes; the borrowers go on working
        r = run_as_cmd(a, ["fusermount3", "-u", str(m1.path)])
        assert r.returncode == 0, r.stderr
        assert not mounted(m1.path)
        big = os.urandom(3 * 1024 * 1024)
        assert m2.do(write_read, m2.path / "big", big) == big
        assert m3.do(lambda p: Path(p).read_bytes(), m3.path / "big") == big
        assert len(tcp_conns_of(m1.pid, menv.sshd.port)) == 1, "the master left"
        assert sshd_connections(menv) == after1
        r = hashi_O(menv, a, "status", [f"ControlPath={cp}"])
        print(r.stdout)
        assert r.returncode == 0, r.stderr
        assert f"Master running (pid={m1.pid})" in r.stdout
        assert str(m2.path) in r.stdout and str(m3.path) in r.stdout
        # the last borrower leaves: the master (ControlPersist=no) follows
        assert unmount(m2) == 0
        assert unmount(m3) == 0
        assert wait_pid(m1.pid, 30) == 0
        m1.exit_status = 0
    finally:
        cleanup(m1, m2, m3)


def test_master_killed_borrowers_recover(menv):
    """SIGKILL the master: each borrower's requests go on after it
    reconnects; one of them is the new master, the other borrows from it."""
    who = "root"
    a = menv.account(who)
    cp = ctl_path(menv.base, a, "kill")
    opts = CM + [f"ControlPath={cp}", "ServerAliveInterval=2"]
    export = menv.new_dir("exp", owner=a)
    m1 = menv.mount(who, "openssh", export=export, opts=opts)
    m2 = menv.mount(who, "openssh", export=export, opts=opts)
    m3 = menv.mount(who, "openssh", export=export, opts=opts)
    try:
        assert m2.do(write_read, m2.path / "before", b"x") == b"x"
        before = sshd_connections(menv)
        os.kill(m1.pid, signal.SIGKILL)
        m1.exit_status = wait_pid(m1.pid, 10)
        run_as_cmd(a, ["fusermount3", "-uz", str(m1.path)])
        t0 = time.monotonic()
        data = os.urandom(200000)
        assert m2.do(write_read, m2.path / "after2", data) == data
        assert m3.do(write_read, m3.path / "after3", data) == data
        assert m3.do(lambda p: Path(p).read_bytes(), m3.path / "after2") == data
        print(f"\nborrowers recovered in {time.monotonic() - t0:.2f} s")
        # (the one that won the election may still be setting up its socket)
        found = []
        mountfix._wait_for(lambda: found.append(master_pid(menv, a, cp)) or found[-1],
                           "a new master answering at the ControlPath", 20)
        pid = found[-1]
        assert pid in (m2.pid, m3.pid), f"the new master is {pid}"
        other = m3 if pid == m2.pid else m2
        assert sshd_connections(menv) == before + 1, "both borrowers connected"
        assert tcp_conns_of(other.pid, menv.sshd.port) == []
    finally:
        cleanup(m1, m2, m3)


STATUS_LINE = re.compile(
    r"^(?P<mp>/\S*) \((?P<role>[^)]*)\): (?P<state>connected|reconnecting); "
    r"(?P<flight>\d+) requests in flight; sent (?P<sent>[\d.]+ \w+), "
    r"received (?P<recv>[\d.]+ \w+); (?P<rc>\d+) reconnects; "
    r"cache hits (?P<hits>n/a|(?P<rate>[\d.]+)% of (?P<lookups>\d+))$")


def status_lines(text):
    """{mountpoint: the fields of its line} from hashi -O status."""
    out = {}
    for ln in text.splitlines():
        m = STATUS_LINE.match(ln)
        if m:
            out[m["mp"]] = m.groupdict()
    return out


def some_lookups(path):
    """Metadata work the cache sees: lookups (some of names that are not
    there) and directory listings."""
    p = Path(path)
    d = p / "lk"
    d.mkdir(exist_ok=True)
    for i in range(5):
        (d / f"f{i}").write_bytes(b"x")
    for _ in range(2):
        sorted(os.listdir(d))
        for i in range(8):
            try:
                os.stat(d / f"f{i}")
            except FileNotFoundError:
                pass
    return True


def test_status_reports_each_mount(menv):
    """-O status: every mount (the master's and each borrower's) with its
    own engine's state, requests in flight, bytes, reconnects and its own
    cache's hit rate, which the borrowers report to the master."""
    a = menv.root
    cp = ctl_path(menv.base, a, "status")
    opts = CM + [f"ControlPath={cp}"]
    m1 = menv.mount("root", "openssh", export=menv.new_dir("exp", owner=a), opts=opts)
    m2 = menv.mount("root", "openssh", export=menv.new_dir("exp", owner=a), opts=opts)
    m3 = menv.mount("root", "openssh", export=menv.new_dir("exp", owner=a), opts=opts)
    try:
        for m in (m1, m2, m3):
            assert m.do(some_lookups, m.path)
        r = hashi_O(menv, a, "status", [f"ControlPath={cp}"])
        print(r.stdout)
        assert r.returncode == 0, r.stderr
        assert "2 borrowed channel(s)" in r.stdout
        lines = status_lines(r.stdout)
        assert set(lines) >= {str(m.path) for m in (m1, m2, m3)}, r.stdout
        assert lines[str(m1.path)]["role"] == "the master's own mount"
        for m in (m2, m3):
            assert lines[str(m.path)]["role"] == f"borrower, pid {m.pid}", r.stdout
        for m in (m1, m2, m3):
            ln = lines[str(m.path)]
            assert ln["state"] == "connected"
            assert ln["rate"] is not None, f"no cache figures for {m.path}: {r.stdout}"
            assert 0.0 <= float(ln["rate"]) <= 100.0
            assert int(ln["lookups"]) > 0
            assert ln["rc"] == "0"
            assert not ln["recv"].startswith("0 "), r.stdout
        # a borrower's own figures, not the master's: more work on m2 only
        before = {m: int(lines[str(m.path)]["lookups"]) for m in (m1, m2, m3)}
        assert m2.do(some_lookups, m2.path)
        r = hashi_O(menv, a, "status", [f"ControlPath={cp}"])
        lines = status_lines(r.stdout)
        assert int(lines[str(m2.path)]["lookups"]) > before[m2], r.stdout
        assert int(lines[str(m3.path)]["lookups"]) == before[m3], r.stdout
    finally:
        cleanup(m1, m2, m3)


def sshd_only(pids):
    """The sshd processes among pids. Their children (the user's shell
    starting sftp-server, the sftp-servers) are left to end on their own:
    SIGKILL there can cut short a shell start-up that holds a lock (pyenv's
    rehash in root's .bashrc does) and leave it held."""
    def comm(p):
        try:
            return Path(f"/proc/{p}/comm").read_text().strip()
        except OSError:
            return ""
    return [p for p in pids if comm(p) == "sshd"]


def stop_sshd(d):
    """The whole server goes at once: every session's sshd processes
    (SIGKILL) and the listener."""
    from test_reconnect import _ppids, _subtree, _wait_gone
    pids = sshd_only(_subtree(d.pid, _ppids()))
    d.kill(pids[1:])
    os.kill(d.pid, signal.SIGTERM)
    _wait_gone(pids[:1], "the sshd listener to exit")
    d.pid = None


@pytest.fixture(scope="module")
def fault_sshd(menv):
    """A private sshd (test_reconnect's) whose sessions we may kill and which
    we may restart on the same port."""
    from test_reconnect import FaultSshd
    d = FaultSshd(menv.base / "sshd-fault", menv.authorized_keys).start()
    yield d
    d.shutdown()


@pytest.mark.parametrize("how", ["kill_session", "restart_sshd", "long_outage"])
def test_master_connection_breaks_reconnects_once(menv, fault_sshd, how):
    """The master's connection breaks (its sshd session is killed, or the
    whole sshd restarts, or is away for a while; the master itself lives):
    the master logs in once more, for everyone; the borrowers re-borrow
    from it (no login of their own), and files they held open across the
    break go on working (handles reopened, requests sent again).

    long_outage: the server is away for longer than a borrower waits for
    the master's answer (20 s) and back before the master's next attempt
    (its back-off: 1, 2, 4, 8, 16 s): a borrower that then logged in on its
    own (as it did) would make more than one login. The pause is the
    outage being tested."""
    a = menv.root
    d = fault_sshd
    # (no %C: hashi -O below finds it whatever port it is given)
    cp = ctl_path(menv.base, a, f"break-{how}").replace("%C", "m")
    extra = menv.ssh_opts(a, port=d.port, known_hosts=d.known_hosts)
    opts = CM + [f"ControlPath={cp}", "ServerAliveInterval=2"]
    export = menv.new_dir("exp", owner=a)
    data = os.urandom(300000)
    (Path(export) / "ro").write_bytes(data)
    mounts, files = [], []
    try:
        for _ in range(3):
            mounts.append(menv.mount("root", "openssh", export=export, extra=extra,
                                     opts=opts))
        m1, m2, m3 = mounts
        # files open across the break: one written on m2, one read on m3
        w = open(m2.path / "held", "w+b")
        files.append(w)
        w.write(b"A" * 70000)
        w.flush()
        os.fsync(w.fileno())
        r3 = open(m3.path / "ro", "rb")
        files.append(r3)
        assert r3.read(1000) == data[:1000]
        before = d.accepted()
        assert tcp_conns_of(m2.pid, d.port) == tcp_conns_of(m3.pid, d.port) == []
        if how == "kill_session":
            d.kill(sshd_only(d.sessions_of(m1.pid)))
        else:
            stop_sshd(d)
            if how == "long_outage":
                time.sleep(17)
            d._launch()

        # the borrowers' open files, then new work on every mount
        w.write(b"B" * 70000)
        w.flush()
        os.fsync(w.fileno())
        w.seek(0)
        assert w.read(10) == b"A" * 10
        assert r3.read() == data[1000:]
        r3.seek(123456)
        assert r3.read(100) == data[123456:123556]
        w.close()
        assert (Path(export) / "held").read_bytes() == b"A" * 70000 + b"B" * 70000
        for m in mounts:
            assert m.do(write_read, m.path / f"after{m.pid}", b"after") == b"after"

        assert d.accepted() == before + 1, "not one reconnect for everyone"
        assert master_pid(menv, a, cp) == m1.pid
        assert len(tcp_conns_of(m1.pid, d.port)) == 1
        assert tcp_conns_of(m2.pid, d.port) == []
        assert tcp_conns_of(m3.pid, d.port) == []
        st = hashi_O(menv, a, "status", [f"ControlPath={cp}"])
        print(st.stdout)
        lines = status_lines(st.stdout)
        assert lines[str(m1.path)]["rc"] == "1", st.stdout
        for m in (m2, m3):
            assert int(lines[str(m.path)]["rc"]) >= 1, st.stdout
            assert lines[str(m.path)]["state"] == "connected", st.stdout
    finally:
        for f in files:
            try:
                f.close()
            except OSError:
                pass
        cleanup(*mounts)


def test_O_check_exit_stop(menv):
    """-O check, exit and stop: ssh's messages and exit codes."""
    who = "root"
    a = menv.account(who)
    cp = ctl_path(menv.base, a, "ocmd")
    co = [f"ControlPath={cp}"]
    r = hashi_O(menv, a, "check", co)
    assert r.returncode == 255
    assert "Control socket connect(" in r.stderr and \
        "): No such file or directory" in r.stderr, r.stderr
    export = menv.new_dir("exp", owner=a)
    m1 = menv.mount(who, "openssh", export=export, opts=CM + co)
    try:
        r = hashi_O(menv, a, "check", co)
        assert r.returncode == 0, r.stderr
        assert r.stderr.strip() == f"Master running (pid={m1.pid})"
        r = hashi_O(menv, a, "nonsense", co)
        assert r.returncode == 255
        assert "Invalid multiplex command." in r.stderr

        # stop: no more listening; the mount goes on
        m2 = menv.mount(who, "openssh", export=export, opts=CM + co)
        r = hashi_O(menv, a, "stop", co)
        assert r.returncode == 0 and r.stderr.strip() == "Stop listening request sent."
        assert hashi_O(menv, a, "check", co).returncode == 255
        assert m1.do(write_read, m1.path / "s", b"s") == b"s"
        assert m2.do(write_read, m2.path / "s2", b"s") == b"s"
        cleanup(m2)

        # exit: the master leaves (its mount with it)
        m3 = menv.mount(who, "openssh", export=export, opts=CM + co)
        r = hashi_O(menv, a, "exit", co)
        assert r.returncode == 0 and r.stderr.strip() == "Exit request sent.", r.stderr
        assert wait_pid(m3.pid, 30) == 0
        m3.exit_status = 0
        assert not mounted(m3.path)
        r = hashi_O(menv, a, "check", co)
        assert r.returncode == 255 and "No such file or directory" in r.stderr
    finally:
        cleanup(m1)


def test_other_uid_cannot_use_the_socket(menv):
    """The socket is 0600 in a 0700 directory, and even when opened up the
    master speaks only to its own uid (SO_PEERCRED)."""
    import socket as so
    root, user = menv.root, menv.user
    cp = ctl_path(menv.base, root, "uid")
    m1 = menv.mount("root", "openssh", opts=CM + [f"ControlPath={cp}"])
    try:
        sock = [p for p in Path(cp).parent.iterdir() if p.is_socket()]
        assert len(sock) == 1
        assert (sock[0].stat().st_mode & 0o777) == 0o600
        assert (Path(cp).parent.stat().st_mode & 0o777) == 0o700
        # open the door wide: the master still refuses another uid
        os.chmod(Path(cp).parent, 0o755)
        os.chmod(sock[0], 0o666)

        def talk(path):
            s = so.socket(so.AF_UNIX, so.SOCK_STREAM)
            s.settimeout(10)
            s.connect(path)
            try:
                return s.recv(100)
            except ConnectionResetError:
                return b""

        assert run_as(user, talk, str(sock[0])) == b""
        assert talk(str(sock[0])).startswith(b"\0\0\0")  # our HELLO
        r = hashi_O(menv, user, "check", [f"ControlPath={sock[0]}"])
        assert r.returncode == 255
        # and a mount of theirs does not borrow it
        before = sshd_connections(menv)
        m2 = menv.mount("user", "openssh", opts=CM + [f"ControlPath={sock[0]}"])
        assert sshd_connections(menv) == before + 1
        cleanup(m2)
    finally:
        cleanup(m1)


def test_stale_socket_is_replaced(menv):
    import socket as so
    a = menv.root
    cp = ctl_path(menv.base, a, "stale")
    path = cp.replace("%C", "")  # a path without tokens: we know its name
    s = so.socket(so.AF_UNIX, so.SOCK_STREAM)
    s.bind(path)
    s.close()  # left behind, as by a master that died
    assert Path(path).is_socket()
    m1 = menv.mount("root", "openssh", opts=CM + [f"ControlPath={path}"])
    try:
        assert master_pid(menv, a, path) == m1.pid
    finally:
        cleanup(m1)


def test_simultaneous_start_elects_one_master(menv):
    a = menv.root
    cp = ctl_path(menv.base, a, "race")
    export = menv.new_dir("exp", owner=a)
    before = sshd_connections(menv)
    mounts, errors = [], []

    def go():
        try:
            mounts.append(menv.mount("root", "openssh", export=export,
                                     opts=CM + [f"ControlPath={cp}"]))
        except BaseException as e:  # noqa: B902
            errors.append(e)

    threads = [threading.Thread(target=go) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, errors
        assert sshd_connections(menv) == before + 1
        with_tcp = [m for m in mounts if tcp_conns_of(m.pid, menv.sshd.port)]
        assert len(with_tcp) == 1
        assert master_pid(menv, a, cp) == with_tcp[0].pid
    finally:
        masters = [m for m in mounts if tcp_conns_of(m.pid, menv.sshd.port)]
        cleanup(*(masters + [m for m in mounts if m not in masters]))


def test_controlmaster_no_never_touches_the_socket(menv):
    """A master at the default ControlPath (~/.ssh/hashi/%C); mounts with
    ControlMaster=no (the default, as ssh's) make their own connection."""
    u = menv.user
    m1 = menv.mount("user", "openssh", opts=CM)
    try:
        d = Path(u.home) / ".ssh" / "hashi"
        assert (d.stat().st_mode & 0o777) == 0o700
        socks = [p for p in d.iterdir() if p.is_socket()]
        assert socks
        before = sshd_connections(menv)
        m2 = menv.mount("user", "openssh")
        m3 = menv.mount("user", "openssh", opts=["ControlMaster=no"])
        assert sshd_connections(menv) == before + 2
        assert len(tcp_conns_of(m2.pid, menv.sshd.port)) == 1
        assert len(tcp_conns_of(m3.pid, menv.sshd.port)) == 1
        r = hashi_O(menv, "user", "status")
        assert r.returncode == 0, r.stderr
        assert "0 borrowed channel(s)" in r.stdout
        cleanup(m2, m3)
    finally:
        cleanup(m1)


def test_controlpersist_keeps_an_unmounted_master(menv):
    """ControlPersist=yes: with no borrower at all, the master outlives its
    mount; a later mount borrows from it (no login); -O exit ends it."""
    a = menv.root
    cp = ctl_path(menv.base, a, "persist")
    opts = CM + [f"ControlPath={cp}", "ControlPersist=yes"]
    export = menv.new_dir("exp", owner=a)
    m1 = menv.mount("root", "openssh", export=export, opts=opts)
    mounts = [m1]
    try:
        r = run_as_cmd(a, ["fusermount3", "-u", str(m1.path)])
        assert r.returncode == 0, r.stderr
        assert master_pid(menv, a, cp) == m1.pid
        before = sshd_connections(menv)
        m2 = menv.mount("root", "openssh", export=export, opts=opts)
        mounts.append(m2)
        assert sshd_connections(menv) == before
        assert m2.do(write_read, m2.path / "p", b"p") == b"p"
        assert unmount(m2) == 0
        assert master_pid(menv, a, cp) == m1.pid, "the persisting master left"
        r = hashi_O(menv, a, "exit", [f"ControlPath={cp}"])
        assert r.returncode == 0, r.stderr
        assert wait_pid(m1.pid, 30) == 0
        m1.exit_status = 0
    finally:
        cleanup(*mounts)


def test_a_named_socket_is_found_before_ssh_G(menv):
    """A borrower whose command line names the socket (a literal ControlPath,
    ControlMaster=auto: ssh takes the first -o value over ssh_config's)
    borrows without running ssh -G to resolve the target, which would be
    most of its time to mount; one whose ControlPath needs the resolved
    target (%C) still asks ssh -G."""
    a = menv.user
    ctl = menv.new_dir("ctl", owner=a, mode=0o700)
    bin_dir = menv.new_dir("fakessh", owner=a)
    calls = bin_dir / "calls"
    fake = bin_dir / "ssh"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec /usr/bin/ssh "$@"\n')
    fake.chmod(0o755)
    env = dict(hashi_env(a), PATH=f"{bin_dir}:/usr/local/bin:/usr/bin:/bin")
    export = menv.new_dir("exp", owner=a)
    started = []

    def mount(cp):
        mp = menv.mountpoint(a)
        r = menv.run_hashi(a, [f"{a.name}@127.0.0.1:{export}", str(mp), *menv.ssh_opts(a),
                               "-o", "ControlMaster=auto", "-o", f"ControlPath={cp}"],
                           env=env)
        assert r.returncode == 0, r.stderr
        pids = find_daemon(menv.hashi, mp)
        assert len(pids) == 1
        started.append((mp, pids[0]))
        return mp

    def ssh_calls():
        return calls.read_text().splitlines() if calls.exists() else []

    try:
        before = sshd_connections(menv)
        literal = str(ctl / "s")
        m1 = mount(literal)
        assert any(c.startswith("-G ") for c in ssh_calls()), "the master resolves"
        n = len(ssh_calls())
        m2 = mount(literal)
        assert ssh_calls()[n:] == [], "the borrower ran ssh"
        assert sshd_connections(menv) == before + 1
        r = run_as_cmd(a, ["sh", "-c", f"echo x > {m2}/f && cat {m1}/f"])
        assert r.returncode == 0 and r.stdout == "x\n", r.stderr
        # %C is the resolved host, port and user: only ssh -G knows them
        token = str(ctl / "t-%C")
        mount(token)
        mount(token)
        assert len([c for c in ssh_calls()[n:] if c.startswith("-G ")]) == 2
    finally:
        for mp, _ in reversed(started):
            if mounted(mp):
                run_as_cmd(a, ["fusermount3", "-u", str(mp)])
        for _, pid in reversed(started):
            wait_pid(pid, 30)
