"""hashi's command line and life cycle: help, version, bad arguments, the
remote directory, ssh options in any case, going to the background,
unmounting (fusermount3 -u, SIGTERM) and the daemon's exit status."""

import os
import select
import signal
import stat
import subprocess
import tempfile
import time

import pytest

from mountfix import *  # noqa: F401,F403 - fixtures
from mountfix import _wait_for, force_unmount


def lines(text):
    return [ln for ln in text.splitlines() if ln.strip()]


def hashi_plain(menv, *args, who="root"):
    return menv.run_hashi(who, list(args))


def assert_nothing_mounted(menv, mp):
    assert not mounted(mp), f"{mp} was left mounted"
    assert find_daemon(menv.hashi, mp) == []


# --------------------------------------------------------------------------
# no connection needed

@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help(menv, flag):
    r = hashi_plain(menv, flag)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: hashi [user@]host:[dir] mountpoint")
    for word in ("-o sftp_server=", "-o password_stdin", "fusermount3 -u", "-f "):
        assert word in r.stdout
    assert r.stderr == ""


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(menv, flag):
    r = hashi_plain(menv, flag)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0].startswith("hashi version ")
    assert any(ln.startswith("FUSE library version 3.") for ln in out)
    assert any(ln.startswith("libssh2 version 1.") for ln in out)


@pytest.mark.parametrize("args,named", [
    (["-o", "frobnicate=1"], "'frobnicate'"),
    (["-o", "allow_other,frobnicate"], "'frobnicate'"),
    (["--frobnicate"], "'--frobnicate'"),
    (["-Z"], "'-Z'"),
])
def test_unknown_option_is_named(menv, args, named):
    mp = menv.mountpoint("root")
    r = hashi_plain(menv, "root@127.0.0.1:/tmp", str(mp), *args)
    assert r.returncode != 0
    assert "unknown option" in r.stderr and named in r.stderr, r.stderr
    assert_nothing_mounted(menv, mp)


@pytest.mark.parametrize("args,message", [
    ([], "missing host:dir argument"),
    (["127.0.0.1:/tmp"], "missing mountpoint"),
    (["127.0.0.1:/tmp", "/tmp", "-o"], "option '-o' needs an argument"),
    (["127.0.0.1:/tmp", "/tmp", "-p"], "option '-p' needs an argument"),
    (["127.0.0.1:/tmp", "/tmp", "-p", "notaport"], "bad port 'notaport'"),
    (["127.0.0.1:/tmp", "/tmp", "-o", "entry_timeout=soon"], "entry_timeout"),
    (["127.0.0.1:/tmp", "/tmp", "-o", "Port"], "needs a value"),
    (["127.0.0.1:/tmp", "/tmp", "extra"], "too many arguments"),
])
def test_bad_arguments(menv, args, message):
    r = hashi_plain(menv, *args)
    assert r.returncode != 0
    assert message in r.stderr, r.stderr
    assert r.stdout == ""


def test_bad_mount_point(menv):
    missing = menv.base / "no-such-dir"
    r = hashi_plain(menv, "root@127.0.0.1:/tmp", str(missing))
    assert r.returncode != 0
    assert lines(r.stderr)[0] == \
        f"hashi: bad mount point '{missing}': No such file or directory", r.stderr
    f = menv.new_dir("file") / "plain"
    f.write_text("x")
    r = hashi_plain(menv, "root@127.0.0.1:/tmp", str(f))
    assert r.returncode != 0
    assert f"bad mount point '{f}': Not a directory" in r.stderr
    assert not mounted(f)


# --------------------------------------------------------------------------
# the remote directory

@pytest.mark.parametrize("server", SERVERS)
def test_missing_remote_dir(menv, server):
    mp = menv.mountpoint("root")
    args = [f"root@127.0.0.1:{menv.base}/no/such/dir", str(mp),
            *menv.ssh_opts("root"), *menv.server_opts(server)]
    r = menv.run_hashi("root", args)
    assert r.returncode != 0
    assert len(lines(r.stderr)) == 1, r.stderr
    assert "No such file or directory" in r.stderr and "no/such/dir" in r.stderr
    assert_nothing_mounted(menv, mp)


@pytest.mark.parametrize("server", SERVERS)
def test_remote_path_is_a_file(menv, server):
    f = menv.new_dir("exp") / "file"
    f.write_text("x")
    mp = menv.mountpoint("root")
    r = menv.run_hashi("root", [f"root@127.0.0.1:{f}", str(mp), *menv.ssh_opts("root"),
                                *menv.server_opts(server)])
    assert r.returncode != 0
    assert "Not a directory" in r.stderr, r.stderr
    assert_nothing_mounted(menv, mp)


