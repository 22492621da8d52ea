"""Connecting: what hashi says when a mount cannot start, and the ways in
that must work (an RSA key through OpenSSH, ProxyJump, a Host alias, a
password). A mount that fails exits non-zero with OpenSSH's words and leaves
nothing mounted and no daemon behind."""

import os
import re
import subprocess
from pathlib import Path

import pytest

from mountfix import *  # noqa: F401,F403 - fixtures
from mountfix import find_daemon, _free_port  # noqa: F401


def lines(text):
    return [ln for ln in text.splitlines() if ln.strip()]


def attempt(menv, who, args, input=None, mountpoint=None):
    """Run hashi SOURCE MOUNTPOINT args...; return (result, mountpoint)."""
    a = menv.account(who)
    mp = mountpoint or menv.mountpoint(a)
    export = menv.new_dir("exp", owner=a)
    r = menv.run_hashi(a, [f"{a.name}@127.0.0.1:{export}", str(mp), *args], input=input)
    return r, mp


def assert_failed(r, mp, menv, *phrases, one_line=True):
    assert r.returncode != 0, f"hashi exited 0:\n{r.stderr}"
    for p in phrases:
        assert p in r.stderr, f"{p!r} not in hashi's stderr:\n{r.stderr}"
    if one_line:
        assert len(lines(r.stderr)) == 1, f"not one line:\n{r.stderr}"
    assert not mounted(mp), f"{mp} was left mounted"
    assert find_daemon(menv.hashi, mp) == [], "a hashi process was left behind"
    assert os.listdir(mp) == []


def keygen(path, type_="ed25519", owner=None, bits=None):
    args = ["ssh-keygen", "-q", "-t", type_, "-N", "", "-C", "hashi-test", "-f", str(path)]
    if bits:
        args[2:2] = ["-b", str(bits)]
    subprocess.run(args, check=True, capture_output=True)
    if owner is not None:
        for p in (path, str(path) + ".pub"):
            os.chown(p, owner.uid, owner.gid)
    return Path(str(path) + ".pub").read_text()


def check_and_unmount(m, expect_text=None):
    if expect_text is not None:
        assert m.do(lambda: (m.path / "hello").read_text()) == expect_text
    assert m.unmount() == 0


def accepted(sshd, how, user):
    return len(re.findall(rf"Accepted {how} for {user} from", sshd.log_text()))


# --------------------------------------------------------------------------
# failures

def test_wrong_port(menv):
    port = _free_port()  # nothing listens there now
    r, mp = attempt(menv, "root", menv.ssh_opts("root", port=port))
    assert_failed(r, mp, menv, "Connection refused", f"port {port}")


@pytest.mark.parametrize("who", ["root", "user"])
def test_wrong_key(menv, who):
    a = menv.account(who)
    key = menv.new_dir("key", owner=a, mode=0o700) / "unknown"
    keygen(key, owner=a)
    r, mp = attempt(menv, who, menv.ssh_opts(who, key=key))
    assert_failed(r, mp, menv, "Permission denied", f"{a.name}@127.0.0.1")


def test_unknown_host_strict(menv):
    kh = menv.new_dir("kh") / "known_hosts"
    kh.write_text("")
    r, mp = attempt(menv, "root", menv.ssh_opts("root", known_hosts=kh, strict="yes"))
    assert_failed(r, mp, menv, "Host key verification failed", one_line=False)
    assert lines(r.stderr)[-1].endswith("Host key verification failed.")
    assert kh.read_text() == "", "nothing was added to known_hosts"


def test_unknown_host_accept_new(menv):
    """The counterpart: accept-new mounts and remembers the key."""
    kh = menv.new_dir("kh") / "known_hosts"
    kh.write_text("")
    export = menv.new_dir("exp")
    (export / "hello").write_text("hi")
    m = menv.mount("root", "openssh", export=export,
                   extra=menv.ssh_opts("root", known_hosts=kh, strict="accept-new"))
    assert menv.sshd.host_pub[1] in kh.read_text()
    check_and_unmount(m, "hi")


