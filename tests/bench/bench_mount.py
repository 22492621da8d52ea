#!/usr/bin/python3
"""Side-by-side benchmark of the mounts: sshfs, rclone's sftp mount and hashi.

One command runs the whole set against all three, each with its default
options (rclone with --vfs-cache-mode off), all talking to the same throwaway
OpenSSH sshd on 127.0.0.1 (its own port, host key and authorized_keys, in
its own mount namespace; OpenSSH's sftp-server), on the same server-side
files.  Every measurement takes a fresh mount; the tools take turns (the
order rotates from one measurement and repetition to the next); each figure
is the median of --repeat runs.  The link is loopback, or a userspace proxy
that delays every chunk by 10 ms each way (a 20 ms round trip), or both.

Rows: sequential read and write, fio 4 KiB random reads (iodepth 1; 4 jobs),
untar of many 4 KiB files, `cp -r` of that tree within the mount, `find`
and `ls -lR` cold and warm, `rm -rf`, `git clone` of a many-file repository
and `git status` cold and warm in it; then `ssh cat` of the same file through
the same link, what libssh2 alone moves over one channel, and the CPU seconds
per GiB moved of each mount's processes (hashi's daemon; sshfs and its ssh;
rclone).  The last column is hashi's ratio to the better of the two peers,
higher is better for hashi (for times: best peer's time / hashi's time).

Must run as root (mounts, drop_caches).  Exit status 0 when everything ran
(whatever the figures: benchmarks are not tests), 1 when a hashi
measurement failed or returned wrong data (a peer's failure is only
reported), 2 on bad arguments, 77 (meson's "skip") when not root or
hashi / sshd / fio is missing.
"""
import argparse
import hashlib
import json
import os
import pwd
import re
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3"
DELAYPROXY = os.path.join(HERE, "delayproxy.py")
SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
FUSERMOUNT = shutil.which("fusermount3") or "/usr/bin/fusermount3"
TICK = os.sysconf("SC_CLK_TCK")
GiB = 1 << 30

# Sizes per preset and link.  "full" is the set (the WAN repository
# is smaller than the loopback one, as the untar is: 2,000 files through
# 20 ms take sshfs many minutes per run).
PRESETS = {
    "tiny": {"loopback": dict(seq=4 << 20, files=60, repo=40, fio=1),
             "wan": dict(seq=2 << 20, files=20, repo=20, fio=1)},
    "small": {"loopback": dict(seq=64 << 20, files=1000, repo=400, fio=3),
              "wan": dict(seq=32 << 20, files=100, repo=100, fio=3)},
    "full": {"loopback": dict(seq=1 << 30, files=5000, repo=2000, fio=10),
             "wan": dict(seq=256 << 20, files=500, repo=500, fio=10)},
}

# Measurement groups and the rows each produces, in table order.
GROUPS = [
    ("seqread", ["seqread"]),
    ("seqwrite", ["seqwrite"]),
    ("randread", ["randread"]),
    ("randread4", ["randread4"]),
    ("untar", ["untar"]),
    ("cpr", ["cpr"]),
    ("find", ["find-cold", "find-warm"]),
    ("lsr", ["lsr-cold", "lsr-warm"]),
    ("rm", ["rm"]),
    ("git", ["clone", "status-cold", "status-warm"]),
]
EXTRA_ROWS = ["sshcat", "libssh2"]
ALL_ROWS = [r for _, rows in GROUPS for r in rows] + EXTRA_ROWS
# unit, higher-is-better
UNITS = {"seqread": ("MB/s", True), "seqwrite": ("MB/s", True),
         "randread": ("IOPS", True), "randread4": ("IOPS", True)}
TOOLS = ("sshfs", "rclone", "hashi")


class BenchError(Exception):
    pass


class Interrupted(BaseException):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def parse_size(s):
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(i?B?)\s*", s, re.I)
    if not m:
        raise argparse.ArgumentTypeError("bad size %r (e.g. 1GiB, 64MiB, 4096)" % s)
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[m.group(2).upper()]


def human(n):
    for shift, name in ((30, "GiB"), (20, "MiB"), (10, "KiB")):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return "%d %s" % (n >> shift, name)
    return "%d B" % n


# --------------------------------------------------------------------------
# processes and mounts

def mount_table():
    """{mountpoint: fstype} from /proc/self/mountinfo (top-most wins)."""
    out = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            mp = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), left.split()[4])
            out[mp] = right.split()[0]
    return out


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pid, timeout):
    """Wait (on a pidfd, not by sleeping) until pid has exited."""
    try:
        fd = os.pidfd_open(pid)
    except (ProcessLookupError, OSError):
        return True
    try:
        p = select.poll()
        p.register(fd, select.POLLIN)
        deadline = time.monotonic() + timeout
        while pid_alive(pid):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            p.poll(min(left, 0.5) * 1000)  # a zombie never gets "readable"
    finally:
        os.close(fd)
    return True


