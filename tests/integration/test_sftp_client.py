"""Drive the servers with OpenSSH's own `sftp` (and `scp`) clients.

Most tests run four times: {hashi, openssh} x {direct, sshd}. "direct" is
`sftp -D SERVER`; "sshd" goes through the session sshd fixture, where our
server is sshd's configured `Subsystem sftp` and OpenSSH's is run with
`sftp -s PATH`. Behaviour that must be identical is asserted against the
literal output OpenSSH 9.2 gives, so the openssh runs check the tests
themselves.
"""

import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import OPENSSH_SFTP_SERVER, current_user, run_sftp_d

MiB = 1024 * 1024


def q(path):
    """Quote a path for an sftp batch line."""
    s = str(path)
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Client:
    """Runs sftp batches against one server over one transport."""

    def __init__(self, transport, server, sshd=None):
        self.transport = transport
        self.server = server
        self.is_hashi = server != OPENSSH_SFTP_SERVER
        self.sshd = sshd

    def __repr__(self):
        return f"Client({self.transport}, {self.server})"

    def server_cmd(self, server_args=""):
        return f"{self.server} {server_args}".strip()

    def run(self, batch, cwd=None, server_args="", check=False, client_args=()):
        """Run batch; with cwd, both the remote and the local directory start
        there (a `cd` and an `lcd` are prepended, and the client runs in it)."""
        if cwd is not None:
            batch = f"cd {q(cwd)}\nlcd {q(cwd)}\n" + batch
        if self.transport == "direct":
            r = run_sftp_d(self.server_cmd(server_args), batch, cwd=cwd, extra_args=client_args)
        else:
            # Our server as sshd's real Subsystem; OpenSSH's (or ours with
            # arguments) as a command sshd runs.
            sub = None if (self.is_hashi and not server_args) else self.server_cmd(server_args)
            r = self.sshd.sftp(batch, subsystem=sub, cwd=cwd, extra_args=client_args)
        if check:
            assert r.returncode == 0, f"sftp failed ({self}):\n{r.stdout}\n{r.stderr}"
        return r


@pytest.fixture(params=["direct", "sshd"])
def client(request, server_path):
    sshd = request.getfixturevalue("sshd") if request.param == "sshd" else None
    return Client(request.param, server_path, sshd)


@pytest.fixture
def direct_client(server_path):
    return Client("direct", server_path)


def batch_lines(stdout):
    """The non-echo lines of sftp's stdout."""
    return [l for l in stdout.splitlines() if not l.startswith("sftp> ")]


# --------------------------------------------------------------------------
# transfers

@pytest.mark.parametrize("size", [0, 1, 32768 + 17, 5 * MiB + 3], ids=lambda s: f"{s}B")
def test_put_get_roundtrip(client, workdir, size):
    data = os.urandom(size)
    (workdir / "local").write_bytes(data)
    r = client.run("put local remote\nget remote back\n", cwd=workdir, check=True)
    assert (workdir / "remote").read_bytes() == data
    assert (workdir / "back").read_bytes() == data
    assert r.stderr == ""


def test_put_get_into_directory(client, workdir):
    (workdir / "src").mkdir()
    (workdir / "dst").mkdir()
    (workdir / "src" / "f1").write_bytes(b"one")
    (workdir / "src" / "f2").write_bytes(b"two" * 1000)
    client.run("put src/f* dst\nlmkdir back\nget dst/* back\n", cwd=workdir, check=True)
    for name in ("f1", "f2"):
        assert (workdir / "dst" / name).read_bytes() == (workdir / "src" / name).read_bytes()
        assert (workdir / "back" / name).read_bytes() == (workdir / "src" / name).read_bytes()


def test_put_get_recursive(client, workdir):
    src = workdir / "tree"
    (src / "a" / "b").mkdir(parents=True)
    (src / "top").write_bytes(os.urandom(1000))
    (src / "a" / "mid").write_bytes(b"")
    (src / "a" / "b" / "deep").write_bytes(os.urandom(70000))
    client.run("put -R tree up\nget -R up down\n", cwd=workdir, check=True)
    for rel in ("top", "a/mid", "a/b/deep"):
        assert (workdir / "up" / rel).read_bytes() == (src / rel).read_bytes()
        assert (workdir / "down" / rel).read_bytes() == (src / rel).read_bytes()


@pytest.mark.parametrize("client_args", [("-B", "512", "-R", "1"), ("-B", "4096", "-R", "512"),
                                         ("-B", "261120", "-R", "64"), ("-B", "200000", "-R", "8")],
                         ids=lambda a: "B{}-R{}".format(a[1], a[3]))
def test_transfer_request_sizes(client, workdir, client_args):
    """Odd, tiny, many and large read/write requests (-B above the 256 KiB
    packet limit is refused by the client itself)."""
    data = os.urandom(3 * MiB + 999)
    (workdir / "local").write_bytes(data)
    client.run("put local remote\nget remote back\n", cwd=workdir, check=True,
               client_args=client_args)
    assert (workdir / "remote").read_bytes() == data
    assert (workdir / "back").read_bytes() == data