@pytest.mark.parametrize("who", WHO)
def test_home_directory_and_relative_path(menv, who):
    """host: alone is the login directory; a relative path is below it."""
    a = menv.account(who)
    sub = f"hashi-mount-test-{os.getpid()}"
    home_sub = os.path.join(a.home, sub)
    os.makedirs(home_sub, exist_ok=True)
    a.chown(home_sub)
    try:
        m = menv.mount(who, "openssh", source=f"{a.name}@127.0.0.1:")
        assert m.do(lambda: sub in os.listdir(m.path))
        assert m.unmount() == 0
        with open(os.path.join(home_sub, "hello"), "w") as f:
            f.write("rel")
        a.chown(home_sub)
        m = menv.mount(who, "hashi", source=f"{a.name}@127.0.0.1:{sub}")
        assert m.do(lambda: (m.path / "hello").read_text()) == "rel"
        assert m.unmount() == 0
    finally:
        subprocess.run(["rm", "-rf", home_sub])


# --------------------------------------------------------------------------
# ssh options

def test_lower_case_ssh_options(menv):
    export = menv.new_dir("exp")
    (export / "hello").write_text("lc")
    opts = (f"port={menv.sshd.port},identityfile={menv.root.key},identitiesonly=yes,"
            f"userknownhostsfile={menv.sshd.known_hosts},globalknownhostsfile=/dev/null,"
            f"stricthostkeychecking=yes,batchmode=yes")
    m = menv.mount("root", "openssh", export=export,
                   extra=["-F", str(menv.ssh_config), "-o", opts])
    assert (m.path / "hello").read_text() == "lc"
    assert m.unmount() == 0


def test_dash_p_port(menv):
    export = menv.new_dir("exp")
    (export / "hello").write_text("p")
    opts = menv.ssh_opts("root")
    i = opts.index(f"Port={menv.sshd.port}")
    extra = opts[:i - 1] + opts[i + 1:] + ["-p", str(menv.sshd.port)]
    m = menv.mount("root", "hashi", export=export, extra=extra)
    assert (m.path / "hello").read_text() == "p"
    assert m.unmount() == 0


def test_mount_options_ro_uid_umask(menv):
    export = menv.new_dir("exp")
    (export / "f").write_text("x")
    os.chmod(export / "f", 0o666)
    m = menv.mount("root", "openssh", export=export,
                   opts=["ro", "uid=1234,gid=5678", "umask=027"])
    st = os.stat(m.path / "f")
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    assert stat.S_IMODE(st.st_mode) == 0o640
    with pytest.raises(OSError) as ei:
        open(m.path / "f", "w")
    assert ei.value.errno == 30  # EROFS
    with pytest.raises(OSError) as ei:
        os.mkdir(m.path / "d")
    assert ei.value.errno == 30
    assert (export / "f").read_text() == "x"
    assert m.unmount() == 0


def test_user_mount_refused_by_fusermount(menv):
    """When fusermount3 refuses (allow_other without user_allow_other, a
    mount point the user may not write), hashi exits non-zero with
    fusermount3's reason and leaves nothing behind."""
    with open("/etc/fuse.conf") as f:
        if any(ln.strip() == "user_allow_other" for ln in f):
            pytest.skip("user_allow_other is set in /etc/fuse.conf")
    mp = menv.mountpoint("user")
    export = menv.new_dir("exp", owner=menv.user)
    args = [f"{TEST_USER}@127.0.0.1:{export}", str(mp), *menv.ssh_opts("user")]
    r = menv.run_hashi("user", args + ["-o", "allow_other"])
    assert r.returncode != 0
    assert "allow_other" in r.stderr and "user_allow_other" in r.stderr, r.stderr
    assert_nothing_mounted(menv, mp)
    rootdir = menv.new_dir("mnt")  # root's, mode 0755
    r = menv.run_hashi("user", [f"{TEST_USER}@127.0.0.1:{export}", str(rootdir),
                                *menv.ssh_opts("user")])
    assert r.returncode != 0
    assert "user has no write access to mountpoint" in r.stderr, r.stderr
    assert f"cannot mount on '{rootdir}'" in r.stderr, r.stderr
    assert_nothing_mounted(menv, rootdir)


# --------------------------------------------------------------------------
# life cycle

@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("server", SERVERS)
def test_fusermount_u_daemon_exits_0(menv, who, server):
    m = menv.mount(who, server)
    pid = m.pid
    assert pid not in (os.getpid(),)
    # a daemon: its own session, in /, no terminal
    assert os.getsid(pid) == pid
    assert os.readlink(f"/proc/{pid}/cwd") == "/"
    with open(f"/proc/{pid}/status") as f:
        uid = int([ln for ln in f if ln.startswith("Uid:")][0].split()[1])
    assert uid == m.who.uid
    with open("/proc/self/mountinfo") as f:
        line = [ln for ln in f if f" {m.path} " in ln][0]
    assert f"fuse.hashi {m.who.name}@127.0.0.1:{m.export} " in line
    r = subprocess.run(["fusermount3", "-u", str(m.path)], capture_output=True, text=True,
                       user=m.who.uid, group=m.who.gid, extra_groups=[], cwd="/")
    assert r.returncode == 0, r.stderr
    assert not mounted(m.path)
    assert wait_pid(pid) == 0
    assert os.listdir(m.path) == []


