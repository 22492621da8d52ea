"""hashi's control socket (ControlMaster, ControlPath, ControlPersist, -O):
one SSH connection shared by several mounts of the same user@host:port.

Real sshd, real FUSE mounts (mountfix.py). A borrowed mount makes no TCP
connection of its own: we count the sshd's accepted connections in its log
("Connection from 127.0.0.1 port N on ..."), and look at ss -tnp."""

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from mountfix import *  # noqa: F401,F403
from mountfix import run_as_cmd, force_unmount

CM = ["ControlMaster=auto"]


def sshd_connections(env):
    return env.sshd.log_text().count("Connection from 127.0.0.1 port")


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


def write_read(path, data):
    p = Path(path)
    p.write_bytes(data)
    return p.read_bytes()


def test_three_mounts_share_one_connection(menv):
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
    run_as_cmd(a, ["fusermount3", "-u", str(m1.path)])
    assert not mounted(m1.path)
    big = os.urandom(3 * 1024 * 1024)
    assert m2.do(write_read, m2.path / "big", big) == big
    assert m3.do(lambda p: Path(p).read_bytes(), m3.path / "big") == big
    assert len(tcp_conns_of(m1.pid, menv.sshd.port)) == 1, "the master left"
    assert sshd_connections(menv) == after1
    r = hashi_O(menv, a, "status", [f"ControlPath={cp}"])
    print(r.stdout)
    assert r.returncode == 0
    assert str(m2.path) in r.stdout and str(m3.path) in r.stdout
    # the last borrower leaves: the master (ControlPersist=no) follows
    assert m2.unmount() == 0
    assert m3.unmount() == 0
    assert wait_pid(m1.pid, 30) == 0
    m1.exit_status = 0