def test_put_to_fifo_with_reader(client, workdir):
    """Deliberate difference: OpenSSH lseek()s before every write, which a
    FIFO refuses (ESPIPE), so its put fails; hashi writes the data."""
    os.mkfifo(workdir / "fifo")
    (workdir / "local").write_bytes(b"through the pipe\n")
    rfd = os.open(workdir / "fifo", os.O_RDONLY | os.O_NONBLOCK)
    try:
        r = client.run("put local fifo\n", cwd=workdir)
        if client.is_hashi:
            assert r.returncode == 0, r.stderr
            assert os.read(rfd, 1000) == b"through the pipe\n"
        else:
            assert r.returncode == 1
            assert r.stderr == f'write remote "{workdir}/fifo": Failure\n'
    finally:
        os.close(rfd)


def test_put_to_fifo_without_reader_does_not_block(client, workdir):
    """hashi opens without blocking, so a FIFO with no reader is ENXIO
    (SSH_FX_FAILURE) at once; OpenSSH would wait forever for a reader."""
    if not client.is_hashi:
        pytest.skip("OpenSSH's server blocks in open(2) here")
    os.mkfifo(workdir / "fifo")
    (workdir / "local").write_bytes(b"x")
    r = client.run("put local fifo\npwd\n", cwd=workdir)
    assert r.returncode == 1
    assert r.stderr == f'dest open "{workdir}/fifo": Failure\n'


def test_put_overwrites_and_truncates(client, workdir):
    (workdir / "remote").write_bytes(b"x" * 100000)
    (workdir / "local").write_bytes(b"short")
    client.run("put local remote\n", cwd=workdir, check=True)
    assert (workdir / "remote").read_bytes() == b"short"


def test_put_fsync(client, workdir):
    data = os.urandom(100000)
    (workdir / "local").write_bytes(data)
    client.run("put -f local remote\nget -f remote back\n", cwd=workdir, check=True)
    assert (workdir / "remote").read_bytes() == data
    assert (workdir / "back").read_bytes() == data


def test_put_p_preserves_mode_and_times(client, workdir):
    f = workdir / "local"
    f.write_bytes(b"some data")
    f.chmod(0o640)
    os.utime(f, (1000000000, 1234567890))
    client.run("put -p local remote\n", cwd=workdir, check=True)
    st = os.stat(workdir / "remote")
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert int(st.st_mtime) == 1234567890
    assert int(st.st_atime) == 1000000000


def test_get_p_preserves_mode_and_times(client, workdir):
    f = workdir / "remote"
    f.write_bytes(b"other data")
    f.chmod(0o604)
    os.utime(f, (1100000000, 1300000000))
    client.run("get -p remote local\n", cwd=workdir, check=True)
    st = os.stat(workdir / "local")
    assert stat.S_IMODE(st.st_mode) == 0o604
    assert int(st.st_mtime) == 1300000000
    assert int(st.st_atime) == 1100000000


def test_put_new_file_mode_follows_local_file(client, workdir):
    f = workdir / "local"
    f.write_bytes(b"x")
    f.chmod(0o600)
    client.run("put local remote\n", cwd=workdir, check=True)
    assert stat.S_IMODE(os.stat(workdir / "remote").st_mode) == 0o600


def test_reput_resumes_upload(client, workdir):
    data = os.urandom(3 * MiB + 5)
    (workdir / "local").write_bytes(data)
    (workdir / "remote").write_bytes(data[:1000001])
    client.run("reput local remote\n", cwd=workdir, check=True)
    assert (workdir / "remote").read_bytes() == data


def test_put_a_resumes_upload(client, workdir):
    data = os.urandom(200000)
    (workdir / "local").write_bytes(data)
    (workdir / "remote").write_bytes(data[:65536])
    client.run("put -a local remote\n", cwd=workdir, check=True)
    assert (workdir / "remote").read_bytes() == data


def test_reget_resumes_download(client, workdir):
    data = os.urandom(3 * MiB + 5)
    (workdir / "remote").write_bytes(data)
    (workdir / "local").write_bytes(data[:777777])
    client.run("reget remote local\n", cwd=workdir, check=True)
    assert (workdir / "local").read_bytes() == data


GiB = 1024 * MiB


def test_reget_past_4gib(client, workdir):
    """64-bit offsets: resume a sparse 4 GiB download for its last bytes."""
    tail = os.urandom(100000)
    with open(workdir / "remote", "wb") as f:
        f.seek(4 * GiB + 12345)
        f.write(tail)
    with open(workdir / "local", "wb") as f:
        f.truncate(4 * GiB + 12345)
    client.run("reget remote local\n", cwd=workdir, check=True)
    assert os.path.getsize(workdir / "local") == 4 * GiB + 12345 + len(tail)
    with open(workdir / "local", "rb") as f:
        f.seek(4 * GiB + 12345 - 10)
        assert f.read() == bytes(10) + tail


