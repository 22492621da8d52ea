"""Client hygiene: passwords are never logged and not kept in memory once
no reconnect can need them; host keys are checked unless the user says
otherwise; what hashi creates is private (0600 files in 0700 directories)."""

import os
import re
import stat
import subprocess

import pytest

import mountfix
from mountfix import *  # noqa: F401,F403  (fixtures: menv, ...)
from mountfix import FUSERMOUNT, TEST_USER, hashi_env, mounted


def _readable_memory(pid):
    """The bytes of every readable private mapping of pid."""
    out = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            path = fields[5] if len(fields) > 5 else ""
            if "r" not in fields[1] or path in ("[vvar]", "[vsyscall]") or path.startswith("/"):
                continue
            if hi - lo > 1 << 30:  # AddressSanitizer's shadow: terabytes, mostly unbacked
                continue
            try:
                mem.seek(lo)
                out.append(mem.read(hi - lo))
            except OSError:
                pass
    return b"".join(out)


@pytest.mark.parametrize("reconnect", [False, True])
def test_password_not_logged_and_wiped(menv, reconnect):
    """-o password_stdin with -d (every SFTP request logged): the password
    is never in the log. With noreconnect it is not in the daemon's memory
    once mounted (stack, heap, libssh2's buffers); with reconnect (the
    default) one copy is kept to log in again, which shows that the scan
    finds it."""
    u = menv.user
    export = menv.new_dir("exp", owner=u)
    (export / "hello").write_text("pw")
    mnt = menv.mountpoint("user")
    errpath = mnt.parent / (mnt.name + ".stderr")
    argv = [menv.hashi, f"{u.name}@127.0.0.1:{export}", str(mnt), "-d",
            "-F", str(menv.ssh_config), "-o", f"Port={menv.sshd.port}",
            "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password",
            "-o", f"UserKnownHostsFile={menv.sshd.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
            "-o", "password_stdin" + ("" if reconnect else ",noreconnect")]
    with open(errpath, "wb") as err:
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err,
                             env=hashi_env(u), user=u.uid, group=u.gid, extra_groups=[],
                             cwd="/", start_new_session=True)
        try:
            p.stdin.write((mountfix.PASSWORD + "\n").encode())
            p.stdin.close()
            mountfix._wait_for(lambda: mounted(mnt) or p.poll() is not None, "the mount", 60)
            assert mounted(mnt), errpath.read_text()
            mem = _readable_memory(p.pid)
            assert len(mem) > 100000
            copies = mem.count(mountfix.PASSWORD.encode())
            assert copies == (1 if reconnect else 0), f"{copies} copies of the password in memory"
        finally:
            subprocess.run([FUSERMOUNT, "-u", str(mnt)], capture_output=True)
            status = p.wait(timeout=30)
    log = errpath.read_text(errors="replace")
    assert "sftp " in log and "debug1" in log, "the debug log was on"
    assert mountfix.PASSWORD not in log
    assert status == 0, log


def test_unknown_host_refused_by_default(menv):
    """No StrictHostKeyChecking given and nobody at a terminal: an unknown
    host key stops the mount (ssh's default, ask, cannot ask)."""
    kh = menv.new_dir("kh") / "known_hosts"
    kh.write_text("")
    mp = menv.mountpoint("root")
    given = menv.ssh_opts("root", known_hosts=kh)
    opts = []
    for flag, val in zip(given[::2], given[1::2]):
        if not val.startswith("StrictHostKeyChecking"):
            opts += [flag, val]
    assert not any("StrictHostKeyChecking" in o for o in opts)
    r = menv.run_hashi("root", [f"root@127.0.0.1:{menv.new_dir('exp')}", str(mp), *opts])
    assert r.returncode != 0
    assert "Host key verification failed" in r.stderr
    assert not mounted(mp)
    assert kh.read_text() == ""


def test_known_hosts_made_private(menv):
    """accept-new into a known_hosts in a directory that does not exist
    yet: both are made private, whatever the umask."""
    kh = menv.new_dir("khdir") / "ssh" / "known_hosts"
    old = os.umask(0)
    try:
        m = menv.mount("root", "openssh",
                       extra=menv.ssh_opts("root", known_hosts=kh, strict="accept-new"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(kh.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(kh).st_mode) == 0o600
    assert menv.sshd.host_pub[1] in kh.read_text()
    assert m.unmount() == 0