def test_changed_host_key(menv):
    d = menv.new_dir("kh")
    keygen(d / "other_host_key")
    other = (d / "other_host_key.pub").read_text().split()
    kh = d / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{menv.sshd.port} {other[0]} {other[1]}\n")
    r, mp = attempt(menv, "root", menv.ssh_opts("root", known_hosts=kh, strict="yes"))
    assert_failed(r, mp, menv, "REMOTE HOST IDENTIFICATION HAS CHANGED",
                  "Host key verification failed", one_line=False)
    assert lines(r.stderr)[-1].endswith("Host key verification failed.")
    assert f"{kh}:1" in r.stderr, "the offending line is named"


@pytest.mark.parametrize("who", ["root", "user"])
def test_unprotected_key(menv, who):
    a = menv.account(who)
    key = menv.new_dir("key", owner=a, mode=0o700) / "id_ed25519"
    menv.authorize(keygen(key, owner=a))
    os.chmod(key, 0o644)
    r, mp = attempt(menv, who, menv.ssh_opts(who, key=key))
    assert_failed(r, mp, menv, "UNPROTECTED PRIVATE KEY FILE", "Permission denied",
                  one_line=False)
    assert "Permissions 0644" in r.stderr and str(key) in r.stderr


def test_rsa_key_falls_back_to_openssh(menv):
    """libssh2 1.10 cannot sign with rsa-sha2, which OpenSSH 9 requires: hashi
    says so and mounts through OpenSSH's ssh with the same key."""
    key = menv.new_dir("key", mode=0o700) / "id_rsa"
    menv.authorize(keygen(key, "rsa", bits=2048))
    export = menv.new_dir("exp")
    (export / "hello").write_text("rsa")
    before = accepted(menv.sshd, "publickey", "root")
    m = menv.mount("root", "openssh", export=export, extra=menv.ssh_opts("root", key=key))
    assert "RSA-SHA2" in m.stderr, m.stderr
    assert "falling back to OpenSSH's ssh" in m.stderr, m.stderr
    assert accepted(menv.sshd, "publickey", "root") == before + 1
    assert "RSA SHA256:" in menv.sshd.log_text()
    check_and_unmount(m, "rsa")


def test_rsa_key_fallback_with_our_server(menv):
    key = menv.new_dir("key", mode=0o700) / "id_rsa"
    menv.authorize(keygen(key, "rsa", bits=2048))
    export = menv.new_dir("exp")
    (export / "hello").write_text("rsa-hashi")
    m = menv.mount("root", "hashi", export=export, extra=menv.ssh_opts("root", key=key))
    assert "falling back" in m.stderr
    check_and_unmount(m, "rsa-hashi")


# --------------------------------------------------------------------------
# other ways in

def _config(menv, path, text):
    path.write_text(text)
    os.chmod(path, 0o644)
    return path


def test_host_alias_from_config(menv):
    d = menv.new_dir("cfg")
    cfg = _config(menv, d / "ssh_config", f"""\
Host hashi-alias
    HostName 127.0.0.1
    Port {menv.sshd.port}
    User root
    IdentityFile {menv.root.key}
    IdentitiesOnly yes
    UserKnownHostsFile {menv.sshd.known_hosts}
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    BatchMode yes
""")
    export = menv.new_dir("exp")
    (export / "hello").write_text("alias")
    m = menv.mount("root", "openssh", export=export, source=f"hashi-alias:{export}",
                   extra=["-F", str(cfg)])
    check_and_unmount(m, "alias")


PROXYJUMP_BUG = ("hashi bug: fuse/transport/ssh.c proxy_jump_socket runs the jump's "
                 "`ssh -W` without the -F file (OpenSSH's ssh passes -F on to it), so the "
                 "jump host's settings (HostName, Port, keys, known_hosts) are not used")


