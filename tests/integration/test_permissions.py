"""-P (deny), -p (allow) and -R (read-only): for every request name the
servers know, the verdict our server gives must be the expected one and the
same as OpenSSH's sftp-server under the same flags.

A request is "refused" when it gets SSH_FX_PERMISSION_DENIED. The check comes
before any argument is looked at, so requests that take a handle are probed
with a handle that names nothing: allowed, they fail some other way.
"""

import os

import pytest

from sftpwire import (
    Attrs, EXTENSIONS, FX_PERMISSION_DENIED, FXF_APPEND, FXF_CREAT, FXF_EXCL,
    FXF_READ, FXF_TRUNC, FXF_WRITE, FXP_ATTRS, FXP_DATA, FXP_EXTENDED_REPLY,
    FXP_HANDLE, FXP_NAME, HASHI_EXTENSIONS, SFTPWire, query_requests,
)

ALL_REQUESTS = [
    "open", "close", "read", "write", "lstat", "fstat", "setstat", "fsetstat",
    "opendir", "readdir", "remove", "mkdir", "rmdir", "realpath", "stat", "rename",
    "readlink", "symlink", "posix-rename", "statvfs", "fstatvfs", "hardlink", "fsync",
    "lsetstat", "limits", "expand-path", "copy-data", "home-directory",
    "users-groups-by-id",
]
MUTATING = {"write", "setstat", "fsetstat", "remove", "mkdir", "rmdir", "rename", "symlink",
            "posix-rename", "hardlink", "fsync", "lsetstat", "copy-data"}

NOHANDLE = b"\xff\xff\xff\xf0\0\0\0\0"  # names no open handle in either server

PROBES = {
    "open": lambda c: c.open("file", FXF_READ),
    "close": lambda c: c.close_handle(NOHANDLE),
    "read": lambda c: c.read(NOHANDLE, 0, 10),
    "write": lambda c: c.write(NOHANDLE, 0, b"x"),
    "lstat": lambda c: c.lstat("file"),
    "fstat": lambda c: c.fstat(NOHANDLE),
    "setstat": lambda c: c.setstat("file", Attrs(perm=0o644)),
    "fsetstat": lambda c: c.fsetstat(NOHANDLE, Attrs(perm=0o644)),
    "opendir": lambda c: c.opendir("."),
    "readdir": lambda c: c.readdir(NOHANDLE),
    "remove": lambda c: c.remove("rm-me"),
    "mkdir": lambda c: c.mkdir("newdir"),
    "rmdir": lambda c: c.rmdir("rmdir-me"),
    "realpath": lambda c: c.realpath("."),
    "stat": lambda c: c.stat("file"),
    "rename": lambda c: c.rename("ren-src", "ren-dst"),
    "readlink": lambda c: c.readlink("link"),
    "symlink": lambda c: c.symlink("newlink", "file"),
    "posix-rename": lambda c: c.posix_rename("pren-src", "pren-dst"),
    "statvfs": lambda c: c.statvfs("."),
    "fstatvfs": lambda c: c.fstatvfs(NOHANDLE),
    "hardlink": lambda c: c.hardlink("file", "hard"),
    "fsync": lambda c: c.fsync(NOHANDLE),
    "lsetstat": lambda c: c.lsetstat("link", Attrs(atime=1000000, mtime=1000000)),
    "limits": lambda c: c.limits(),
    "expand-path": lambda c: c.expand_path("~"),
    "copy-data": lambda c: c.copy_data(NOHANDLE, 0, 0, NOHANDLE, 0),
    "home-directory": lambda c: c.home_directory("root"),
    "users-groups-by-id": lambda c: c.users_groups_by_id([0], [0]),
}

OPEN_FLAGS = {
    "READ": FXF_READ,
    "READ|APPEND": FXF_READ | FXF_APPEND,
    "READ|EXCL": FXF_READ | FXF_EXCL,
    "WRITE": FXF_WRITE,
    "READ|WRITE": FXF_READ | FXF_WRITE,
    "WRITE|APPEND": FXF_WRITE | FXF_APPEND,
    "READ|CREAT": FXF_READ | FXF_CREAT,
    "READ|TRUNC": FXF_READ | FXF_TRUNC,
    "CREAT|EXCL new": FXF_READ | FXF_CREAT | FXF_EXCL,
    "none": 0,
}