def wait_until(cond, what, timeout, alive=None):
    """Poll a cheap condition with backoff; alive() False aborts early."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while not cond():
        if alive is not None and not alive():
            raise BenchError("%s: the process exited" % what)
        if time.monotonic() > deadline:
            raise BenchError("gave up waiting for %s" % what)
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def proc_table():
    """{pid: (ppid, session id)} of every process."""
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                out[int(d)] = (int(fields[1]), int(fields[3]))
            except (OSError, ValueError, IndexError):
                continue
    return out


def tree_cpu(pid, sid):
    """CPU seconds (user+sys, with reaped children) of pid, its descendants
    and every process of session sid: the session the mount command was
    started in, where sshfs leaves its ssh when it goes to the background."""
    procs = proc_table()
    kids = {}
    for p, (ppid, _) in procs.items():
        kids.setdefault(ppid, []).append(p)
    mine, todo = set(), [pid] + [p for p, (_, s) in procs.items() if s == sid]
    while todo:
        p = todo.pop()
        if p not in mine:
            mine.add(p)
            todo.extend(kids.get(p, []))
    total = 0
    for p in mine:
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        except (OSError, ValueError):
            pass
    return total / TICK


def find_daemon(progname, mountpoint):
    """Pids of live processes called progname with mountpoint in their args."""
    want = os.fsencode(mountpoint)
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if args and os.path.basename(args[0]) == os.fsencode(progname) and want in args[1:] \
                and pid_alive(int(d)):
            pids.append(int(d))
    return pids


def fusermount_u(path):
    for _ in range(20):
        if path not in mount_table():
            return
        r = subprocess.run([FUSERMOUNT, "-u", path], capture_output=True, text=True)
        if r.returncode == 0:
            return
        if "busy" not in r.stderr:
            break
        time.sleep(0.1)  # something (a timed-out command) still holds it
    subprocess.run([FUSERMOUNT, "-uz", path], capture_output=True)


def fstype(path):
    return subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True,
                          text=True).stdout.strip()


def drop_caches(args):
    if not args.do_drop_caches:
        return
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


# --------------------------------------------------------------------------
# the three mounts

class Mount:
    def __init__(self, tool, path, pid, sid, proc=None):
        self.tool = tool
        self.path = path
        self.pid = pid
        self.sid = sid    # the session the mount command started
        self.proc = proc  # rclone: our own child

    def cpu(self):
        return tree_cpu(self.pid, self.sid) if self.pid else 0.0

    def unmount(self):
        fusermount_u(self.path)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        elif self.pid and not wait_gone(self.pid, 30):
            os.kill(self.pid, signal.SIGKILL)
            wait_gone(self.pid, 10)
        if self.path in mount_table():
            raise BenchError("%s: %s is still mounted" % (self.tool, self.path))


class Env:
    """sshd, proxy, keys, ssh_config and the temp tree; cleans up after."""

    def __init__(self, args):
        self.args = args
        self.base = tempfile.mkdtemp(prefix="hashi-bench-mount-", dir=args.workdir)
        os.chmod(self.base, 0o755)
        self.export = os.path.join(self.base, "export")   # what the mounts see
        self.local = os.path.join(self.base, "local")     # sources, references
        self.mnt = os.path.join(self.base, "mnt")
        self.home = os.path.join(self.base, "home")
        for d in (self.export, self.local, self.mnt, self.home):
            os.mkdir(d)
        self.sshd_pid = None
        self.proxy = None
        self.ports = {}
        self.mounts = []
        self.children = []
        self.seq = 0
        self.env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": self.home,
                    "LANG": "C.UTF-8", "GIT_CONFIG_NOSYSTEM": "1",
                    # the clone on the mount belongs to the server's account
                    "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "safe.directory",
                    "GIT_CONFIG_VALUE_0": "*"}

    # -- set-up
    def keygen(self, path):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hashi-bench",
                        "-f", path], check=True, capture_output=True)

    def ensure_user(self):
        """The server-side account: not root, whose ~/.bashrc on this kind of
        machine may run slow set-up (pyenv) for every ssh command; /bin/sh
        reads nothing for a non-interactive command."""
        name = self.args.user
        try:
            pwd.getpwnam(name)
        except KeyError:
            # (another run may be making it at the same moment)
            subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], capture_output=True)
            # unlocked for key logins (sshd with UsePAM no refuses a locked one)
            subprocess.run(["usermod", "-p", "*", name], check=True, capture_output=True)
        pw = pwd.getpwnam(name)
        self.user, self.uid, self.gid = name, pw.pw_uid, pw.pw_gid

    def give(self, path):
        """Make path (recursively) the server-side account's."""
        os.lchown(path, self.uid, self.gid)
        for root, dirs, files in os.walk(path):
            for n in dirs + files:
                os.lchown(os.path.join(root, n), self.uid, self.gid)

    def start(self):
        self.ensure_user()
        self.give(self.export)
        d = os.path.join(self.base, "sshd")
        os.mkdir(d)
        self.key = os.path.join(d, "client_ed25519")
        self.keygen(self.key)
        hostkey = os.path.join(d, "host_ed25519")
        self.keygen(hostkey)
        authorized = os.path.join(d, "authorized_keys")
        shutil.copyfile(self.key + ".pub", authorized)
        self.sshd_pidfile = os.path.join(d, "sshd.pid")
        self.sshd_log = os.path.join(d, "sshd.log")
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        last = ""
        for _ in range(5):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            cfg = os.path.join(d, "sshd_config")
            with open(cfg, "w") as f:
                f.write("ListenAddress 127.0.0.1:%d\nHostKey %s\nPidFile %s\n"
                        "AuthorizedKeysFile %s\nAuthenticationMethods publickey\n"
                        "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                        "UsePAM no\nPermitRootLogin yes\nStrictModes no\nUseDNS no\n"
                        "PrintMotd no\nPrintLastLog no\nMaxStartups 100\nMaxSessions 100\n"
                        "Subsystem sftp %s\n" % (port, hostkey, self.sshd_pidfile, authorized,
                                                 SFTP_SERVER))
            # Its own mount namespace, made before any mount of ours: the
            # server never resolves a path into our FUSE mounts (TESTING.md's
            # loopback deadlock) and holds none of them open. FUSE mounts
            # that exist (another session's) are detached from its copy, so
            # that they do not outlive their unmount there.
            detach = ("awk '$3 ~ /^fuse($|\\.|blk)/ {print $2}' /proc/self/mounts | while read -r m;"
                      " do umount -l \"$(printf '%b' \"$m\")\" 2>/dev/null; done")
            r = subprocess.run(["unshare", "-m", "--propagation", "private", "/bin/sh", "-c",
                                detach + '; exec "$0" "$@"', SSHD, "-f", cfg,
                                "-E", self.sshd_log], capture_output=True, text=True)
            if r.returncode != 0:
                last = r.stderr
                continue
            try:
                wait_until(lambda: self._sshd_ready(port), "sshd on port %d" % port, 30)
                break
            except BenchError as e:
                last = str(e)
                self.stop_sshd()
        else:
            raise BenchError("could not start sshd: %s %s" % (last, self.read(self.sshd_log)))
        self.ports["loopback"] = port
        if "wan" in self.args.links:
            self.proxy = subprocess.Popen(
                [PY, DELAYPROXY, "--target", "127.0.0.1:%d" % port,
                 "--delay-ms", str(self.args.delay_ms)], stdout=subprocess.PIPE, text=True)
            line = self.proxy.stdout.readline()
            if not line.strip().isdigit():
                raise BenchError("delayproxy.py did not start")
            self.ports["wan"] = int(line)
        pub = open(hostkey + ".pub").read().split()
        self.known_hosts = os.path.join(d, "known_hosts")
        with open(self.known_hosts, "w") as f:
            for p in self.ports.values():
                f.write("[127.0.0.1]:%d %s %s\n" % (p, pub[0], pub[1]))
        self.ssh_config = os.path.join(d, "ssh_config")
        with open(self.ssh_config, "w") as f:
            for link, p in self.ports.items():
                f.write("Host bench-%s\n  HostName 127.0.0.1\n  Port %d\n  User %s\n"
                        "  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n"
                        "  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n"
                        "  BatchMode yes\n  LogLevel ERROR\n"
                        % (link, p, self.user, self.key, self.known_hosts))
        self.rclone_conf = os.path.join(d, "rclone.conf")
        open(self.rclone_conf, "w").close()

    def _sshd_ready(self, port):
        try:
            self.sshd_pid = int(open(self.sshd_pidfile).read())
        except (OSError, ValueError):
            if "fatal" in self.read(self.sshd_log):
                raise BenchError("sshd failed: " + self.read(self.sshd_log))
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            return True
        except OSError:
            return False

    @staticmethod
    def read(path):
        try:
            with open(path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    # -- tear-down (also on Ctrl-C and exceptions)
    def stop_sshd(self):
        if self.sshd_pid:
            try:
                os.kill(self.sshd_pid, signal.SIGTERM)
                wait_gone(self.sshd_pid, 10)
            except ProcessLookupError:
                pass
            self.sshd_pid = None

    def cleanup(self):
        for m in list(self.mounts):
            try:
                m.unmount()
            except Exception as e:  # noqa: BLE001 - clean up what we can
                log("cleanup: %s" % e)
        for mp in [p for p in mount_table() if p.startswith(self.base + "/")]:
            subprocess.run([FUSERMOUNT, "-uz", mp], capture_output=True)
        for m in self.mounts:
            if m.pid and pid_alive(m.pid):
                os.kill(m.pid, signal.SIGKILL)
        for p in self.children + ([self.proxy] if self.proxy else []):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.stop_sshd()
        if self.args.keep:
            log("kept %s" % self.base)
        elif not any(p.startswith(self.base + "/") for p in mount_table()):
            shutil.rmtree(self.base, ignore_errors=True)
        else:
            log("left %s: something is still mounted under it" % self.base)

    # -- mounts
    def mountpoint(self, tool):
        self.seq += 1
        p = os.path.join(self.mnt, "%s-%04d" % (tool, self.seq))
        os.mkdir(p)
        return p

    def mount(self, tool, link, remote):
        """A fresh mount of the server's directory remote, by tool."""
        a = self.args
        mp = self.mountpoint(tool)
        host = "bench-%s" % link
        proc = None
        if tool == "sshfs":
            argv = [a.sshfs, "%s:%s" % (host, remote), mp, "-F", self.ssh_config] + a.sshfs_opts
        elif tool == "hashi":
            argv = [a.hashi, "%s:%s" % (host, remote), mp, "-F", self.ssh_config] + a.hashi_opts
        elif tool == "rclone":
            argv = [a.rclone, "mount", ":sftp:" + remote, mp, "--config", self.rclone_conf,
                    "--sftp-host", "127.0.0.1", "--sftp-port", str(self.ports[link]),
                    "--sftp-user", self.user, "--sftp-key-file", self.key,
                    "--sftp-known-hosts-file", self.known_hosts,
                    "--vfs-cache-mode", "off"] + a.rclone_opts
        else:
            raise AssertionError(tool)
        logf = os.path.join(self.base, "%s.log" % os.path.basename(mp))
        with open(logf, "wb") as lf:
            if tool == "rclone":
                # in the foreground, as our child; the mount appears when ready
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=lf, stderr=lf,
                                        env=self.env, cwd="/", start_new_session=True)
                self.children.append(proc)
            else:
                # sshfs and hashi go to the background once mounted
                p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=lf, stderr=lf,
                                     env=self.env, cwd="/", start_new_session=True)
                sid = p.pid
                try:
                    p.wait(120)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                if p.returncode != 0:
                    fusermount_u(mp)
                    raise BenchError("%s exited %d: %s" % (
                        " ".join(argv), p.returncode, self.read(logf).strip()[-500:]))
        try:
            wait_until(lambda: mount_table().get(mp, "").startswith("fuse"),
                       "the %s mount on %s" % (tool, mp), 60,
                       alive=(lambda: proc.poll() is None) if proc else None)
        except BenchError as e:
            fusermount_u(mp)
            if proc is not None:
                proc.kill()
                proc.wait()
            raise BenchError("%s: %s" % (e, self.read(logf).strip()[-500:]))
        if proc is not None:
            pid = sid = proc.pid
        else:
            pids = find_daemon(os.path.basename(argv[0]), mp)
            pid = pids[0] if len(pids) == 1 else None
        m = Mount(tool, mp, pid, sid, proc)
        self.mounts.append(m)
        return m

    def unmount(self, m):
        try:
            m.unmount()
        finally:
            if m in self.mounts:
                self.mounts.remove(m)
            if m.proc in self.children:
                self.children.remove(m.proc)
            try:
                os.rmdir(m.path)
            except OSError:
                pass


