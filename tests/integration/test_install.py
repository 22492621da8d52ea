"""hashi where users put it: the installed layout, fstab and mount(8)'s
helpers, -V and -h, the debug log, syslog once detached, and the
"still connecting" progress on a terminal.

Everything runs for real, as root: `meson install --destdir`, OpenSSH's sftp
through menv's sshd, util-linux mount(8) with mount.fuse3, a pty.
"""

import errno
import json
import os
import pty
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from mountfix import *  # noqa: F401,F403

MOUNT_FUSE3 = shutil.which("mount.fuse3") or "/sbin/mount.fuse3"
UMOUNT = shutil.which("umount") or "/bin/umount"
MOUNT = shutil.which("mount") or "/bin/mount"


# --------------------------------------------------------------------------
# helpers (mountfix's own waiters are private; these are ours)

def wait_until(cond, what, limit=30.0):
    """Poll a cheap condition (the mount table, /proc) with a deadline."""
    deadline = time.monotonic() + limit
    delay = 0.001
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def daemons_of(exe, mountpoint):
    """Pids of live processes whose executable is exe (by /proc/PID/exe,
    whatever their argv[0]: mount.fuse3 starts `hashi` through sh and PATH)
    and whose arguments include mountpoint."""
    exe = os.path.realpath(exe)
    mp = os.path.abspath(str(mountpoint)).encode()
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{d}/exe") != exe:
                continue
            with open(f"/proc/{d}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
            with open(f"/proc/{d}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if mp in args[1:] and state != "Z":
            pids.append(int(d))
    return pids


def proc_uids(pid):
    """(real, effective) uid of pid."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                u = line.split()[1:3]
                return int(u[0]), int(u[1])
    raise AssertionError(f"no Uid line for pid {pid}")


def mount_super_options(path):
    """The super-block options of the mount at path (user_id=, group_id=, ...)."""
    path = os.path.abspath(str(path))
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if left.split()[4] == path:
                found = right.split()[2].split(",")
    return found


def unmount_and_wait(exe, mp, pids, how=None, timeout=30.0):
    """Unmount mp (umount(8) by default) and wait for each daemon to exit;
    returns their exit statuses (None for one that was not our child)."""
    cmd = how or [UMOUNT, str(mp)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))}: {r.stderr}"
    assert not mounted(mp)
    return [wait_pid(p, timeout) for p in pids]


def cleanup_mount(exe, mp):
    if mounted(mp):
        subprocess.run([FUSERMOUNT_BIN, "-uz", str(mp)], capture_output=True)
    for p in daemons_of(exe, mp):
        try:
            wait_pid(p, 10)
        except AssertionError:
            os.kill(p, signal.SIGKILL)
            wait_pid(p, 10)


FUSERMOUNT_BIN = shutil.which("fusermount3") or "/usr/bin/fusermount3"


def path_env(first_dir, home="/root", user="root"):
    return {
        "PATH": f"{first_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": home, "USER": user, "LOGNAME": user, "LANG": "C.UTF-8",
    }


def root_ssh_words(menv, account=None):
    """The ssh_config options, as key=value words for an -o list (fstab)."""
    a = account or menv.root
    return [f"port={menv.sshd.port}",
            f"IdentityFile={a.key}",
            "IdentitiesOnly=yes",
            f"UserKnownHostsFile={menv.sshd.known_hosts}",
            "GlobalKnownHostsFile=/dev/null",
            "StrictHostKeyChecking=yes",
            "BatchMode=yes"]


def fstab_opts(menv, extra=(), account=None):
    # -F is a command-line flag, not an -o option: an fstab line can only
    # give ssh_config keywords. The explicit options above already pin what
    # matters (port, key, known_hosts, batch mode).
    return ",".join(["defaults", "_netdev", "noauto", *root_ssh_words(menv, account),
                     *extra])


# --------------------------------------------------------------------------
# install layout

@pytest.fixture(scope="module")
def installed(build_dir, tmp_path_factory):
    """`meson install --destdir` of the build: (destdir, prefix) as Paths."""
    dest = tmp_path_factory.mktemp("destdir")
    os.chmod(dest, 0o755)
    r = subprocess.run(["meson", "install", "-C", str(build_dir), "--destdir", str(dest),
                        "--no-rebuild"], capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert r.returncode == 0, f"meson install failed:\n{r.stdout}\n{r.stderr}"
    r = subprocess.run(["meson", "introspect", "--buildoptions", str(build_dir)],
                       capture_output=True, text=True, check=True)
    opts = {o["name"]: o["value"] for o in json.loads(r.stdout)}
    prefix = Path(opts["prefix"])
    layout = {k: prefix / opts[k] for k in ("bindir", "sbindir", "libexecdir", "mandir", "datadir")}
    return dest, prefix, layout


def inside(dest, abspath):
    return Path(str(dest) + str(abspath))


def test_install_layout(installed, build_dir):
    dest, prefix, L = installed
    hashi = inside(dest, L["bindir"] / "hashi")
    server = inside(dest, L["libexecdir"] / "hashi" / "hashi-sftp-server")
    for f in (hashi, server):
        assert f.is_file() and not f.is_symlink(), f"{f} missing"
        assert os.access(f, os.X_OK), f"{f} is not executable"
    # the installed binaries are the built ones (meson may strip; compare -V)
    r = subprocess.run([str(hashi), "-V"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("hashi version ")
    for name in ("mount.hashi", "mount.fuse.hashi"):
        link = inside(dest, L["sbindir"] / name)
        assert link.is_symlink(), f"{link} is not a symlink"
        target = os.readlink(link)
        # absolute (prefix/bin/hashi) or relative (../bin/hashi): either
        # must name the installed hashi once the tree is at its prefix.
        resolved = os.path.normpath(os.path.join(str(L["sbindir"]), target))
        assert resolved == str(L["bindir"] / "hashi"), f"{name} -> {target}"
        assert inside(dest, resolved).is_file()
    for page in (L["mandir"] / "man1" / "hashi.1", L["mandir"] / "man8" / "hashi-sftp-server.8",
                 L["datadir"] / "doc" / "hashi" / "PROTOCOL.hashi"):
        f = inside(dest, page)
        assert f.is_file(), f"{f} missing"


@pytest.mark.parametrize("page", ["hashi.1", "hashi-sftp-server.8"])
def test_man_pages_render_without_warnings(installed, page):
    if shutil.which("man") is None:
        pytest.skip("man(1) is not installed")
    dest, prefix, L = installed
    sect = page.rsplit(".", 1)[1]
    f = inside(dest, L["mandir"] / f"man{sect}" / page)
    env = dict(os.environ, MANWIDTH="80", LANG="C.UTF-8")
    r = subprocess.run(["man", "--warnings", "-l", str(f)], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", f"man --warnings -l {page}:\n{r.stderr}"
    assert "NAME" in r.stdout
    if page == "hashi.1":
        for sect in ("FSTAB", "AUTOMOUNT", "LOGGING", "MAPPING"):
            assert re.search(rf"^{sect}\b", r.stdout, re.M), f"hashi.1 has no {sect} section"
    else:
        assert "ChrootDirectory" in r.stdout and "Subsystem sftp" in r.stdout


def test_installed_server_serves_openssh_sftp(installed, menv, tmp_path):
    """sshd runs the installed hashi-sftp-server (sftp -s PATH) and OpenSSH's
    sftp puts and gets a file through it."""
    dest, prefix, L = installed
    server = inside(dest, L["libexecdir"] / "hashi" / "hashi-sftp-server")
    d = menv.new_dir("inst-srv")
    src = tmp_path / "up.bin"
    payload = os.urandom(300_000) + b"end"
    src.write_bytes(payload)
    back = tmp_path / "down.bin"
    batch = f"put {src} {d}/up.bin\nget {d}/up.bin {back}\nls -l {d}\n"
    cmd = ["sftp", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
           "-o", f"UserKnownHostsFile={menv.sshd.known_hosts}", "-o", "LogLevel=ERROR",
           "-i", menv.root.key, "-P", str(menv.sshd.port), "-s", str(server),
           "-b", "-", "root@127.0.0.1"]
    r = subprocess.run(cmd, input=batch, text=True, capture_output=True, timeout=RUN_TIMEOUT)
    assert r.returncode == 0, f"sftp: {r.stdout}\n{r.stderr}"
    assert (d / "up.bin").read_bytes() == payload
    assert back.read_bytes() == payload
    # sshd ran a command (the installed path), not its `Subsystem sftp`.
    starts = [ln for ln in menv.sshd.log_text().splitlines()
              if ln.startswith("Starting session:") and " for root from " in ln]
    assert starts and starts[-1].startswith("Starting session: command"), starts[-1:]


# --------------------------------------------------------------------------
# fstab and mount(8)

def _put_file(d, name="hello.txt", text="hello from the server\n"):
    p = Path(d) / name
    p.write_text(text)
    return p


# mount(8) does not pass PATH on to its helper (util-linux drops it), and
# mount.fuse3 runs `/bin/sh -c 'hashi ...'`, so dash's default search path
# (/usr/local/sbin:/usr/local/bin:...) finds hashi: it must look installed.
# These tests run mount(8) in a private mount namespace in which a directory
# holding a `hashi` link to the build is bind-mounted over /usr/local/sbin,
# the first directory of that path. The host's /usr is never touched.
# Mounts made in that namespace are not visible out here, so the check, the
# file access and the unmount run in there too (NS_MOUNT_SCRIPT); the daemon
# is reparented to pytest (a subreaper), which collects its exit status.

NS_MOUNT_SCRIPT = r'''
import json, os, select, subprocess, sys
cfg = json.loads(sys.argv[1])
subprocess.run(["mount", "--bind", cfg["fakebin"], "/usr/local/sbin"], check=True)
out = {}
def fstype(path):
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if left.split()[4] == path:
                found = (right.split()[0], right.split()[2])
    return found
def daemons(exe, mp):
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.readlink("/proc/%s/exe" % d) != exe:
                continue
            args = open("/proc/%s/cmdline" % d, "rb").read().split(b"\0")
            st = open("/proc/%s/stat" % d).read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if mp.encode() in args[1:] and st != "Z":
            pids.append(int(d))
    return pids
mp = cfg["mp"]
r = subprocess.run(cfg["argv"], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                   timeout=60, cwd="/")
out["rc"], out["stderr"] = r.returncode, r.stdout + r.stderr
if r.returncode == 0:
    out["fstype"] = fstype(mp)
    out["pids"] = daemons(cfg["exe"], mp)
    out["uids"] = []
    for p in out["pids"]:
        for line in open("/proc/%d/status" % p):
            if line.startswith("Uid:"):
                out["uids"].append([int(x) for x in line.split()[1:3]])
    out["files"] = {}
    def read_all():
        res = {}
        for n in cfg.get("read", []):
            res[n] = open(os.path.join(mp, n)).read()
        for n, text in cfg.get("write", {}).items():
            with open(os.path.join(mp, n), "w") as f:
                f.write(text)
        return res
    if cfg.get("as_uid") is not None:
        # a FUSE mount without allow_other admits only its owner
        try:
            os.listdir(mp)
            out["root_refused"] = False
        except PermissionError:
            out["root_refused"] = True
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(rfd)
            try:
                os.setgroups([])
                os.setgid(cfg["as_gid"])
                os.setuid(cfg["as_uid"])
                res = {"ok": read_all()}
            except Exception as e:
                res = {"err": repr(e)}
            os.write(wfd, json.dumps(res).encode())
            os._exit(0)
        os.close(wfd)
        data = b""
        while True:
            chunk = os.read(rfd, 65536)
            if not chunk:
                break
            data += chunk
        os.waitpid(pid, 0)
        out["files"] = json.loads(data)
    else:
        try:
            out["files"] = {"ok": read_all()}
        except Exception as e:
            out["files"] = {"err": repr(e)}
    u = subprocess.run(cfg["umount"], capture_output=True, text=True, timeout=60)
    out["umount"] = [u.returncode, u.stderr]
    # wait for the daemons to end (they are pytest's children, not ours)
    for p in out["pids"]:
        try:
            fd = os.pidfd_open(p)
        except ProcessLookupError:
            continue
        pl = select.poll()
        pl.register(fd, select.POLLIN)
        pl.poll(30000)
        os.close(fd)
    out["still_mounted"] = fstype(mp) is not None
print(json.dumps(out))
'''


def run_mount_in_ns(menv, tmp_path, argv, mp, read=(), write=None, umount=None,
                    as_account=None, exe=None):
    """Run argv (mount(8) or a helper) in a private namespace where `hashi`
    is on dash's default PATH; read/write files on the mount, unmount it.
    Returns the script's report; collects the daemons' exit statuses into
    report["status"]."""
    fakebin = tmp_path / "fakebin"
    fakebin.mkdir(exist_ok=True)
    if not (fakebin / "hashi").exists():
        (fakebin / "hashi").symlink_to(menv.hashi)
    cfg = {"fakebin": str(fakebin), "argv": [str(a) for a in argv], "mp": str(mp),
           "exe": os.path.realpath(exe or menv.hashi), "read": list(read),
           "write": dict(write or {}), "umount": umount or [UMOUNT, str(mp)],
           "as_uid": as_account.uid if as_account else None,
           "as_gid": as_account.gid if as_account else None}
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "/usr/bin/python3",
                        "-c", NS_MOUNT_SCRIPT, json.dumps(cfg)],
                       capture_output=True, text=True, timeout=180,
                       env=dict(hashi_env(menv.root), PATH="/usr/sbin:/usr/bin:/sbin:/bin"),
                       start_new_session=True)
    assert r.returncode == 0, f"namespace script failed:\n{r.stdout}\n{r.stderr}"
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["status"] = [wait_pid(p, 30) for p in out.get("pids", [])]
    return out


def check_mounted_report(out, what):
    assert out["rc"] == 0, f"{what} exited {out['rc']}:\n{out['stderr']}"
    assert out["fstype"] and out["fstype"][0] == "fuse.hashi", out["fstype"]
    assert len(out["pids"]) == 1, f"expected one hashi daemon, found {out['pids']}"
    assert "ok" in out["files"], f"file access on the mount failed: {out['files']}"
    assert out["umount"][0] == 0, f"umount: {out['umount'][1]}"
    assert not out["still_mounted"]
    assert out["status"] == [0], f"the daemon exited {out['status']} after umount"


def test_mount_fstab_line(menv, tmp_path):
    """`mount --fstab FILE MP`: util-linux finds no mount.fuse.hashi in /sbin,
    runs mount.fuse (fuse3), which runs `hashi` with the line's options."""
    export = menv.new_dir("fstab-exp")
    _put_file(export)
    mp = menv.mountpoint("root")
    fstab = tmp_path / "fstab"
    fstab.write_text(f"# hashi test\nroot@127.0.0.1:{export} {mp} fuse.hashi "
                     f"{fstab_opts(menv, ['allow_other'])} 0 0\n")
    out = run_mount_in_ns(menv, tmp_path, [MOUNT, "--fstab", fstab, mp], mp,
                          read=["hello.txt"], write={"new.txt": "from fstab\n"})
    check_mounted_report(out, "mount --fstab")
    assert out["files"]["ok"]["hello.txt"] == "hello from the server\n"
    assert "allow_other" in out["fstype"][1].split(","), out["fstype"]
    assert (export / "new.txt").read_text() == "from fstab\n"


def test_mount_dash_t(menv, tmp_path):
    """mount -t fuse.hashi SPEC DIR -o ...: the same through mount.fuse3,
    unmounted with fusermount3 -u."""
    export = menv.new_dir("mt-exp")
    _put_file(export, "t.txt", "dash-t\n")
    mp = menv.mountpoint("root")
    out = run_mount_in_ns(menv, tmp_path,
                          [MOUNT, "-t", "fuse.hashi", f"root@127.0.0.1:{export}", mp,
                           "-o", ",".join(root_ssh_words(menv))], mp,
                          read=["t.txt"], write={"w.txt": "written\n"},
                          umount=[FUSERMOUNT_BIN, "-u", str(mp)])
    check_mounted_report(out, "mount -t fuse.hashi")
    assert out["files"]["ok"]["t.txt"] == "dash-t\n"
    assert (export / "w.txt").read_text() == "written\n"


def _installed_helper(installed, name):
    """(path of sbin/NAME in destdir, the file it runs). The link names
    prefix/bin/hashi, which exists only inside the destdir until the tree is
    copied to its prefix, so we exec that file with argv[0] = the helper's
    path, which is what a kernel following the link would give."""
    dest, prefix, L = installed
    link = inside(dest, L["sbindir"] / name)
    target = os.path.normpath(os.path.join(str(L["sbindir"]), os.readlink(link)))
    return link, inside(dest, target)


def test_installed_mount_helper_directly(installed, menv):
    """sbin/mount.fuse.hashi SPEC DIR -n -o OPTS -t fuse.hashi, as mount(8)
    runs a helper: -n and -t are mount's, user=NAME is mount's (not ssh's
    User), and fstab words are ignored."""
    link, binary = _installed_helper(installed, "mount.fuse.hashi")
    export = menv.new_dir("helper-exp")  # root's, 0755: only root may create here
    _put_file(export, "h.txt", "helper\n")
    mp = menv.mountpoint("root")
    # No user in the spec: were user=hashimnt taken as ssh's User, the login
    # would be hashimnt's (whose key file root's also is, in this shared
    # authorized_keys), and creating a file in root's 0755 export would fail.
    opts = ",".join(["rw", "nosuid", "nodev", "user=hashimnt", "_netdev", "noauto",
                     "x-systemd.idle-timeout=600", *root_ssh_words(menv)])
    argv = [str(link), f"127.0.0.1:{export}", str(mp), "-n", "-o", opts, "-t", "fuse.hashi"]
    try:
        r = subprocess.run(argv, executable=str(binary), capture_output=True, text=True,
                           env=path_env("/nonexistent"), timeout=RUN_TIMEOUT,
                           stdin=subprocess.DEVNULL, start_new_session=True, cwd="/")
        assert r.returncode == 0, f"{' '.join(argv)}:\n{r.stderr}"
        assert mount_fstype(mp) == "fuse.hashi"
        assert (mp / "h.txt").read_text() == "helper\n"
        (mp / "by-root.txt").write_text("x")
        assert os.stat(export / "by-root.txt").st_uid == 0, "logged in as the wrong user"
        pids = daemons_of(binary, mp)
        assert len(pids) == 1
        assert unmount_and_wait(binary, mp, pids) == [0]
    finally:
        cleanup_mount(binary, mp)


def test_installed_mount_helper_sloppy(installed, menv):
    """-s (mount -s): an unknown option is a warning, not an error; without
    -s it stops the mount."""
    link, binary = _installed_helper(installed, "mount.fuse.hashi")
    export = menv.new_dir("sloppy-exp")
    mp = menv.mountpoint("root")
    opts = ",".join(["no_such_option_here", *root_ssh_words(menv)])
    base = [str(link), f"root@127.0.0.1:{export}", str(mp)]
    try:
        r = subprocess.run(base + ["-o", opts], executable=str(binary), capture_output=True,
                           text=True, env=path_env("/nonexistent"), timeout=RUN_TIMEOUT,
                           stdin=subprocess.DEVNULL, start_new_session=True)
        assert r.returncode != 0 and "no_such_option_here" in r.stderr
        assert not mounted(mp)
        r = subprocess.run(base + ["-s", "-o", opts], executable=str(binary),
                           capture_output=True, text=True, env=path_env("/nonexistent"),
                           timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL,
                           start_new_session=True)
        assert r.returncode == 0, r.stderr
        assert "no_such_option_here" in r.stderr
        assert mount_fstype(mp) == "fuse.hashi"
        pids = daemons_of(binary, mp)
        assert unmount_and_wait(binary, mp, pids) == [0]
    finally:
        cleanup_mount(binary, mp)


def test_setuid_user_through_mount_fuse3(menv, tmp_path):
    """Root mounts for a user: mount -t fuse.hashi ... -o setuid=USER.
    mount.fuse3 handles setuid= itself (it becomes USER before it runs
    hashi): the daemon runs as USER with USER's key, the mount is USER's."""
    u = menv.user
    export = menv.new_dir("suid3-exp", owner=u)
    _put_file(export, "u.txt", "user's\n")
    u.chown(export)
    mp = menv.mountpoint("user")
    opts = ",".join([*root_ssh_words(menv, u), f"setuid={u.name}"])
    out = run_mount_in_ns(menv, tmp_path,
                          [MOUNT, "-t", "fuse.hashi", f"{u.name}@127.0.0.1:{export}", mp,
                           "-o", opts], mp, read=["u.txt"], write={"from-user.txt": "u"},
                          umount=[UMOUNT, str(mp)], as_account=u)
    check_mounted_report(out, "mount -t fuse.hashi -o setuid=")
    assert out["uids"] == [[u.uid, u.uid]], "the daemon does not run as the user"
    assert f"user_id={u.uid}" in out["fstype"][1].split(","), out["fstype"]
    assert out["root_refused"], "root could use a mount without allow_other"
    assert out["files"]["ok"]["u.txt"] == "user's\n"
    assert os.stat(export / "from-user.txt").st_uid == u.uid


def test_setuid_user_own_helper(installed, menv):
    """The same through our own handling: sbin/mount.fuse.hashi run by root
    (as mount(8) would) with -o setuid=USER drops to USER, with USER's HOME,
    before it connects."""
    u = menv.user
    export = menv.new_dir("suid-exp", owner=u)
    _put_file(export, "u.txt", "user's\n")
    u.chown(export)
    mp = menv.mountpoint("user")
    link, exe = _installed_helper(installed, "mount.fuse.hashi")
    # No IdentityFile: the key must be found in the user's HOME (~/.ssh),
    # which only works if hashi switched HOME as well as the uid.
    home_ssh = Path(u.home) / ".ssh"
    created = not home_ssh.exists()
    home_ssh.mkdir(mode=0o700, exist_ok=True)
    os.chown(home_ssh, u.uid, u.gid)
    key = home_ssh / "id_ed25519"
    had_key = key.exists()
    if not had_key:
        shutil.copy(u.key, key)
        os.chown(key, u.uid, u.gid)
        os.chmod(key, 0o600)
    words = [w for w in root_ssh_words(menv, u) if not w.startswith("IdentityFile=")]
    opts = ",".join([*words, f"setuid={u.name}"])
    cmd = [str(link), f"{u.name}@127.0.0.1:{export}", str(mp), "-n", "-o", opts]
    try:
        r = subprocess.run(cmd, executable=str(exe), capture_output=True, text=True,
                           timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL,
                           start_new_session=True, cwd="/", env=path_env("/nonexistent"))
        assert r.returncode == 0, f"{' '.join(cmd)}:\n{r.stdout}\n{r.stderr}"
        assert mount_fstype(mp) == "fuse.hashi"
        pids = daemons_of(exe, mp)
        assert len(pids) == 1, f"expected one daemon, found {pids}"
        assert proc_uids(pids[0]) == (u.uid, u.uid), "the daemon does not run as the user"
        assert f"user_id={u.uid}" in mount_super_options(mp), mount_super_options(mp)
        with pytest.raises(PermissionError):  # not allow_other: only the owner
            os.listdir(mp)
        assert run_as(u, lambda: Path(mp, "u.txt").read_text()) == "user's\n"
        run_as(u, lambda: Path(mp, "from-user.txt").write_text("u"))
        assert os.stat(export / "from-user.txt").st_uid == u.uid
        assert unmount_and_wait(exe, mp, pids) == [0]
    finally:
        cleanup_mount(exe, mp)
        if not had_key:
            key.unlink(missing_ok=True)
        if created:
            shutil.rmtree(home_ssh, ignore_errors=True)


# --------------------------------------------------------------------------
# -V, -h

def test_version_lines(menv):
    r = subprocess.run([menv.hashi, "-V"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    assert re.search(r"^hashi version \d+\.\d+\.\d+$", out, re.M), out
    assert re.search(r"^libssh2 version \d+\.\d+", out, re.M), out
    assert re.search(r"^FUSE library version 3\.\d+", out, re.M), out
    assert re.search(r"FUSE kernel interface version 7\.\d+", out), out
    # --version is the same
    r2 = subprocess.run([menv.hashi, "--version"], capture_output=True, text=True, timeout=60)
    assert r2.returncode == 0 and r2.stdout == r.stdout


def test_help_groups(menv):
    r = subprocess.run([menv.hashi, "-h"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for group in ("general options:", "connection options:", "cache options:",
                  "mapping options:", "FUSE options:"):
        assert re.search(rf"^{re.escape(group)}$", r.stdout, re.M), f"no '{group}' in -h"
    for opt in ("-o idmap=", "-o uidfile=", "-o gidfile=", "-o nomap=", "-o setuid=USER",
                "IdentityFile", "-o allow_other",
                "-o entry_timeout="):
        assert opt in r.stdout, f"-h does not mention {opt}"
    # The groups come in this order.
    pos = [r.stdout.index(g) for g in ("general options:", "connection options:",
                                       "cache options:", "mapping options:", "FUSE options:")]
    assert pos == sorted(pos)


# --------------------------------------------------------------------------
# -d: one line per SFTP request and reply

def test_debug_log_sftp_lines(menv, tmp_path):
    export = menv.new_dir("dbg-exp")
    _put_file(export, "d.txt", "debug me\n")
    mp = menv.mountpoint("root")
    errf = tmp_path / "stderr.log"
    args = [menv.hashi, f"root@127.0.0.1:{export}", str(mp), "-d", *menv.ssh_opts("root")]
    with open(errf, "wb") as err:
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=err, env=hashi_env(menv.root), cwd="/",
                             start_new_session=True)
    try:
        wait_until(lambda: mounted(mp) or p.poll() is not None, f"mount on {mp}")
        assert mounted(mp), f"hashi -d exited {p.returncode}:\n{errf.read_text()}"
        assert (mp / "d.txt").read_text() == "debug me\n"
        r = subprocess.run([FUSERMOUNT_BIN, "-u", str(mp)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert p.wait(timeout=30) == 0
    finally:
        if p.poll() is None:
            cleanup_mount(menv.hashi, mp)
            p.kill()
            p.wait()
    log = errf.read_text(errors="replace")
    opens = re.findall(r"sftp (\d+) -> OPEN\b.*d\.txt", log)
    assert opens, f"no 'sftp N -> OPEN ... d.txt' line in:\n{log[-4000:]}"
    n = opens[-1]
    assert re.search(rf"sftp {n} <- HANDLE\b", log), f"no 'sftp {n} <- HANDLE' line"
    assert re.search(r"sftp \d+ -> READ\b", log)
    assert re.search(r"sftp \d+ <- DATA\b", log)
    assert re.search(r"sftp \d+ -> CLOSE\b", log)
    # the hashi executable's EVP_Cipher took libssh2's calls (ctr-batch.c)
    assert re.search(r"cipher aes\d+-ctr, MAC \S+; AES-CTR contexts with batched keystream: 2",
                     log), log[:4000]


# --------------------------------------------------------------------------
# syslog once detached
#
# There is no syslog daemon (and no /dev/log) here. A helper script runs in
# a private mount namespace, puts a fresh tmpfs on /dev there (with
# bind mounts of the device nodes hashi needs), binds a datagram socket at
# /dev/log, and runs hashi, which daemonizes and logs into that socket. The
# host's /dev is never touched.

NS_SCRIPT = r'''
import json, os, select, socket, subprocess, sys, time
cfg = json.loads(sys.argv[1])
old = cfg["olddev"]
def sh(*a):
    subprocess.run(a, check=True, capture_output=True)
sh("mount", "--bind", "/dev", old)
sh("mount", "-t", "tmpfs", "-o", "mode=755", "hashi-test-dev", "/dev")
for n in ("null", "zero", "fuse", "urandom", "random", "tty"):
    open("/dev/" + n, "w").close()
    sh("mount", "--bind", old + "/" + n, "/dev/" + n)
log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
log.bind("/dev/log")
os.chmod("/dev/log", 0o666)
out = {"lines": []}
def drain(until, want=None):
    end = time.monotonic() + until
    while time.monotonic() < end:
        r, _, _ = select.select([log], [], [], max(0, end - time.monotonic()))
        if not r:
            break
        out["lines"].append(log.recv(65536).decode(errors="replace"))
        if want and any(want in l for l in out["lines"]):
            return True
    return False
env = cfg["env"]
r = subprocess.run(cfg["argv"], capture_output=True, text=True, env=env, cwd="/",
                   stdin=subprocess.DEVNULL, timeout=60)
out["rc"], out["stderr"] = r.returncode, r.stderr
if r.returncode == 0:
    mp = cfg["mp"]
    # a file read: with -v, debug lines for it reach syslog
    with open(os.path.join(mp, "s.txt")) as f:
        out["content"] = f.read()
    if cfg["expect_debug"]:
        drain(10, want=" -> OPEN")
    # break the connection: the daemon logs an error with the mount point
    pid = int(open(cfg["serverpid"]).read())
    os.kill(pid, 15)
    out["got_lost"] = drain(20, want="connection to the server lost")
    try:
        os.listdir(mp)
        out["after"] = "ok"
    except OSError as e:
        out["after"] = e.errno
    u = subprocess.run(["umount", mp], capture_output=True, text=True)
    out["umount"] = u.returncode
    drain(2)
print(json.dumps(out))
'''


def run_detached_syslog(menv, flags):
    """Mount (detached) in a namespace with our /dev/log, read a file, kill
    the server, unmount; returns (every syslog line received, mount point)."""
    work = Path(tempfile.mkdtemp(prefix="hashi-syslog-", dir="/tmp"))
    try:
        olddev = work / "olddev"
        olddev.mkdir()
        export = work / "exp"
        export.mkdir()
        (export / "s.txt").write_text("syslog\n")
        mp = work / "mnt"
        mp.mkdir()
        serverpid = work / "server.pid"
        wrapper = work / "server.sh"
        # transport=openssh through ssh_command: the "ssh" is a script that
        # records its pid and becomes a local hashi-sftp-server, so the test
        # can break the connection by killing it.
        wrapper.write_text(f"#!/bin/sh\necho $$ > {serverpid}\n"
                           f"exec {menv.hashi_server} -d {export}\n")
        wrapper.chmod(0o755)
        argv = [menv.hashi, f"local:{export}", str(mp), *flags,
                "-o", f"ssh_command={wrapper}", "-o", "noreconnect"]
        cfg = {"olddev": str(olddev), "argv": argv, "mp": str(mp),
               "serverpid": str(serverpid), "env": hashi_env(menv.root),
               "expect_debug": "-v" in flags}
        r = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable,
                            "-c", NS_SCRIPT, json.dumps(cfg)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"namespace script failed:\n{r.stdout}\n{r.stderr}"
        out = json.loads(r.stdout.strip().splitlines()[-1])
        assert out["rc"] == 0, f"hashi exited {out['rc']}: {out['stderr']}"
        assert out.get("content") == "syslog\n"
        lines = out["lines"]
        text = "\n".join(lines)
        assert out["got_lost"], f"no 'connection to the server lost' in syslog:\n{text}"
        lost = [ln for ln in lines if "connection to the server lost" in ln]
        # <PRI>TIMESTAMP hashi[PID]: /mount/point: message
        assert re.search(rf"hashi\[\d+\]: {re.escape(str(mp))}: connection to the server lost",
                         lost[0]), lost[0]
        assert lost[0].startswith("<27>"), f"not daemon.err: {lost[0]}"  # LOG_DAEMON|LOG_ERR
        for ln in lines:
            assert f": {mp}: " in ln, f"a syslog line without the mount point prefix: {ln}"
        assert out["after"] == errno.EIO or out["after"] == "ok"
        assert out["umount"] == 0
        return text, mp
    finally:
        cleanup_mount(menv.hashi, work / "mnt")
        if not mounted(work / "mnt"):
            shutil.rmtree(work, ignore_errors=True)


def test_syslog_when_detached(menv):
    """Detached, hashi logs to syslog (daemon facility), each line prefixed
    with the mount point."""
    run_detached_syslog(menv, [])


def test_syslog_debug_with_v(menv):
    """-v is "debug log, staying in the background": the sftp request lines
    must reach syslog once hashi is detached."""
    text, mp = run_detached_syslog(menv, ["-v"])
    assert re.search(rf"{re.escape(str(mp))}: debug1: sftp \d+ -> OPEN", text), \
        f"-v: no debug line for the OPEN in syslog:\n{text}"


# --------------------------------------------------------------------------
# "still connecting" on a terminal

def test_progress_on_terminal(menv, tmp_path):
    """A server that accepts and never speaks: on a terminal hashi says it is
    still connecting, then times out (ConnectTimeout=3) and exits non-zero."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4)
    port = lst.getsockname()[1]
    mp = tmp_path / "mnt"
    mp.mkdir()
    argv = [menv.hashi, "root@127.0.0.1:/", str(mp), "-F", str(menv.ssh_config),
            "-o", f"Port={port}", "-o", "ConnectTimeout=3", "-o", "BatchMode=yes",
            "-o", f"IdentityFile={menv.root.key}",
            "-o", f"UserKnownHostsFile={menv.sshd.known_hosts}"]
    env = hashi_env(menv.root)
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    conns = []
    out = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd, lst], [], [], deadline - time.monotonic())
            if lst in r:
                conns.append(lst.accept()[0])  # and never say anything
                continue
            if fd in r:
                try:
                    chunk = os.read(fd, 4096)
                except OSError as e:
                    if e.errno == errno.EIO:  # the child closed the pty
                        break
                    raise
                if not chunk:
                    break
                out += chunk
        _, status = os.waitpid(pid, 0)
        pid = None
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
        for c in conns:
            c.close()
        lst.close()
    text = out.decode(errors="replace").replace("\r", "")
    code = os.waitstatus_to_exitcode(status)
    assert conns, "hashi never connected to the listener"
    assert code != 0, f"hashi exited 0:\n{text}"
    assert "hashi: still connecting to 127.0.0.1" in text, text
    last = text.strip().splitlines()[-1]
    assert re.search(r"timed out|timeout", last, re.I), f"last line is not a timeout: {text}"
    assert not mounted(mp)


def test_no_progress_without_terminal(menv, tmp_path):
    """stderr a pipe (a script, mount(8) at boot): no progress lines."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4)
    port = lst.getsockname()[1]
    mp = tmp_path / "mnt"
    mp.mkdir()
    argv = [menv.hashi, "root@127.0.0.1:/", str(mp), "-F", str(menv.ssh_config),
            "-o", f"Port={port}", "-o", "ConnectTimeout=2", "-o", "BatchMode=yes"]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, env=hashi_env(menv.root),
                           stdin=subprocess.DEVNULL, timeout=60)
    finally:
        lst.close()
    assert r.returncode != 0
    assert "still connecting" not in r.stderr, r.stderr


# --------------------------------------------------------------------------
# mapping (idmap=), as the MAPPING section of hashi(1) describes it. Root
# mounts, logging in as the test user (root's key is in the shared
# authorized_keys), so remote and local ids differ in a way we can see.

def _idmap_mount(menv, opts):
    u = menv.user
    export = menv.new_dir("idmap-exp", owner=u)
    (export / "mine.txt").write_text("m")
    os.chown(export / "mine.txt", u.uid, u.gid)
    (export / "stranger.txt").write_text("s")
    os.chown(export / "stranger.txt", 4242, 4242)
    m = menv.mount("root", "openssh", export=export, opts=opts,
                   source=f"{u.name}@127.0.0.1:{export}")
    return m, export


def _owner(m, name):
    st = os.stat(m.path / name)
    return st.st_uid, st.st_gid


def test_idmap_none_is_default(menv):
    m, _ = _idmap_mount(menv, [])
    try:
        u = menv.user
        assert _owner(m, "mine.txt") == (u.uid, u.gid)
        assert _owner(m, "stranger.txt") == (4242, 4242)
    finally:
        assert m.unmount() == 0


def test_idmap_user(menv):
    """The remote login user (hashimnt) is shown as the local mounting user
    (root); other ids pass through."""
    m, export = _idmap_mount(menv, ["idmap=user"])
    try:
        assert _owner(m, "mine.txt") == (0, 0)
        assert _owner(m, "stranger.txt") == (4242, 4242)
        # and back: a file root creates is the remote user's
        (m.path / "new.txt").write_text("n")
        os.chown(m.path / "new.txt", 0, 0)
        st = os.stat(export / "new.txt")
        assert (st.st_uid, st.st_gid) == (menv.user.uid, menv.user.gid)
    finally:
        assert m.unmount() == 0


def test_idmap_file_and_nomap(menv, tmp_path):
    u = menv.user
    uidfile = tmp_path / "uidmap"
    uidfile.write_text(f"# local:remote\nroot:{u.uid}\n")
    os.chmod(uidfile, 0o600)
    m, _ = _idmap_mount(menv, [f"uidfile={uidfile}"])  # implies idmap=file, nomap=error
    try:
        assert _owner(m, "mine.txt")[0] == 0
        overflow = int(Path("/proc/sys/fs/overflowuid").read_text())
        assert _owner(m, "stranger.txt")[0] == overflow
        # gid: no gidfile, so gids pass through
        assert _owner(m, "stranger.txt")[1] == 4242
    finally:
        assert m.unmount() == 0
    m, _ = _idmap_mount(menv, [f"idmap=file,uidfile={uidfile},nomap=ignore"])
    try:
        assert _owner(m, "mine.txt")[0] == 0
        assert _owner(m, "stranger.txt")[0] == 4242
    finally:
        assert m.unmount() == 0


def test_idmap_bad_values(menv, tmp_path):
    mp = menv.mountpoint("root")
    base = [f"root@127.0.0.1:{menv.base}", str(mp), *menv.ssh_opts("root")]
    r = menv.run_hashi("root", base + ["-o", "idmap=bogus"])
    assert r.returncode != 0 and "idmap" in r.stderr
    r = menv.run_hashi("root", base + ["-o", "idmap=file"])
    assert r.returncode != 0 and "uidfile" in r.stderr
    r = menv.run_hashi("root", base + ["-o", "nomap=maybe"])
    assert r.returncode != 0 and "nomap" in r.stderr
    assert not mounted(mp)