def test_reput_past_4gib(client, workdir):
    tail = os.urandom(100000)
    with open(workdir / "local", "wb") as f:
        f.seek(4 * GiB + 54321)
        f.write(tail)
    with open(workdir / "remote", "wb") as f:
        f.truncate(4 * GiB + 54321)
    client.run("reput local remote\n", cwd=workdir, check=True)
    assert os.path.getsize(workdir / "remote") == 4 * GiB + 54321 + len(tail)
    with open(workdir / "remote", "rb") as f:
        f.seek(4 * GiB + 54321 - 10)
        assert f.read() == bytes(10) + tail


ODD_NAMES = ["with space", "\u00fcn\u00efc\u00f6d\u00e9", 'dq"uote', "sq'uote", "back\\slash",
             "glob*star", "q?mark", "[br]", "-dash", "tab\tname", "new\nline", "%percent%s",
             "trailing space ", " leading", "\u65e5\u672c\u8a9e"]


def test_odd_names_roundtrip(client, workdir):
    src = workdir / "odd"
    src.mkdir()
    for i, n in enumerate(ODD_NAMES):
        (src / n).write_bytes(n.encode() * (i + 1))
    (src / "sub dir").mkdir()
    (src / "sub dir" / "in*side").write_bytes(b"deep")
    client.run("put -R odd up\nget -R up down\n", cwd=workdir, check=True)
    for top in ("up", "down"):
        assert sorted(os.listdir(workdir / top)) == sorted(ODD_NAMES + ["sub dir"])
        for n in ODD_NAMES:
            assert (workdir / top / n).read_bytes() == (src / n).read_bytes()
        assert (workdir / top / "sub dir" / "in*side").read_bytes() == b"deep"


def test_get_from_fifo_does_not_need_a_writer_for_other_requests(client, workdir):
    # `ls -l` on a directory holding a FIFO stats it but must not block.
    os.mkfifo(workdir / "fifo")
    (workdir / "f").write_bytes(b"x")
    r = client.run("ls -l\n", cwd=workdir, check=True)
    assert "fifo" in r.stdout


# --------------------------------------------------------------------------
# directory listings

def _make_tree(d):
    """A directory with one of nearly everything ls -l can show."""
    d.mkdir(exist_ok=True)
    (d / "file").write_bytes(b"0123456789")
    (d / "empty").write_bytes(b"")
    (d / "with space").write_bytes(b"s")
    (d / ("n" * 255)).write_bytes(b"NAME_MAX")
    (d / "dir").mkdir()
    (d / "dir" / "inner").write_bytes(b"i")
    os.symlink("file", d / "link")
    os.symlink("does-not-exist", d / "dangling")
    with open(d / "big", "wb") as f:  # sparse, 11 digits
        f.truncate(10 * 1024 * MiB + 1)
    (d / "old").write_bytes(b"old")
    os.utime(d / "old", (946684800, 946684800))          # 2000-01-01
    (d / "future").write_bytes(b"future")
    future = int(time.time()) + 2 * 365 * 86400
    os.utime(d / "future", (future, future))
    (d / "orphan").write_bytes(b"no user, no group")
    os.chown(d / "orphan", 12345, 23456)
    for name in ("systemd-timesync", "messagebus", "nobody"):  # long/other names
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        p = d / f"owned-by-{name}"
        p.write_bytes(b"x")
        os.chown(p, pw.pw_uid, pw.pw_gid)
    (d / "setuid").write_bytes(b"")
    os.chmod(d / "setuid", 0o4755)
    (d / "setgid").write_bytes(b"")
    os.chmod(d / "setgid", 0o2750)
    (d / "sticky").mkdir()
    os.chmod(d / "sticky", 0o1777)
    (d / "setuid-noexec").write_bytes(b"")
    os.chmod(d / "setuid-noexec", 0o4644)
    (d / "noperm").write_bytes(b"")
    os.chmod(d / "noperm", 0)
    os.link(d / "file", d / "hardlink")
    os.mkfifo(d / "fifo")
    try:
        os.mknod(d / "chardev", 0o644 | stat.S_IFCHR, os.makedev(1, 3))
        os.mknod(d / "blockdev", 0o600 | stat.S_IFBLK, os.makedev(7, 200))
    except PermissionError:
        pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(d / "socket"))
    s.close()
    return d