def test_proxyjump(menv):
    """Through a second sshd with ProxyJump; the jump host is described in the
    -F file, as OpenSSH users do (ssh passes -F on to the jump's ssh)."""
    d = menv.new_dir("cfg")
    kh = d / "known_hosts"
    kh.write_text(menv.sshd.known_hosts_line() + menv.jump.known_hosts_line())
    os.chmod(kh, 0o644)
    cfg = _config(menv, d / "ssh_config", f"""\
Host jumphost
    HostName 127.0.0.1
    Port {menv.jump.port}
Host *
    User root
    IdentityFile {menv.root.key}
    IdentitiesOnly yes
    UserKnownHostsFile {kh}
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    BatchMode yes
""")
    export = menv.new_dir("exp")
    (export / "hello").write_text("jumped")
    before = accepted(menv.jump, "publickey", "root")
    m = menv.mount("root", "openssh", export=export,
                   extra=["-F", str(cfg), "-o", f"Port={menv.sshd.port}",
                          "-o", "ProxyJump=jumphost"])
    assert accepted(menv.jump, "publickey", "root") == before + 1, "went through the jump"
    check_and_unmount(m, "jumped")


def test_proxyjump_user_host_port(menv):
    """ProxyJump=user@host:port on the command line (the jump's known_hosts
    and key come from the -F file's Host * section)."""
    d = menv.new_dir("cfg")
    kh = d / "known_hosts"
    kh.write_text(menv.sshd.known_hosts_line() + menv.jump.known_hosts_line())
    os.chmod(kh, 0o644)
    cfg = _config(menv, d / "ssh_config", f"""\
Host *
    IdentityFile {menv.root.key}
    IdentitiesOnly yes
    UserKnownHostsFile {kh}
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    BatchMode yes
""")
    export = menv.new_dir("exp")
    (export / "hello").write_text("jumped2")
    before = accepted(menv.jump, "publickey", "root")
    m = menv.mount("root", "hashi", export=export,
                   extra=["-F", str(cfg), "-o", f"Port={menv.sshd.port}",
                          "-o", f"ProxyJump=root@127.0.0.1:{menv.jump.port}"])
    assert accepted(menv.jump, "publickey", "root") == before + 1, "went through the jump"
    check_and_unmount(m, "jumped2")


def test_proxyjump_openssh_transport(menv):
    """With -o transport=openssh, OpenSSH's ssh does the jump itself."""
    d = menv.new_dir("cfg")
    kh = d / "known_hosts"
    kh.write_text(menv.sshd.known_hosts_line() + menv.jump.known_hosts_line())
    os.chmod(kh, 0o644)
    cfg = _config(menv, d / "ssh_config", f"""\
Host jumphost
    HostName 127.0.0.1
    Port {menv.jump.port}
Host *
    User root
    IdentityFile {menv.root.key}
    IdentitiesOnly yes
    UserKnownHostsFile {kh}
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    BatchMode yes
""")
    export = menv.new_dir("exp")
    (export / "hello").write_text("jumped3")
    before = accepted(menv.jump, "publickey", "root")
    m = menv.mount("root", "openssh", export=export,
                   extra=["-F", str(cfg), "-o", f"Port={menv.sshd.port}",
                          "-o", "ProxyJump=jumphost", "-o", "transport=openssh"])
    assert accepted(menv.jump, "publickey", "root") == before + 1, "went through the jump"
    check_and_unmount(m, "jumped3")


def _password_args(menv):
    return ["-F", str(menv.ssh_config), "-o", f"Port={menv.sshd.port}",
            "-o", "PubkeyAuthentication=no",
            "-o", f"UserKnownHostsFile={menv.sshd.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes", "-o", "password_stdin"]


def test_password_stdin(menv):
    u = menv.user
    export = menv.new_dir("exp", owner=u)
    (export / "hello").write_text("pw")
    before = accepted(menv.sshd, "password", u.name)
    m = menv.mount("user", "openssh", export=export, extra=_password_args(menv),
                   input=PASSWORD + "\n")
    assert accepted(menv.sshd, "password", u.name) == before + 1
    check_and_unmount(m, "pw")


def test_password_stdin_wrong(menv):
    r, mp = attempt(menv, "user", _password_args(menv), input="not the password\n")
    assert_failed(r, mp, menv, "Permission denied", f"{TEST_USER}@127.0.0.1")