# --------------------------------------------------------------------------
# data sets

def write_random(path, size):
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(8 << 20, left)
            f.write(os.urandom(n))
            left -= n


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(8 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


def ndirs(files):
    return 50 if files >= 500 else max(1, files // 10)


class Data:
    """Server-side and local files, made once per size and shared by tools."""

    def __init__(self, env):
        self.env = env
        self.made = {}

    def once(self, key, fn):
        if key not in self.made:
            self.made[key] = fn()
        return self.made[key]

    def big(self, size):
        """(server path, local copy, sha256) of a random file of size bytes."""
        def make():
            local = os.path.join(self.env.local, "data-%d.bin" % size)
            write_random(local, size)
            remote = os.path.join(self.env.export, "data-%d.bin" % size)
            shutil.copyfile(local, remote)
            self.env.give(remote)
            return remote, local, sha256(local)
        return self.once(("big", size), make)

    def tar(self, files):
        """(tar path, reference tree) of files 4 KiB files in ndirs() dirs,
        under one top-level directory "tree"."""
        def make():
            ref = os.path.join(self.env.local, "tree-%d" % files)
            top = os.path.join(ref, "tree")
            nd = ndirs(files)
            for i in range(files):
                d = os.path.join(top, "d%02d" % (i % nd))
                os.makedirs(d, exist_ok=True)
                with open(os.path.join(d, "f%05d" % i), "wb") as f:
                    f.write(os.urandom(4096))
            path = os.path.join(self.env.local, "tree-%d.tar" % files)
            with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as t:
                t.add(top, arcname="tree")
            return path, top
        return self.once(("tar", files), make)

    def tree_on_server(self, files, name):
        """A copy of the tree in the export as name (made server-side)."""
        tar, _ = self.tar(files)
        dest = os.path.join(self.env.export, name)
        if os.path.exists(dest):
            shutil.rmtree(dest)
        os.mkdir(dest)
        subprocess.run(["tar", "-xf", tar, "-C", dest], check=True)
        self.env.give(dest)
        return os.path.join(dest, "tree")

    def repo(self, files):
        """A local git repository of files files (one commit, packed)."""
        def make():
            path = os.path.join(self.env.local, "repo-%d" % files)
            os.mkdir(path)
            git = ["git", "-C", path, "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
            subprocess.run(git + ["init", "-q"], check=True, env=self.env.env)
            nd = max(1, files // 50)
            for i in range(files):
                d = os.path.join(path, "src", "m%02d" % (i % nd))
                os.makedirs(d, exist_ok=True)
                with open(os.path.join(d, "file%05d.c" % i), "w") as f:
                    n = 200 + (i * 37) % 4000
                    f.write(("/* file %d */\n" % i + os.urandom(n // 2).hex())[:n] + "\n")
            subprocess.run(git + ["add", "-A"], check=True, env=self.env.env)
            subprocess.run(git + ["commit", "-q", "-m", "bench"], check=True, env=self.env.env)
            subprocess.run(git + ["gc", "-q"], check=True, env=self.env.env)
            return path
        return self.once(("repo", files), make)


# --------------------------------------------------------------------------
# measurements

class Failed(Exception):
    pass


class Runner:
    def __init__(self, args, env):
        self.args = args
        self.env = env
        self.data = Data(env)
        self.results = {}   # link -> row -> tool -> [samples]
        self.failures = {}  # link -> row -> tool -> message
        self.cpu = {}       # link -> row -> tool -> [cpu seconds per GiB]
        self.extra = {}     # link -> name -> [samples]
        self.verified = set()

    def sh(self, argv, timeout=None, stdout=subprocess.DEVNULL, cwd="/"):
        """Run a workload command; its wall time in seconds."""
        t0 = time.monotonic()
        try:
            r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=stdout,
                               stderr=subprocess.PIPE, env=self.env.env, cwd=cwd,
                               timeout=timeout or self.args.cmd_timeout)
        except subprocess.TimeoutExpired:
            raise Failed("%s: timed out after %ds" % (argv[0], timeout or self.args.cmd_timeout))
        t = time.monotonic() - t0
        if r.returncode != 0:
            err = r.stderr.decode(errors="replace").strip().splitlines()
            raise Failed("%s exited %d: %s" % (" ".join(argv[:2]), r.returncode,
                                               err[0] if err else ""))
        return t

    def record(self, link, row, tool, value):
        self.results.setdefault(link, {}).setdefault(row, {}).setdefault(tool, []).append(value)
        if self.args.verbose:
            log("    %-8s %-12s %-7s %s" % (link, row, tool, fmt(value, UNITS.get(row, ("s",))[0])))

    def record_cpu(self, link, row, tool, cpu, nbytes):
        if nbytes:
            self.cpu.setdefault(link, {}).setdefault(row, {}).setdefault(tool, []).append(
                cpu * GiB / nbytes)

    def fail(self, link, rows, tool, msg):
        for row in rows:
            self.failures.setdefault(link, {}).setdefault(row, {})[tool] = msg
        log("    %s %s %s: FAILED: %s" % (link, "/".join(rows), tool, msg))

    def first(self, link, what, tool):
        """True the first time (link, what, tool) is seen: verify then."""
        key = (link, what, tool)
        if key in self.verified:
            return False
        self.verified.add(key)
        return not self.args.no_verify

    def mounted(self, tool, link, remote="", cold=True):
        if cold:
            drop_caches(self.args)
        return self.env.mount(tool, link, remote or self.env.export)

    # -- the groups; each takes (link, tool, sizes) and records its rows
    def g_seqread(self, link, tool, sz):
        remote, local, digest = self.data.big(sz["seq"])
        m = self.mounted(tool, link)
        try:
            f = os.path.join(m.path, os.path.basename(remote))
            c0 = m.cpu()
            t = self.sh(["dd", "if=" + f, "of=/dev/null", "bs=1M", "status=none"])
            self.record_cpu(link, "seqread", tool, m.cpu() - c0, sz["seq"])
            self.record(link, "seqread", tool, sz["seq"] / t / 1e6)
            if self.first(link, "seqread", tool) and sha256(f) != digest:
                raise Failed("read wrong data")
        finally:
            self.env.unmount(m)

    def g_seqwrite(self, link, tool, sz):
        _, local, digest = self.data.big(sz["seq"])
        dest = os.path.join(self.env.export, "written.bin")
        if os.path.exists(dest):
            os.unlink(dest)
        m = self.mounted(tool, link)
        try:
            c0 = m.cpu()
            t = self.sh(["dd", "if=" + local, "of=" + os.path.join(m.path, "written.bin"),
                         "bs=1M", "status=none"])
            self.record_cpu(link, "seqwrite", tool, m.cpu() - c0, sz["seq"])
        finally:
            self.env.unmount(m)
        self.record(link, "seqwrite", tool, sz["seq"] / t / 1e6)
        try:
            if self.first(link, "seqwrite", tool) and sha256(dest) != digest:
                raise Failed("wrote wrong data")
        finally:
            os.unlink(dest)

    def fio(self, link, tool, sz, jobs, row):
        remote, _, _ = self.data.big(sz["seq"])
        m = self.mounted(tool, link)
        try:
            out = os.path.join(self.env.base, "fio.json")
            self.sh(["fio", "--name=randread", "--filename=" + os.path.join(
                m.path, os.path.basename(remote)), "--rw=randread", "--bs=4k",
                "--ioengine=psync", "--iodepth=1", "--numjobs=%d" % jobs, "--group_reporting",
                "--time_based", "--runtime=%d" % sz["fio"], "--size=%d" % sz["seq"],
                "--invalidate=1", "--allow_file_create=0", "--output-format=json",
                "--output=" + out], timeout=sz["fio"] * 3 + 120)
            with open(out) as f:
                res = json.load(f)
            self.record(link, row, tool, res["jobs"][0]["read"]["iops"])
        finally:
            self.env.unmount(m)

    def g_randread(self, link, tool, sz):
        self.fio(link, tool, sz, 1, "randread")

    def g_randread4(self, link, tool, sz):
        self.fio(link, tool, sz, 4, "randread4")

    def same_tree(self, a, b):
        r = subprocess.run(["diff", "-rq", a, b], capture_output=True, text=True)
        if r.returncode != 0:
            raise Failed("the tree differs: %s" % (r.stdout + r.stderr).strip()[:300])

    def g_untar(self, link, tool, sz):
        tar, ref = self.data.tar(sz["files"])
        dest = os.path.join(self.env.export, "untar")
        shutil.rmtree(dest, ignore_errors=True)
        os.mkdir(dest)
        self.env.give(dest)
        m = self.mounted(tool, link)
        try:
            # as an ordinary user would: no chown, umask applied
            t = self.sh(["tar", "-x", "--no-same-owner", "--no-same-permissions", "-f", tar,
                         "-C", os.path.join(m.path, "untar")])
            self.record(link, "untar", tool, t)
        finally:
            self.env.unmount(m)
        try:
            if self.first(link, "untar", tool):
                self.same_tree(ref, os.path.join(dest, "tree"))
        finally:
            shutil.rmtree(dest, ignore_errors=True)

    def ro_tree(self, files):
        """The read-only tree for cp -r, find and ls -lR (server-side)."""
        return self.data.once(("ro", files), lambda: self.data.tree_on_server(files, "ro-%d" % files))

    def rel(self, m, server_path):
        return os.path.join(m.path, os.path.relpath(server_path, self.env.export))

    def g_cpr(self, link, tool, sz):
        src = self.ro_tree(sz["files"])
        dest = os.path.join(self.env.export, "copy")
        shutil.rmtree(dest, ignore_errors=True)
        m = self.mounted(tool, link)
        try:
            t = self.sh(["cp", "-r", self.rel(m, src), os.path.join(m.path, "copy")])
            self.record(link, "cpr", tool, t)
        finally:
            self.env.unmount(m)
        try:
            if self.first(link, "cpr", tool):
                self.same_tree(src, dest)
        finally:
            shutil.rmtree(dest, ignore_errors=True)

    def cold_warm(self, link, tool, sz, argv_fn, row, expect_lines):
        src = self.ro_tree(sz["files"])
        m = self.mounted(tool, link)
        try:
            argv = argv_fn(self.rel(m, src))
            out = os.path.join(self.env.base, "out.txt")
            for phase in ("cold", "warm"):
                with open(out, "wb") as f:
                    t = self.sh(argv, stdout=f)
                self.record(link, "%s-%s" % (row, phase), tool, t)
                if self.first(link, row + phase, tool):
                    with open(out, "rb") as f:
                        n = sum(1 for _ in f)
                    if n < expect_lines:
                        raise Failed("%s listed %d lines, expected at least %d"
                                     % (argv[0], n, expect_lines))
        finally:
            self.env.unmount(m)

    def g_find(self, link, tool, sz):
        n = sz["files"] + ndirs(sz["files"]) + 1
        self.cold_warm(link, tool, sz, lambda p: ["find", p], "find", n)

    def g_lsr(self, link, tool, sz):
        self.cold_warm(link, tool, sz, lambda p: ["ls", "-lR", p], "lsr", sz["files"])

    def g_rm(self, link, tool, sz):
        tree = self.data.tree_on_server(sz["files"], "rmtree")
        m = self.mounted(tool, link)
        try:
            t = self.sh(["rm", "-rf", self.rel(m, tree)])
            self.record(link, "rm", tool, t)
        finally:
            self.env.unmount(m)
        left = os.path.exists(tree)
        shutil.rmtree(os.path.dirname(tree), ignore_errors=True)
        if left:
            raise Failed("rm -rf left the tree on the server")

    def g_git(self, link, tool, sz):
        repo = self.data.repo(sz["repo"])
        dest = os.path.join(self.env.export, "clone")
        shutil.rmtree(dest, ignore_errors=True)
        try:
            m = self.mounted(tool, link)
            try:
                t = self.sh(["git", "clone", "-q", repo, os.path.join(m.path, "clone")])
                self.record(link, "clone", tool, t)
            finally:
                self.env.unmount(m)
            m = self.mounted(tool, link)
            try:
                clone = os.path.join(m.path, "clone")
                out = os.path.join(self.env.base, "status.txt")
                for phase in ("cold", "warm"):
                    with open(out, "wb") as f:
                        t = self.sh(["git", "-C", clone, "status", "--porcelain"], stdout=f)
                    self.record(link, "status-" + phase, tool, t)
                    if os.path.getsize(out) != 0 and self.first(link, "status" + phase, tool):
                        raise Failed("git status in the fresh clone is not clean: %s"
                                     % self.env.read(out)[:200])
            finally:
                self.env.unmount(m)
        finally:
            shutil.rmtree(dest, ignore_errors=True)

    # -- extras: the link itself
    def sshcat(self, link, sz):
        remote, _, _ = self.data.big(sz["seq"])
        t = self.sh(["ssh", "-F", self.env.ssh_config, "bench-" + link, "cat", remote])
        self.extra.setdefault(link, {}).setdefault("sshcat", []).append(sz["seq"] / t / 1e6)

    def libssh2(self, link, sz):
        """The better of two windows: hashi's 16 MiB, libssh2's default 2 MiB
        (with 1.10, the smaller one has moved more on loopback here)."""
        remote, _, _ = self.data.big(sz["seq"])
        best = 0
        for window in (16 << 20, 2 << 20):
            r = subprocess.run([self.args.ssh2cat, "127.0.0.1", str(self.env.ports[link]),
                                self.env.user, self.env.key, "exec cat " + shlex.quote(remote),
                                str(window)],
                               capture_output=True, text=True, timeout=self.args.cmd_timeout)
            if r.returncode != 0:
                raise Failed(r.stderr.strip())
            nbytes, secs = r.stdout.split()
            if int(nbytes) != sz["seq"]:
                raise Failed("libssh2 moved %s bytes, expected %d" % (nbytes, sz["seq"]))
            rate = int(nbytes) / float(secs) / 1e6
            self.extra.setdefault(link, {}).setdefault("libssh2-window-%d" % window, []).append(rate)
            best = max(best, rate)
        self.extra.setdefault(link, {}).setdefault("libssh2", []).append(best)

    # -- the run
    def run(self):
        a = self.args
        groups = [(g, rows) for g, rows in GROUPS if set(rows) & a.only]
        for link in a.links:
            sz = a.sizes[link]
            log("== %s: preparing data" % link)
            t0 = time.monotonic()
            if any(g in ("seqread", "seqwrite", "randread", "randread4") for g, _ in groups) \
                    or {"sshcat", "libssh2"} & a.only:
                self.data.big(sz["seq"])
            if any(g in ("untar", "cpr", "find", "lsr", "rm") for g, _ in groups):
                self.data.tar(sz["files"])
            if any(g == "git" for g, _ in groups):
                self.data.repo(sz["repo"])
            log("   prepared in %.1f s" % (time.monotonic() - t0))
            for rep in range(a.repeat):
                log("== %s: repetition %d of %d" % (link, rep + 1, a.repeat))
                for gi, (g, rows) in enumerate(groups):
                    k = (rep + gi) % len(a.tools)
                    order = a.tools[k:] + a.tools[:k]
                    for tool in order:
                        if tool in self.failures.get(link, {}).get(rows[0], {}):
                            continue  # failed once: not again
                        try:
                            getattr(self, "g_" + g)(link, tool, sz)
                        except (Failed, BenchError, subprocess.SubprocessError, OSError) as e:
                            self.fail(link, rows, tool, str(e))
                for name in EXTRA_ROWS:
                    if name not in a.only or (name == "libssh2" and not a.ssh2cat):
                        continue
                    try:
                        getattr(self, name)(link, sz)
                    except (Failed, subprocess.SubprocessError, OSError) as e:
                        self.failures.setdefault(link, {}).setdefault(name, {})["-"] = str(e)
                        log("    %s %s: FAILED: %s" % (link, name, e))


# --------------------------------------------------------------------------
# report

def fmt(v, unit):
    if v is None:
        return "-"
    if unit == "s":
        return "%.3f" % v if v < 10 else "%.2f" % v if v < 100 else "%.1f" % v
    if unit == "IOPS":
        return "%.0f" % v
    return "%.1f" % v


def label(row, sz):
    return {
        "seqread": "seq read %s" % human(sz["seq"]),
        "seqwrite": "seq write %s" % human(sz["seq"]),
        "randread": "fio 4k randread qd1",
        "randread4": "fio 4k randread 4 jobs",
        "untar": "untar %d files" % sz["files"],
        "cpr": "cp -r %d files" % sz["files"],
        "find-cold": "find cold", "find-warm": "find warm",
        "lsr-cold": "ls -lR cold", "lsr-warm": "ls -lR warm",
        "rm": "rm -rf %d files" % sz["files"],
        "clone": "git clone %d files" % sz["repo"],
        "status-cold": "git status cold", "status-warm": "git status warm",
    }[row]


def ratio(vals, row, peers, fails):
    unit, higher = UNITS.get(row, ("s", False))
    h = vals.get("hashi")
    if "hashi" in fails:
        return "FAIL"
    have = [vals[p] for p in peers if vals.get(p) is not None]
    if h is None or not have or h <= 0:
        return "-"
    best = max(have) if higher else min(have)
    return "%.2f" % (h / best if higher else best / h)


def report(args, runner):
    tools = args.tools
    peers = [t for t in tools if t != "hashi"]
    out = {"command": " ".join([PY] + sys.argv), "repeat": args.repeat, "tools": tools,
           "stat": "median", "links": {}}
    for link in args.links:
        sz = args.sizes[link]
        res = runner.results.get(link, {})
        fails = runner.failures.get(link, {})
        med = {row: {t: statistics.median(v) for t, v in d.items()} for row, d in res.items()}
        print()
        counts = sorted({len(v) for d in res.values() for v in d.values()}) or [0]
        runs = "%d" % counts[0] if len(counts) == 1 else "%d-%d" % (counts[0], counts[-1])
        print("== %s%s: median of %s run(s), fresh mount per measurement; ratio = hashi / best "
              "peer (higher is better for hashi)" % (
                  link, " (%g ms round trip through delayproxy.py)" % (2 * args.delay_ms)
                  if link == "wan" else "", runs))
        hdr = "%-26s %-5s" % ("row", "unit") + "".join("%11s" % t for t in tools) + "%11s" % "ratio"
        print(hdr)
        print("-" * len(hdr))
        for row in [r for _, rows in GROUPS for r in rows if r in args.only]:
            unit = UNITS.get(row, ("s",))[0]
            vals = med.get(row, {})
            cells = "".join("%11s" % ("FAIL" if t in fails.get(row, {}) else fmt(vals.get(t), unit))
                            for t in tools)
            r = ratio(vals, row, peers, fails.get(row, {})) if "hashi" in tools else "-"
            print("%-26s %-5s%s%11s" % (label(row, sz), unit, cells, r))
        ex = {k: statistics.median(v) for k, v in runner.extra.get(link, {}).items()}
        hread = med.get("seqread", {}).get("hashi")
        print()
        for name, what in (("sshcat", "ssh cat"), ("libssh2", "libssh2 raw")):
            if name not in args.only:
                continue
            v = ex.get(name)
            line = "%-26s %-5s %10s" % ("%s %s" % (what, human(sz["seq"])), "MB/s",
                                        "FAIL" if "-" in fails.get(name, {}) else fmt(v, "MB/s"))
            if v and hread:
                line += "   hashi seq read / %s = %.2f" % (what, hread / v)
            print(line)
        cpu = {row: {t: statistics.median(v) for t, v in d.items()}
               for row, d in runner.cpu.get(link, {}).items()}
        for row, what in (("seqread", "seq read"), ("seqwrite", "seq write")):
            if row in cpu:
                cells = "".join("%11s" % ("-" if cpu[row].get(t) is None else "%.2f" % cpu[row][t])
                                for t in tools)
                print("%-26s %-5s%s   (CPU of the mount's processes per GiB)" % (
                    "CPU, " + what, "s/GiB", cells))
        for row, d in fails.items():
            for t, msg in d.items():
                print("  failed: %s %s: %s" % (row, t, msg))
        out["links"][link] = {"sizes": sz, "samples": res, "median": med, "failures": fails,
                              "extra_samples": runner.extra.get(link, {}), "extra_median": ex,
                              "cpu_per_gib_samples": runner.cpu.get(link, {}), "cpu_per_gib": cpu}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


# --------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="rows: " + ", ".join(ALL_ROWS) +
                                 " (or a group: " + ", ".join(g for g, _ in GROUPS) + ")")
    ap.add_argument("--build-dir", default="./build", help="meson build directory (default ./build)")
    ap.add_argument("--hashi", help="hashi binary (default <build-dir>/fuse/hashi)")
    ap.add_argument("--ssh2cat", help="bench-ssh2cat (default <build-dir>/tests/bench/bench-ssh2cat)")
    ap.add_argument("--sshfs", default="/usr/bin/sshfs")
    ap.add_argument("--rclone", default="/usr/bin/rclone")
    ap.add_argument("--tools", default=",".join(TOOLS), help="comma-separated (default all three)")
    ap.add_argument("--only", help="comma-separated rows or groups (default all)")
    ap.add_argument("--link", choices=("loopback", "wan", "both"), default="both")
    ap.add_argument("--size", choices=sorted(PRESETS), default="full",
                    help="data set sizes (default full: 1 GiB / 5,000 files / 2,000-file repo on "
                    "loopback, 256 MiB / 500 / 500 through the proxy)")
    ap.add_argument("--seq-size", type=parse_size, help="override: sequential size on loopback")
    ap.add_argument("--wan-seq-size", type=parse_size, help="override: sequential size through the proxy")
    ap.add_argument("--files", type=int, help="override: untar files on loopback")
    ap.add_argument("--wan-files", type=int, help="override: untar files through the proxy")
    ap.add_argument("--repo-files", type=int, help="override: git repository files on loopback")
    ap.add_argument("--wan-repo-files", type=int, help="override: git repository files through the proxy")
    ap.add_argument("--fio-runtime", type=int, help="override: seconds per fio run")
    ap.add_argument("--repeat", type=int, default=3, help="runs per tool and row; median (default 3)")
    ap.add_argument("--delay-ms", type=float, default=10.0, help="proxy's one-way delay (default 10)")
    ap.add_argument("--hashi-opts", default="", help="extra hashi arguments, e.g. \"-o max_conns=2\"")
    ap.add_argument("--sshfs-opts", default="", help="extra sshfs arguments")
    ap.add_argument("--rclone-opts", default="", help="extra rclone mount arguments")
    ap.add_argument("--user", default="hashibench",
                    help="the server-side account, made if missing (default %(default)s)")
    ap.add_argument("--workdir", default="/dev/shm",
                    help="where the export, local data and mount points go (default %(default)s, "
                    "tmpfs: the server's storage is not measured)")
    ap.add_argument("--cmd-timeout", type=int, default=3600, help="limit per timed command (s)")
    ap.add_argument("--drop-caches", choices=("auto", "yes", "no"), default="auto",
                    help="sync and write 3 to /proc/sys/vm/drop_caches before every cold run: "
                    "auto (the default) does when the export is not on tmpfs, where it would "
                    "only slow down everything else on the machine")
    ap.add_argument("--no-verify", action="store_true",
                    help="skip the untimed checks of what each tool read and wrote")
    ap.add_argument("--json", metavar="FILE", help="save every sample and median to FILE")
    ap.add_argument("--keep", action="store_true", help="keep the temp directory (logs)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every sample")
    a = ap.parse_args()

    a.links = ["loopback", "wan"] if a.link == "both" else [a.link]
    a.sizes = {link: dict(PRESETS[a.size][link]) for link in ("loopback", "wan")}
    for link, pre in (("loopback", ""), ("wan", "wan_")):
        for key, opt in (("seq", "seq_size"), ("files", "files"), ("repo", "repo_files")):
            v = getattr(a, pre + opt)
            if v is not None:
                if v < 1:
                    ap.error("sizes must be positive")
                a.sizes[link][key] = v
        if a.fio_runtime is not None:
            a.sizes[link]["fio"] = max(1, a.fio_runtime)
    if a.repeat < 1:
        ap.error("--repeat must be at least 1")
    a.tools = [t for t in a.tools.split(",") if t]
    if not a.tools or not set(a.tools) <= set(TOOLS):
        ap.error("--tools takes a comma-separated subset of %s" % ",".join(TOOLS))
    groups = dict(GROUPS)
    if a.only:
        a.only = {r for x in a.only.split(",") if x for r in groups.get(x, [x])}
        if not a.only <= set(ALL_ROWS):
            ap.error("unknown rows: %s (rows: %s)" % (",".join(sorted(a.only - set(ALL_ROWS))),
                                                      ", ".join(ALL_ROWS)))
    else:
        a.only = set(ALL_ROWS)
    a.hashi = os.path.abspath(a.hashi or os.path.join(a.build_dir, "fuse", "hashi"))
    a.ssh2cat = a.ssh2cat or os.path.join(a.build_dir, "tests", "bench", "bench-ssh2cat")
    a.hashi_opts = shlex.split(a.hashi_opts)
    a.sshfs_opts = shlex.split(a.sshfs_opts)
    a.rclone_opts = shlex.split(a.rclone_opts)

    if os.geteuid() != 0:
        log("SKIP: bench_mount.py must run as root (FUSE mounts, sshd, drop_caches)")
        return 77
    missing = [p for p in (SSHD, SFTP_SERVER, FUSERMOUNT, shutil.which("fio") or "fio")
               if not os.access(p, os.X_OK)]
    if "hashi" in a.tools and not os.access(a.hashi, os.X_OK):
        missing.append(a.hashi)
    if missing:
        log("SKIP: not installed: %s" % ", ".join(missing))
        return 77
    for t in ("sshfs", "rclone"):
        if t in a.tools and not os.access(getattr(a, t), os.X_OK):
            log("warning: %s is not installed (apt-get install %s): left out" % (getattr(a, t), t))
            a.tools.remove(t)
    if not os.access(a.ssh2cat, os.X_OK):
        if "libssh2" in a.only:
            log("warning: %s is not built: no libssh2 row" % a.ssh2cat)
        a.ssh2cat = None
    a.ssh2cat = a.ssh2cat and os.path.abspath(a.ssh2cat)

    def on_term(signum, frame):
        raise Interrupted()
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    env = Env(a)
    a.do_drop_caches = a.drop_caches == "yes" or (
        a.drop_caches == "auto" and fstype(env.export) != "tmpfs")
    runner = Runner(a, env)
    print("hashi vs sshfs vs rclone mount")
    print("  command : %s" % " ".join([PY] + [shlex.quote(x) for x in sys.argv]))
    print("  hashi   : %s %s" % (a.hashi, " ".join(a.hashi_opts)))
    for link in a.links:
        s = a.sizes[link]
        print("  %-8s: seq %s, %d files in %d dirs, %d-file repo, fio %d s" % (
            link, human(s["seq"]), s["files"], ndirs(s["files"]), s["repo"], s["fio"]))
    print("  data    : %s (%s%s); tools %s; %d repetition(s)" % (
        env.base, fstype(env.export), ", drop_caches before cold runs" if a.do_drop_caches else "",
        ",".join(a.tools), a.repeat), flush=True)
    status = 0
    try:
        env.start()
        runner.run()
    except (KeyboardInterrupt, Interrupted):
        log("interrupted: cleaning up")
        status = 130
    except BenchError as e:
        log("error: %s" % e)
        status = 1
    finally:
        env.cleanup()
    report(a, runner)
    if status == 0 and any("hashi" in d for f in runner.failures.values() for d in f.values()):
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