def test_ls_longname_matches_openssh(hashi_server, openssh_server, workdir):
    """READDIR's longname is what `ls -l` prints when the client cannot map
    ids to names itself (users-groups-by-id denied): it must be OpenSSH's
    format byte for byte, for the same tree."""
    tree = _make_tree(workdir / "tree")
    batch = f"ls -la {q(tree)}\nls -l {q(tree / 'dir')}\n"
    outs = {}
    for name, srv in (("openssh", openssh_server), ("hashi", hashi_server)):
        r = run_sftp_d(f"{srv} -P users-groups-by-id", batch)
        assert r.returncode == 0, r.stderr
        outs[name] = r.stdout
    lines = batch_lines(outs["openssh"])
    # Sanity of the reference: longname shows real link counts, not "?".
    assert any(l.startswith("-rw-r--r--    2 ") and l.endswith(" file") for l in lines)
    assert any(" 23456 " in l and l.endswith(" orphan") for l in lines)
    assert outs["hashi"] == outs["openssh"]


@pytest.mark.parametrize("flags", ["-l", "-ln", "-la", "-lh", "-1", "-lS", "-lt", "-lr", "-a"])
def test_ls_client_formatted_matches_openssh(hashi_server, openssh_server, workdir, flags):
    """With users-groups-by-id (or -n/-h) the client formats from ATTRS: the
    attributes and the id-to-name answers must agree with OpenSSH's."""
    tree = _make_tree(workdir / "tree")
    os.utime(tree / "empty", (1500000000, 1500000000))  # -lt needs distinct times
    batch = f"ls {flags} {q(tree)}\n"
    r_open = run_sftp_d(openssh_server, batch)
    r_hashi = run_sftp_d(hashi_server, batch)
    assert r_open.returncode == 0, r_open.stderr
    assert (r_hashi.returncode, r_hashi.stdout, r_hashi.stderr) == \
        (r_open.returncode, r_open.stdout, r_open.stderr)


def test_ls_through_sshd_matches_direct(sshd, server_path, workdir):
    tree = _make_tree(workdir / "tree")
    batch = f"ls -la {q(tree)}\nls -ln {q(tree)}\n"
    direct = run_sftp_d(f"{server_path} -P users-groups-by-id", batch)
    via = sshd.sftp(batch, subsystem=f"{server_path} -P users-groups-by-id")
    assert direct.returncode == 0 and via.returncode == 0, (direct.stderr, via.stderr)
    assert via.stdout == direct.stdout


def test_ls_glob_and_many_entries(client, workdir):
    names = [f"n{i:04d}" for i in range(1500)]
    for n in names:
        (workdir / n).write_bytes(b"")
    (workdir / "other").write_bytes(b"")
    r = client.run("ls -1 n*\nls -1 -f\n", cwd=workdir, check=True)
    out = batch_lines(r.stdout)
    assert out[:1500] == names
    assert sorted(out[1500:]) == sorted(names + ["other"])


def test_lls_lists_local_directory(client, workdir):
    (workdir / "local-only").write_bytes(b"x")
    r = client.run("lls\nlpwd\n", cwd=workdir, check=True)
    assert "local-only" in r.stdout
    assert f"Local working directory: {workdir}" in r.stdout


# --------------------------------------------------------------------------
# namespace operations

def test_mkdir_rmdir(client, workdir):
    client.run("mkdir newdir\n", cwd=workdir, check=True)
    st = os.stat(workdir / "newdir")
    assert stat.S_ISDIR(st.st_mode)
    client.run("rmdir newdir\n", cwd=workdir, check=True)
    assert not (workdir / "newdir").exists()


def test_mkdir_mode_uses_server_umask(direct_client, workdir):
    old = os.umask(0o027)
    try:
        direct_client.run("mkdir d\n", cwd=workdir, check=True)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(workdir / "d").st_mode) == 0o750


def test_rm(client, workdir):
    (workdir / "victim").write_bytes(b"x")
    (workdir / "g1").write_bytes(b"x")
    (workdir / "g2").write_bytes(b"x")
    (workdir / "keep").write_bytes(b"x")
    client.run("rm victim\nrm g*\n", cwd=workdir, check=True)
    assert sorted(p.name for p in workdir.iterdir()) == ["keep"]


def test_rename_posix_overwrites(client, workdir):
    """sftp's `rename` uses posix-rename@openssh.com when offered: it replaces."""
    (workdir / "a").write_bytes(b"A")
    (workdir / "b").write_bytes(b"B")
    (workdir / "d1").mkdir()
    (workdir / "d2").mkdir()
    client.run("rename a b\nrename d1 d2\nrename b c\n", cwd=workdir, check=True)
    assert (workdir / "c").read_bytes() == b"A"
    assert not (workdir / "a").exists() and not (workdir / "b").exists()
    assert not (workdir / "d1").exists() and (workdir / "d2").is_dir()