def make_tree(d):
    os.makedirs(d)
    with open(os.path.join(d, "file"), "wb") as f:
        f.write(b"file contents")
    for n in ("rm-me", "ren-src", "pren-src"):
        open(os.path.join(d, n), "wb").close()
    os.mkdir(os.path.join(d, "rmdir-me"))
    os.symlink("file", os.path.join(d, "link"))


class Verdicts:
    """One server session under some flags: which requests it refuses."""

    def __init__(self, server, tree, args):
        make_tree(tree)
        self.tree = tree
        self.conn = SFTPWire([server, "-e", *args], cwd=tree)
        # OpenSSH's extensions only: ours (test_hashi_ext.py) come on top.
        self.advertised = set(self.conn.extensions) - set(HASHI_EXTENSIONS)

    def close(self):
        self.conn.shutdown()

    def probe(self, name):
        r = PROBES[name](self.conn)
        return "refused" if r.status == FX_PERMISSION_DENIED else "allowed"

    def all(self):
        return {name: self.probe(name) for name in ALL_REQUESTS}

    def open_flags(self):
        out = {}
        for label, flags in OPEN_FLAGS.items():
            path = "new-" + label.replace("|", "-").replace(" ", "") if "CREAT" in label \
                else "file"
            r = self.conn.open(path, flags)
            out[label] = "refused" if r.status == FX_PERMISSION_DENIED else "allowed"
            if r.type == FXP_HANDLE:
                self.conn.close_handle(r.handle).ok()
        return out


def verdicts(server, tree, args, what="all"):
    v = Verdicts(server, tree, args)
    try:
        result = v.open_flags() if what == "open" else v.all()
        return result, v.advertised
    finally:
        v.close()


def ext_names(names):
    return {EXTENSIONS[n][0] for n in names if n in EXTENSIONS}


ALL_EXTENSION_NAMES = ext_names(ALL_REQUESTS)


def test_query_requests(hashi_server, openssh_server):
    ours = query_requests(hashi_server)
    assert ours == query_requests(openssh_server) + HASHI_EXTENSIONS
    assert ours == ALL_REQUESTS + HASHI_EXTENSIONS


def test_unrestricted_allows_everything(hashi_server, openssh_server, tmp_path):
    for server, sub in ((hashi_server, "h"), (openssh_server, "o")):
        v, adv = verdicts(server, str(tmp_path / sub), [])
        assert v == {n: "allowed" for n in ALL_REQUESTS}, server
        assert adv == ALL_EXTENSION_NAMES


@pytest.mark.parametrize("name", ALL_REQUESTS)
def test_deny_one(hashi_server, openssh_server, tmp_path, name):
    ours, ours_adv = verdicts(hashi_server, str(tmp_path / "h"), ["-P", name])
    theirs, theirs_adv = verdicts(openssh_server, str(tmp_path / "o"), ["-P", name])
    expected = {n: ("refused" if n == name else "allowed") for n in ALL_REQUESTS}
    assert theirs == expected, "OpenSSH does not behave as this test expects"
    assert ours == expected
    assert ours_adv == theirs_adv == ALL_EXTENSION_NAMES - ext_names([name])


@pytest.mark.parametrize("name", ALL_REQUESTS)
def test_allow_one(hashi_server, openssh_server, tmp_path, name):
    ours, ours_adv = verdicts(hashi_server, str(tmp_path / "h"), ["-p", name])
    theirs, theirs_adv = verdicts(openssh_server, str(tmp_path / "o"), ["-p", name])
    expected = {n: ("allowed" if n == name else "refused") for n in ALL_REQUESTS}
    assert theirs == expected, "OpenSSH does not behave as this test expects"
    assert ours == expected
    assert ours_adv == theirs_adv == ext_names([name])


def test_readonly(hashi_server, openssh_server, tmp_path):
    ours, ours_adv = verdicts(hashi_server, str(tmp_path / "h"), ["-R"])
    theirs, theirs_adv = verdicts(openssh_server, str(tmp_path / "o"), ["-R"])
    expected = {n: ("refused" if n in MUTATING else "allowed") for n in ALL_REQUESTS}
    assert theirs == expected, "OpenSSH does not behave as this test expects"
    assert ours == expected
    assert ours_adv == theirs_adv == ALL_EXTENSION_NAMES - ext_names(MUTATING)


