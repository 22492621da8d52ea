"""Time to mount: the first mount of a host (it connects, logs in and
becomes the ControlMaster) beside the later ones that borrow a channel on
its connection, mounted back-to-back (each right after the one before) and
spaced (GAP seconds apart, so the master's spare channel is ready).

Not part of the test run (its name does not start with test_); run it by
name, with -s to see the table:

    HASHI_BUILD_DIR=/tmp/hb /usr/bin/python3 -m pytest -q -s \\
        tests/integration/bench_mount_times.py

HASHI_BENCH_ROUNDS (default 7) rounds of one master and
HASHI_BENCH_BORROWERS (3) borrowers each; HASHI_BENCH_GAP (default 1.0)
seconds between the spaced mounts; HASHI_BENCH_WHO (user, or root) the
account (what its shell runs at login is part of every session's start:
the sshd runs sftp-server through it). The time is hashi's own, from exec to its exit once the mount is
up (it then runs in the background), as a user typing the command sees it: a small launcher running
as the account takes it around posix_spawn and waitpid (forking the test process itself, which is
large, would add a few milliseconds to every mount, more when the host is busy).
The median and the range over the rounds are printed; nothing is asserted
about them (the host is shared), only that the borrowers did borrow.
"""

import os
import statistics
import time

from mountfix import *  # noqa: F401,F403
from mountfix import find_daemon, hashi_env, run_as_cmd

ROUNDS = int(os.environ.get("HASHI_BENCH_ROUNDS", "7"))
BORROWERS = int(os.environ.get("HASHI_BENCH_BORROWERS", "3"))
GAP = float(os.environ.get("HASHI_BENCH_GAP", "1.0"))
WHO = os.environ.get("HASHI_BENCH_WHO", "user")


# argv: OUT HASHI ARGS...; prints the milliseconds from spawn to exit,
# exits with hashi's status; hashi's stdout and stderr go to OUT.
LAUNCH = r"""
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
acts = [(os.POSIX_SPAWN_DUP2, fd, 1), (os.POSIX_SPAWN_DUP2, fd, 2)]
t0 = time.monotonic()
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ, file_actions=acts)
_, st = os.waitpid(pid, 0)
print(f"{(time.monotonic() - t0) * 1000:.3f}")
sys.exit(os.waitstatus_to_exitcode(st))
"""


def logins(env):
    return env.sshd.log_text().count("Accepted publickey for ")


def mount_once(env, a, export, cp):
    """Mount; returns (milliseconds, daemon pid, mount point)."""
    mp = env.mountpoint(a)
    args = [f"{a.name}@127.0.0.1:{export}", str(mp), *env.ssh_opts(a),
            "-o", "ControlMaster=auto", "-o", f"ControlPath={cp}"]
    out = env.new_dir("out", owner=a) / "hashi.out"
    r = run_as_cmd(a, ["/usr/bin/python3", "-c", LAUNCH, str(out), env.hashi, *args],
                   env=hashi_env(a))
    assert r.returncode == 0, out.read_text()
    ms = float(r.stdout)
    pids = find_daemon(env.hashi, mp)
    assert len(pids) == 1
    return ms, pids[0], mp


def unmount_all(a, mounts):
    for _, pid, mp in reversed(mounts):  # borrowers first, then the master
        run_as_cmd(a, ["fusermount3", "-u", str(mp)])
    for _, pid, _ in reversed(mounts):
        wait_pid(pid, 30)


def one_round(env, a, gap):
    d = env.new_dir("ctl", owner=a, mode=0o700)
    cp = str(d / "s")
    export = env.new_dir("exp", owner=a)
    before = logins(env)
    mounts = []
    try:
        for i in range(1 + BORROWERS):
            if i > 0 and gap:
                time.sleep(gap)  # the spacing is what is measured
            mounts.append(mount_once(env, a, export, cp))
        assert logins(env) == before + 1, "a borrower logged in on its own"
        return [ms for ms, _, _ in mounts]
    finally:
        unmount_all(a, mounts)


def describe(label, xs):
    return (f"{label:<26} median {statistics.median(xs):7.1f} ms"
            f"   (min {min(xs):6.1f}, max {max(xs):6.1f}, n={len(xs)})")


def test_mount_times(menv):
    a = menv.account(WHO)
    rows = {}
    for how, gap in (("back-to-back", 0.0), (f"spaced {GAP:g} s", GAP)):
        firsts, borrowed = [], [[] for _ in range(BORROWERS)]
        for _ in range(ROUNDS):
            t = one_round(menv, a, gap)
            firsts.append(t[0])
            for i, x in enumerate(t[1:]):
                borrowed[i].append(x)
        rows[how] = (firsts, borrowed)
    lines = [f"\ntime to mount as {a.name}, {ROUNDS} rounds (hashi {menv.hashi}):"]
    for how, (firsts, borrowed) in rows.items():
        lines.append(f"  {how}:")
        lines.append("    " + describe("first (master, login)", firsts))
        for i, xs in enumerate(borrowed):
            ratio = statistics.median(firsts) / statistics.median(xs)
            lines.append("    " + describe(f"borrower {i + 1}", xs) + f"   {ratio:5.1f}x faster")
    print("\n".join(lines))