def test_rename_legacy_never_overwrites(client, workdir):
    """`rename -l` sends plain SSH_FXP_RENAME, which must not replace an
    existing file (OpenSSH: link+unlink; hashi: RENAME_NOREPLACE)."""
    (workdir / "a").write_bytes(b"A")
    (workdir / "b").write_bytes(b"B")
    r = client.run("rename -l a b\n", cwd=workdir)
    assert r.returncode == 1
    assert r.stderr == f'remote rename "{workdir}/a" to "{workdir}/b": Failure\n'
    assert (workdir / "a").read_bytes() == b"A"
    assert (workdir / "b").read_bytes() == b"B"
    # Nor a directory onto a directory.
    (workdir / "d1").mkdir()
    (workdir / "d2").mkdir()
    r = client.run("rename -l d1 d2\n", cwd=workdir)
    assert r.returncode == 1
    assert r.stderr == f'remote rename "{workdir}/d1" to "{workdir}/d2": Failure\n'
    assert (workdir / "d1").is_dir()
    # To a new name it works, for files and directories.
    client.run("rename -l a c\nrename -l d1 d3\n", cwd=workdir, check=True)
    assert (workdir / "c").read_bytes() == b"A"
    assert not (workdir / "a").exists()
    assert (workdir / "d3").is_dir() and not (workdir / "d1").exists()


def test_symlink(client, workdir):
    (workdir / "target").write_bytes(b"t")
    client.run("ln -s target sl\nsymlink ../elsewhere sl2\n", cwd=workdir, check=True)
    assert os.readlink(workdir / "sl") == "target"
    assert os.readlink(workdir / "sl2") == "../elsewhere"
    r = client.run("get sl back\n", cwd=workdir, check=True)
    assert (workdir / "back").read_bytes() == b"t", r.stdout