def test_readonly_open_flags(hashi_server, openssh_server, tmp_path):
    ours, _ = verdicts(hashi_server, str(tmp_path / "h"), ["-R"], "open")
    theirs, _ = verdicts(openssh_server, str(tmp_path / "o"), ["-R"], "open")
    expected = {label: ("refused" if flags & (FXF_WRITE | FXF_CREAT | FXF_TRUNC) else "allowed")
                for label, flags in OPEN_FLAGS.items()}
    assert theirs == expected, "OpenSSH does not behave as this test expects"
    assert ours == expected
    # nothing was created
    assert not [n for n in os.listdir(tmp_path / "h") if n.startswith("new-")]


def test_open_flags_unrestricted(hashi_server, openssh_server, tmp_path):
    ours, _ = verdicts(hashi_server, str(tmp_path / "h"), [], "open")
    theirs, _ = verdicts(openssh_server, str(tmp_path / "o"), [], "open")
    assert ours == theirs == {label: "allowed" for label in OPEN_FLAGS}


@pytest.mark.parametrize("server", ["hashi", "openssh"])
def test_readonly_reads_work(request, workdir, server):
    path = request.getfixturevalue(server + "_server")
    make_tree(str(workdir / "t"))
    with SFTPWire([path, "-e", "-R"], cwd=str(workdir / "t")) as c:
        h = c.open("file", FXF_READ).ok(FXP_HANDLE).handle
        assert c.read(h, 0, 100).ok(FXP_DATA).data == b"file contents"
        assert c.fstat(h).ok(FXP_ATTRS).attrs.size == 13
        c.write(h, 0, b"no").expect(FX_PERMISSION_DENIED)
        c.fsetstat(h, Attrs(perm=0o600)).expect(FX_PERMISSION_DENIED)
        c.fsync(h).expect(FX_PERMISSION_DENIED)
        assert c.fstatvfs(h).ok(FXP_EXTENDED_REPLY).extra["namemax"] > 0
        c.close_handle(h).ok()
        names = {n for n, _, _ in c.listdir(".")}
        assert {"file", "link", "rm-me", "rmdir-me"} <= names
        assert c.stat("link").ok(FXP_ATTRS).attrs.size == 13
        assert c.lstat("link").type == FXP_ATTRS
        assert c.readlink("link").ok(FXP_NAME).name == "file"
        assert c.realpath(".").ok(FXP_NAME).name == os.path.realpath(workdir / "t")
        assert c.expand_path("~").ok(FXP_NAME).name == os.path.realpath(workdir / "t")
        assert c.statvfs(".").type == FXP_EXTENDED_REPLY
        assert c.limits().type == FXP_EXTENDED_REPLY
        assert c.users_groups_by_id([0], [0]).extra == (["root"], ["root"])
        assert c.home_directory("root").type == FXP_NAME
        c.remove("rm-me").expect(FX_PERMISSION_DENIED)
        c.mkdir("d").expect(FX_PERMISSION_DENIED)
        c.symlink("l", "file").expect(FX_PERMISSION_DENIED)
        c.open("file", FXF_WRITE).expect(FX_PERMISSION_DENIED)
    assert (workdir / "t" / "rm-me").exists()
    assert (workdir / "t" / "file").read_bytes() == b"file contents"


@pytest.mark.parametrize("args", [
    ["-P", "remove,mkdir,limits"],
    ["-p", "open,read,close,stat,limits"],
    ["-p", "stat,open,lstat", "-P", "open"],  # the deny list wins
    ["-R", "-p", "write,read,stat"],          # -R wins over an allow list
    ["-R", "-P", "read"],
    ["-P", "nosuchrequest"],                  # unknown names are ignored
    ["-p", "open,nosuchrequest"],
    ["-P", "stat,", ],                        # an empty element matches nothing
    ["-P", "STAT"],                           # names are case-sensitive
])
def test_combinations_agree(hashi_server, openssh_server, tmp_path, args):
    ours = verdicts(hashi_server, str(tmp_path / "h"), args)
    theirs = verdicts(openssh_server, str(tmp_path / "o"), args)
    assert ours == theirs