def test_foreground(menv):
    export = menv.new_dir("exp")
    (export / "hello").write_text("fg")
    mp = menv.mountpoint("root")
    argv = [menv.hashi, f"root@127.0.0.1:{export}", str(mp), "-f", *menv.ssh_opts("root")]
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                             start_new_session=True, env=hashi_env(menv.root))
        try:
            _wait_for(lambda: mounted(mp) or p.poll() is not None, "the foreground mount")
            assert p.poll() is None, "hashi -f exited"
            assert mount_fstype(mp) == "fuse.hashi"
            assert find_daemon(menv.hashi, mp) == [p.pid], "it did not fork"
            assert (mp / "hello").read_text() == "fg"
            r = subprocess.run(["fusermount3", "-u", str(mp)], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            assert p.wait(timeout=30) == 0
        finally:
            if p.poll() is None:
                force_unmount(menv.hashi, mp)
                p.kill()
                p.wait()
            err.seek(0)
            print(err.read().decode(errors="replace"))
    assert not mounted(mp)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_signal_unmounts_cleanly(menv, sig):
    m = menv.mount("root", "hashi")
    (m.path / "written").write_text("before the signal")
    os.kill(m.pid, sig)
    m.exit_status = wait_pid(m.pid)
    assert m.exit_status is not None and m.exit_status >= 0, \
        f"hashi died of the signal ({m.exit_status}) instead of handling it"
    assert not mounted(m.path), "the signal left the mount behind"
    assert (m.export / "written").read_text() == "before the signal"
    assert os.listdir(m.path) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_signal_exit_status_0(menv, sig):
    m = menv.mount("root", "openssh")
    os.kill(m.pid, sig)
    m.exit_status = wait_pid(m.pid)
    assert not mounted(m.path)
    assert m.exit_status == 0, f"hashi exited {m.exit_status} after {sig.name}"


def test_unmount_while_busy_lazily(menv):
    """fusermount3 -u on a busy mount fails; -uz detaches it, and the daemon
    exits once the last file is closed."""
    m = menv.mount("root", "openssh")
    (m.export / "f").write_text("busy")
    f = open(m.path / "f")
    try:
        r = subprocess.run(["fusermount3", "-u", str(m.path)], capture_output=True, text=True)
        assert r.returncode != 0 and "busy" in r.stderr
        assert mounted(m.path)
        r = subprocess.run(["fusermount3", "-uz", str(m.path)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert not mounted(m.path)
        assert f.read() == "busy", "an open file still works after a lazy unmount"
    finally:
        f.close()
    status = wait_pid(m.pid)
    assert status == 0
    m.exit_status = 0


def _returns_and_closes_stderr(menv, args, mp):
    """Run hashi with a pipe as stderr; once it has gone to the background,
    the pipe must reach EOF (nothing of ours keeps it open)."""
    p = subprocess.Popen([menv.hashi, *args], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True, env=hashi_env(menv.root))
    try:
        assert p.wait(timeout=RUN_TIMEOUT) == 0, p.stderr.read1(65536).decode()
        assert mounted(mp)
        for pipe in (p.stderr, p.stdout):
            fd = pipe.fileno()
            deadline = time.monotonic() + 5
            while True:
                left = deadline - time.monotonic()
                ready = left > 0 and select.select([fd], [], [], left)[0]
                assert ready, ("a process left by hashi holds its stdout/stderr open: a "
                               "caller that reads them (a script's $(...), subprocess.run "
                               "with capture_output) waits until the unmount")
                if os.read(fd, 65536) == b"":
                    break
    finally:
        p.stdout.close()
        p.stderr.close()
        force_unmount(menv.hashi, mp)


def test_stderr_pipe_reaches_eof(menv):
    mp = menv.mountpoint("root")
    export = menv.new_dir("exp")
    _returns_and_closes_stderr(menv, [f"root@127.0.0.1:{export}", str(mp),
                                      *menv.ssh_opts("root")], mp)


def test_stderr_pipe_reaches_eof_openssh_transport(menv):
    mp = menv.mountpoint("root")
    export = menv.new_dir("exp")
    _returns_and_closes_stderr(menv, [f"root@127.0.0.1:{export}", str(mp),
                                      *menv.ssh_opts("root"), "-o", "transport=openssh"], mp)