def test_hardlink(client, workdir):
    (workdir / "target").write_bytes(b"t")
    client.run("ln target hl\n", cwd=workdir, check=True)
    a, b = os.stat(workdir / "target"), os.stat(workdir / "hl")
    assert (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
    assert a.st_nlink == 2


def test_chmod(client, workdir):
    (workdir / "f").write_bytes(b"")
    (workdir / "d").mkdir()
    (workdir / "g").write_bytes(b"")
    client.run("chmod 640 f\nchmod 2711 d\nchmod 7777 g\n", cwd=workdir, check=True)
    assert stat.S_IMODE(os.stat(workdir / "f").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(workdir / "g").st_mode) == 0o7777
    assert stat.S_IMODE(os.stat(workdir / "d").st_mode) == 0o2711


def test_chmod_follows_symlink(client, workdir):
    (workdir / "f").write_bytes(b"")
    os.chmod(workdir / "f", 0o644)
    os.symlink("f", workdir / "sl")
    client.run("chmod 600 sl\n", cwd=workdir, check=True)
    assert stat.S_IMODE(os.stat(workdir / "f").st_mode) == 0o600


def test_chmod_h_on_symlink_fails_like_openssh(client, workdir):
    """lsetstat on a symlink: Linux cannot chmod a symlink, OpenSSH answers
    SSH_FX_FAILURE."""
    (workdir / "f").write_bytes(b"")
    os.chmod(workdir / "f", 0o644)
    os.symlink("f", workdir / "sl")
    r = client.run("chmod -h 600 sl\n", cwd=workdir)
    assert r.returncode == 1
    assert r.stderr == f'remote lsetstat "{workdir}/sl": Failure\n'
    assert stat.S_IMODE(os.stat(workdir / "f").st_mode) == 0o644


@pytest.mark.skipif(os.getuid() != 0, reason="chown needs root")
def test_chown_chgrp_numeric(client, workdir):
    (workdir / "f").write_bytes(b"")
    client.run("chown 4321 f\nchgrp 8765 f\n", cwd=workdir, check=True)
    st = os.stat(workdir / "f")
    assert (st.st_uid, st.st_gid) == (4321, 8765)


@pytest.mark.skipif(os.getuid() != 0, reason="chown needs root")
def test_chown_h_changes_the_link_not_the_target(client, workdir):
    (workdir / "f").write_bytes(b"")
    os.symlink("f", workdir / "sl")
    client.run("chown -h 777 sl\nchgrp -h 778 sl\n", cwd=workdir, check=True)
    lst, st = os.lstat(workdir / "sl"), os.stat(workdir / "f")
    assert (lst.st_uid, lst.st_gid) == (777, 778)
    assert (st.st_uid, st.st_gid) == (0, 0)


def test_copy_data(client, workdir):
    data = os.urandom(2 * MiB + 11)
    (workdir / "src").write_bytes(data)
    (workdir / "existing").write_bytes(b"y" * (3 * MiB))
    client.run("copy src dst\ncp src existing\ncp src sub_is_missing_ok\n",
               cwd=workdir, check=True)
    assert (workdir / "dst").read_bytes() == data
    assert (workdir / "existing").read_bytes() == data
    assert (workdir / "sub_is_missing_ok").read_bytes() == data


def test_copy_empty_file(client, workdir):
    (workdir / "src").write_bytes(b"")
    client.run("copy src dst\n", cwd=workdir, check=True)
    assert (workdir / "dst").read_bytes() == b""


def test_copy_onto_itself_fails(client, workdir):
    # The client opens the destination with O_TRUNC before it asks for
    # copy-data, so the data is gone either way; the server must still refuse.
    (workdir / "a").write_bytes(b"content")
    r = client.run("copy a a\n", cwd=workdir)
    assert r.returncode == 1
    assert r.stderr == f'Couldn\'t copy file "{workdir}/a" to "{workdir}/a": Failure\n'


def test_copy_through_hardlink_onto_itself(client, workdir):
    """Deliberate difference: OpenSSH only compares the two handles' path
    names, so a hard link to the source gets "copied" (the client's O_TRUNC
    open has already emptied it); hashi compares inodes and refuses."""
    (workdir / "a").write_bytes(b"content")
    os.link(workdir / "a", workdir / "b")
    r = client.run("copy a b\n", cwd=workdir)
    if client.is_hashi:
        assert r.returncode == 1
        assert r.stderr == f'Couldn\'t copy file "{workdir}/a" to "{workdir}/b": Failure\n'
    else:
        assert r.returncode == 0, r.stderr


def test_df(client, workdir):
    r = client.run("df\ndf -i\ndf -h\n", cwd=workdir, check=True)
    lines = batch_lines(r.stdout)
    assert lines[0].split() == ["Size", "Used", "Avail", "(root)", "%Capacity"]
    assert lines[2].split() == ["Inodes", "Used", "Avail", "(root)", "%Capacity"]
    assert lines[4].split() == ["Size", "Used", "Avail", "(root)", "%Capacity"]
    vfs = os.statvfs(workdir)
    size_kib = int(lines[1].split()[0])
    assert size_kib == vfs.f_blocks * vfs.f_frsize // 1024
    assert int(lines[3].split()[0]) == vfs.f_files
    for l in (lines[1], lines[3]):
        assert all(x.isdigit() for x in l.split()[:4])
        assert l.split()[4].endswith("%")


def test_df_path(client, workdir):
    (workdir / "sub").mkdir()
    r = client.run(f"df {q(workdir / 'sub')}\n", check=True)
    vfs = os.statvfs(workdir)
    assert int(batch_lines(r.stdout)[1].split()[0]) == vfs.f_blocks * vfs.f_frsize // 1024


def test_version_and_pwd(client, workdir):
    r = client.run("version\n", cwd=workdir, check=True)
    assert "SFTP protocol version 3" in r.stdout
    (workdir / "sub").mkdir()
    r = client.run("pwd\ncd sub\npwd\ncd ..\npwd\ncd\npwd\n", cwd=workdir, check=True)
    assert [l for l in batch_lines(r.stdout)] == [
        f"Remote working directory: {workdir}",
        f"Remote working directory: {workdir}/sub",
        f"Remote working directory: {workdir}",
        # bare `cd` goes back to where the session started
        "Remote working directory: " + (os.path.realpath(pwd.getpwuid(os.getuid()).pw_dir)
                                        if client.transport == "sshd" else str(workdir)),
    ]


def test_start_directory_is_home_through_sshd(sshd, server_path):
    sub = None if server_path != OPENSSH_SFTP_SERVER else server_path
    r = sshd.sftp("pwd\n", subsystem=sub)
    assert r.returncode == 0, r.stderr
    home = os.path.realpath(os.path.expanduser("~" + current_user()))
    assert batch_lines(r.stdout) == [f"Remote working directory: {home}"]


# --------------------------------------------------------------------------
# expand-path@openssh.com (used by scp for ~user paths)

def test_scp_tilde_user_direct(server_path, workdir):
    user = current_user()
    home = Path(os.path.expanduser("~" + user))
    name = f".hashi-test-{os.getpid()}-{workdir.parent.name}"
    (home / name).write_bytes(b"in the home directory\n")
    try:
        r = subprocess.run(["scp", "-D", server_path, f"x:~{user}/{name}", str(workdir / "got")],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert (workdir / "got").read_bytes() == b"in the home directory\n"
    finally:
        (home / name).unlink()


def test_scp_tilde_unknown_user(server_path, workdir):
    r = subprocess.run(["scp", "-D", server_path, "x:~no-such-user-hashi/f", str(workdir / "got")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert r.stderr == "scp: expand ~no-such-user-hashi/f: no such user\n"
    assert not (workdir / "got").exists()


def test_scp_through_sshd(sshd, server_path, workdir):
    """scp (SFTP mode) through sshd: upload, download, and ~ / ~user paths."""
    # scp's SFTP mode always asks sshd for its "sftp" subsystem, i.e. hashi;
    # it has no switch to run another server program.
    if server_path == OPENSSH_SFTP_SERVER:
        pytest.skip("scp always uses sshd's configured subsystem")
    user = current_user()
    data = os.urandom(300000)
    (workdir / "up").write_bytes(data)
    r = sshd.scp(workdir / "up", sshd.remote(workdir / "remote"))
    assert r.returncode == 0, r.stderr
    assert (workdir / "remote").read_bytes() == data
    home = Path(os.path.expanduser("~" + user))
    name = f".hashi-test-{os.getpid()}-{workdir.parent.name}"
    try:
        r = sshd.scp(workdir / "up", sshd.remote(f"~/{name}"))
        assert r.returncode == 0, r.stderr
        assert (home / name).read_bytes() == data
        r = sshd.scp(sshd.remote(f"~{user}/{name}"), workdir / "down")
        assert r.returncode == 0, r.stderr
        assert (workdir / "down").read_bytes() == data
    finally:
        if (home / name).exists():
            (home / name).unlink()


# --------------------------------------------------------------------------
# error messages: what the user sees must be what OpenSSH's server produces

def _setup_errors(d):
    (d / "file").write_bytes(b"data")
    (d / "dir").mkdir()
    (d / "dir" / "inside").write_bytes(b"")
    (d / "nonempty").mkdir()
    (d / "nonempty" / "x").write_bytes(b"")
    os.symlink("file", d / "sl")
    os.symlink("loop", d / "loop")


LONG = "x" * 300  # one component longer than NAME_MAX


# (command, expected stderr with {d} for the directory); all exit 1.
ERROR_CASES = [
    ("get nope", 'File "{d}/nope" not found.\n'),
    ("reget nope", 'File "{d}/nope" not found.\n'),
    ("get dir", 'download {d}/dir/: not a regular file\n'),
    ("rm nope", "remote delete {d}/nope: No such file or directory\n"),
    ("rm dir", "remote delete {d}/dir: Failure\n"),
    ("rmdir nope", 'remote rmdir "{d}/nope": No such file or directory\n'),
    # ENOTDIR maps to SSH_FX_NO_SUCH_FILE
    ("rmdir file", 'remote rmdir "{d}/file": No such file or directory\n'),
    ("rmdir nonempty", 'remote rmdir "{d}/nonempty": Failure\n'),
    ("mkdir dir", 'remote mkdir "{d}/dir": Failure\n'),
    ("mkdir file", 'remote mkdir "{d}/file": Failure\n'),
    ("mkdir nope/sub", 'remote mkdir "{d}/nope/sub": No such file or directory\n'),
    ("rename nope x", 'remote rename "{d}/nope" to "{d}/x": No such file or directory\n'),
    ("rename -l nope x", 'remote rename "{d}/nope" to "{d}/x": No such file or directory\n'),
    ("rename file nope/x", 'remote rename "{d}/file" to "{d}/nope/x": No such file or directory\n'),
    ("ls nope", 'Can\'t ls: "{d}/nope" not found\n'),
    ("cd nope", "stat remote: No such file or directory\n"),
    ("cd file", 'Can\'t change directory: "{d}/file" is not a directory\n'),
    ("chmod 600 nope", 'remote setstat "{d}/nope": No such file or directory\n'),
    ("chown 5 nope", "stat remote: No such file or directory\n"),
    ("ln -s file sl", 'remote symlink file "file" to "{d}/sl": Failure\n'),
    ("ln file sl", 'remote link "{d}/file" to "{d}/sl": Failure\n'),
    ("ln nope z", 'remote link "{d}/nope" to "{d}/z": No such file or directory\n'),
    ("copy nope z", "stat remote: No such file or directory\n"),
    ("copy dir z", "Cannot copy non-regular file: {d}/dir\n"),
    ("copy file nope/z", 'remote open("{d}/nope/z"): No such file or directory\n'),
    ("put nope", "stat nope: No such file or directory\n"),
    ("put file nope/x", 'dest open "{d}/nope/x": No such file or directory\n'),
    ("df nope", ""),
    # directories and files in each other's way
    ("rename dir nonempty", 'remote rename "{d}/dir" to "{d}/nonempty": Failure\n'),
    ("rename -l dir nonempty", 'remote rename "{d}/dir" to "{d}/nonempty": Failure\n'),
    ("rename file dir", 'remote rename "{d}/file" to "{d}/dir": Failure\n'),
    ("rename dir file", 'remote rename "{d}/dir" to "{d}/file": No such file or directory\n'),
    ("get file/x", 'File "{d}/file/x" not found.\n'),
    # ELOOP is SSH_FX_NO_SUCH_FILE; the client shows the server's message text
    ("cd loop", "realpath {d}/loop: No such file\n"),
    ("get loop", "stat remote: No such file or directory\n"),
    ("rm loop/x", "remote delete {d}/loop/x: No such file or directory\n"),
    ("chmod 600 loop", 'remote setstat "{d}/loop": No such file or directory\n'),
    ("rmdir loop", 'remote rmdir "{d}/loop": No such file or directory\n'),
    # ENAMETOOLONG is SSH_FX_BAD_MESSAGE in OpenSSH's errno mapping
    ("ls {L}", 'Can\'t ls: "{d}/{L}" not found\n'),
    ("get {L}", 'File "{d}/{L}" not found.\n'),
    ("mkdir {L}", 'remote mkdir "{d}/{L}": Bad message\n'),
    ("rename file {L}", 'remote rename "{d}/file" to "{d}/{L}": Bad message\n'),
    ("ln -s file {L}", 'remote symlink file "file" to "{d}/{L}": Bad message\n'),
]


@pytest.mark.parametrize("command,expected", ERROR_CASES,
                         ids=[c.replace("{L}", "LONG") for c, _ in ERROR_CASES])
def test_error_messages(client, workdir, command, expected):
    _setup_errors(workdir)
    before = sorted(os.listdir(workdir))
    r = client.run(command.format(L=LONG) + "\n", cwd=workdir)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stderr == expected.format(d=workdir, L=LONG)
    assert sorted(os.listdir(workdir)) == before


def test_batch_continues_after_ignored_error(client, workdir):
    (workdir / "f").write_bytes(b"x")
    r = client.run("-rm nope\n-get nope\nrm f\n", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert not (workdir / "f").exists()


@pytest.fixture
def shared_dir():
    """A directory outside tmp_path (whose parents are 0700) that the
    unprivileged user can reach."""
    d = Path(tempfile.mkdtemp(prefix="hashi-perm-", dir="/tmp"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


# Run as nobody against root's files: (command, expected stderr).
PERM_CASES = [
    ("get secret", 'remote open "{d}/secret": Permission denied\n'),
    ("rm public", "remote delete {d}/public: Permission denied\n"),
    ("mkdir new", 'remote mkdir "{d}/new": Permission denied\n'),
    ("rmdir sub", 'remote rmdir "{d}/sub": Permission denied\n'),
    ("rename public p2", 'remote rename "{d}/public" to "{d}/p2": Permission denied\n'),
    ("rename -l public p2", 'remote rename "{d}/public" to "{d}/p2": Permission denied\n'),
    ("chmod 777 public", 'remote setstat "{d}/public": Permission denied\n'),
    ("put /etc/hostname new", 'dest open "{d}/new": Permission denied\n'),
    ("put /etc/hostname public", 'dest open "{d}/public": Permission denied\n'),
    ("ln -s public sl", 'remote symlink file "public" to "{d}/sl": Permission denied\n'),
    ("ln public hl", 'remote link "{d}/public" to "{d}/hl": Permission denied\n'),
    ("ls closed", 'remote readdir("{d}/closed/"): Permission denied\n'),
    ("cd closed/x", "realpath {d}/closed/x: Permission denied\n"),
    ("copy public new", 'remote open("{d}/new"): Permission denied\n'),
    ("copy secret new", 'remote open("{d}/secret"): Permission denied\n'),
]


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to switch to nobody")
@pytest.mark.parametrize("command,expected", PERM_CASES, ids=[c for c, _ in PERM_CASES])
def test_permission_denied_messages(server_path, shared_dir, command, expected):
    d = shared_dir
    (d / "secret").write_bytes(b"s")
    os.chmod(d / "secret", 0o600)
    (d / "public").write_bytes(b"p")
    os.chmod(d / "public", 0o644)
    (d / "sub").mkdir()
    (d / "closed").mkdir(mode=0o700)
    os.chmod(d / "closed", 0o700)
    before = sorted(os.listdir(d))
    cmd = f"setpriv --reuid=65534 --regid=65534 --clear-groups {server_path}"
    r = run_sftp_d(cmd, f"cd {q(d)}\n{command}\n", cwd="/tmp")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stderr == expected.format(d=d)
    assert sorted(os.listdir(d)) == before
    assert (d / "public").read_bytes() == b"p"


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to switch to nobody")
def test_unsearchable_directory_listing(server_path, shared_dir):
    """A directory nobody may read but not search: READDIR cannot lstat the
    entries, and OpenSSH leaves them out (so `ls` shows nothing, no error)."""
    d = shared_dir
    (d / "rdonly").mkdir()
    (d / "rdonly" / "a").write_bytes(b"")
    (d / "rdonly" / "b").write_bytes(b"")
    os.chmod(d / "rdonly", 0o744)
    cmd = f"setpriv --reuid=65534 --regid=65534 --clear-groups {server_path} -P users-groups-by-id"
    r = run_sftp_d(cmd, f"cd {q(d)}\nls -l rdonly\nls -1 rdonly\nls -l\n", cwd="/tmp")
    assert r.returncode == 0, r.stderr
    assert batch_lines(r.stdout)[0].startswith("drwxr--r--    2 root     root ")
    assert len(batch_lines(r.stdout)) == 1
