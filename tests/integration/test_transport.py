"""hashi's transports (fuse/transport/) against a real OpenSSH sshd.

Everything goes through hashi-transport-probe, which connects with one
transport, sends SFTP INIT and prints the VERSION packet. The messages a
person reads are compared with OpenSSH's own words.

The sshd here is private to this file: the fixture owns a listening socket on
127.0.0.1 (so the port is ready before anything connects, and nobody else can
take it) and runs `sshd -i -f CONFIG -E LOG` for each connection it accepts,
like inetd. sshd reads its config per connection, so each listener can have
its own. Every sshd is stopped by its pid at the end.
"""

import os
import pty
import pwd
import re
import select
import shutil
import signal
import socket
import subprocess
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SSHD_BIN = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
TIMEOUT = 120

pytestmark = pytest.mark.skipif(not os.access(SSHD_BIN, os.X_OK),
                                reason="openssh-server is not installed")


def probe_path():
    build = Path(os.environ.get("HASHI_BUILD_DIR", REPO / "build")).resolve()
    return build / "fuse" / "transport" / "hashi-transport-probe"


@pytest.fixture(scope="module")
def probe():
    p = probe_path()
    if not p.is_file():
        pytest.fail(f"{p} is not built (set HASHI_BUILD_DIR to your build directory)",
                    pytrace=False)
    return str(p)


def keygen(path, ktype, passphrase="", bits=None):
    cmd = ["ssh-keygen", "-q", "-t", ktype, "-N", passphrase, "-C", Path(path).name,
           "-f", str(path)]
    if bits:
        cmd += ["-b", str(bits)]
    subprocess.run(cmd, check=True, capture_output=True)
    return str(path)


def pub(path):
    """'type base64' of a .pub file."""
    return " ".join(Path(str(path) + ".pub").read_text().split()[:2])


class Sshd:
    host = "127.0.0.1"

    def __init__(self, directory):
        self.dir = Path(directory)
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.procs = []
        self.listeners = []
        self.lock = threading.Lock()
        d = self.dir
        self.host_ed25519 = keygen(d / "host_ed25519", "ed25519")
        self.host_ecdsa = keygen(d / "host_ecdsa", "ecdsa")
        self.key_ed25519 = keygen(d / "id_ed25519", "ed25519")
        self.key_ecdsa = keygen(d / "id_ecdsa", "ecdsa")
        self.key_rsa = keygen(d / "id_rsa", "rsa", bits=2048)
        self.key_wrong = keygen(d / "id_wrong", "ed25519")
        self.key_secret = keygen(d / "id_secret", "ed25519", passphrase="open sesame")
        self.key_secret_unknown = keygen(d / "id_secret_unknown", "ed25519",
                                         passphrase="open sesame")
        self.authorized_keys = d / "authorized_keys"
        self.authorized_keys.write_text("".join(
            Path(k + ".pub").read_text()
            for k in (self.key_ed25519, self.key_ecdsa, self.key_rsa, self.key_secret)))
        os.chmod(self.authorized_keys, 0o600)
        self.log = str(d / "sshd.log")
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self.port = self.listen()

    def config(self, extra, host_keys):
        n = len(self.listeners)
        path = self.dir / f"sshd_config.{n}"
        lines = [f"HostKey {k}" for k in host_keys] + [
            f"PidFile {self.dir}/sshd.{n}.pid",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication yes",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "PermitRootLogin yes",
            "StrictModes no",
            "UseDNS no",
            "MaxAuthTries 20",
            "LogLevel DEBUG1",
            f"Subsystem sftp {SFTP_SERVER}",
        ] + list(extra)
        path.write_text("\n".join(lines) + "\n")
        return str(path)

    def listen(self, extra=(), host_keys=None):
        """A new port whose connections get an sshd with this config."""
        cfg = self.config(extra, host_keys or [self.host_ed25519])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((self.host, 0))
        sock.listen(16)
        self.listeners.append(sock)
        threading.Thread(target=self._serve, args=(sock, cfg), daemon=True).start()
        return sock.getsockname()[1]

    def _serve(self, sock, cfg):
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with conn:
                p = subprocess.Popen([SSHD_BIN, "-i", "-f", cfg, "-E", self.log],
                                     stdin=conn, stdout=conn, stderr=subprocess.DEVNULL)
            with self.lock:
                self.procs.append(p)

    def stop(self):
        for s in self.listeners:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        with self.lock:
            procs = list(self.procs)
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
            p.wait(timeout=30)

    def known_hosts(self, path, port=None, key=None, prefix=""):
        """A known_hosts file naming our host key for [127.0.0.1]:port."""
        port = port or self.port
        Path(path).write_text(f"{prefix}[{self.host}]:{port} {pub(key or self.host_ed25519)}\n")
        return str(path)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    d = tmp_path_factory.mktemp("transport-sshd")
    os.chmod(d, 0o755)
    s = Sshd(d)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def home(tmp_path):
    """An empty HOME (with .ssh) so nothing of the real user's leaks in."""
    h = tmp_path / "home"
    (h / ".ssh").mkdir(parents=True, mode=0o700)
    return h


def env_for(home, agent=None):
    env = dict(os.environ)
    env["HOME"] = str(home)
    env.pop("SSH_AUTH_SOCK", None)
    if agent:
        env["SSH_AUTH_SOCK"] = agent
    return env


def run(probe, args, home, agent=None, **kw):
    """Run the probe with no terminal (a new session, stdin /dev/null).
    Again (up to 3 times) when the test sshd dropped the connection before
    the key exchange, which a loaded machine's inetd-style sshd sometimes
    does and which no test here is about."""
    for _ in range(3):
        r = subprocess.run([probe, *args], env=env_for(home, agent), text=True,
                           capture_output=True, stdin=subprocess.DEVNULL,
                           start_new_session=True, timeout=TIMEOUT, **kw)
        if not (r.returncode == 255 and r.stderr.startswith("Connection closed by 127.0.0.1")):
            break
    return r


def ssh_args(sshd, known_hosts, *more, key=None, strict="yes", port=None):
    args = ["-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", f"StrictHostKeyChecking={strict}",
            "-o", "BatchMode=yes"]
    if key:
        args += ["-i", key]
    return [*args, *more, f"{sshd.user}@{sshd.host}", str(port or sshd.port)]


def assert_connected(r):
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "transport ssh" or lines[0].startswith("transport ")
    assert lines[1] == "version 3"
    assert any(line.startswith("limits@openssh.com ") for line in lines), r.stdout


# --------------------------------------------------------------------------
# keys


def test_ed25519_key(sshd, probe, home, tmp_path):
    kh = sshd.known_hosts(tmp_path / "kh")
    r = run(probe, ssh_args(sshd, kh, key=sshd.key_ed25519), home)
    assert_connected(r)
    assert r.stderr == ""


def test_ecdsa_key(sshd, probe, home, tmp_path):
    kh = sshd.known_hosts(tmp_path / "kh")
    assert_connected(run(probe, ssh_args(sshd, kh, key=sshd.key_ecdsa), home))


def test_default_identity_files(sshd, probe, home, tmp_path):
    """No -i: ~/.ssh/id_ed25519 (and friends) are used when they exist."""
    shutil.copy(sshd.key_ecdsa, home / ".ssh" / "id_ecdsa")
    os.chmod(home / ".ssh" / "id_ecdsa", 0o600)
    kh = sshd.known_hosts(tmp_path / "kh")
    assert_connected(run(probe, ssh_args(sshd, kh), home))


def test_rsa_key_only(sshd, probe, home, tmp_path):
    kh = sshd.known_hosts(tmp_path / "kh")
    r = run(probe, ssh_args(sshd, kh, "-o", "PasswordAuthentication=no", key=sshd.key_rsa),
            home)
    assert r.returncode == 255
    assert ("Permission denied (publickey): libssh2 cannot sign with RSA-SHA2; use an "
            "ed25519 or ecdsa key, or -o transport=openssh") in r.stderr
    assert "probe: rsa_only" in r.stderr


def test_rsa_then_ed25519(sshd, probe, home, tmp_path):
    """An RSA key first does not spoil a working key after it."""
    kh = sshd.known_hosts(tmp_path / "kh")
    r = run(probe, ssh_args(sshd, kh, "-i", sshd.key_rsa, key=sshd.key_ed25519), home)
    assert_connected(r)


def test_refused_rsa_key_among_others(sshd, probe, home, tmp_path):
    """An RSA key was refused and nothing else worked: OpenSSH might get in
    with it (rsa-sha2), so the caller is told it may fall back."""
    kh = sshd.known_hosts(tmp_path / "kh")
    r = run(probe, ssh_args(sshd, kh, "-o", "PasswordAuthentication=no", "-i", sshd.key_wrong,
                            key=sshd.key_rsa), home)
    assert r.returncode == 255
    assert "libssh2 cannot sign with RSA-SHA2" in r.stderr
    assert "probe: rsa_only" in r.stderr


def test_wrong_key(sshd, probe, home, tmp_path):
    kh = sshd.known_hosts(tmp_path / "kh")
    r = run(probe, ssh_args(sshd, kh, key=sshd.key_wrong), home)
    assert r.returncode == 255
    assert r.stderr.strip() == (
        f"{sshd.user}@{sshd.host}: Permission denied (publickey,password).")
    assert "probe: rsa_only" not in r.stderr


def test_unprotected_key(sshd, probe, home, tmp_path):
    key = tmp_path / "id_open"
    shutil.copy(sshd.key_ed25519, key)
    os.chmod(key, 0o644)
    kh = sshd.known_hosts(tmp_path / "kh")
    r = run(probe, ssh_args(sshd, kh, key=str(key)), home)
    assert r.returncode == 255
    at = "@" * 59
    assert (f"{at}\n@         WARNING: UNPROTECTED PRIVATE KEY FILE!          @\n{at}\n"
            f"Permissions 0644 for '{key}' are too open.\n"
            "It is required that your private key files are NOT accessible by others.\n"
            "This private key will be ignored.\n") in r.stderr
    assert "Permission denied (publickey,password)." in r.stderr


def test_encrypted_key_batch_mode(sshd, probe, home, tmp_path):
    """BatchMode never asks for a passphrase."""
    kh = sshd.known_hosts(tmp_path / "kh")
    r = run(probe, ssh_args(sshd, kh, key=sshd.key_secret), home)
    assert r.returncode == 255
    assert "Permission denied (publickey,password)." in r.stderr


# --------------------------------------------------------------------------
# other ways in


def test_password(sshd, probe, home, tmp_path):
    if os.getuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("needs root to create the test user")
    try:
        pwd.getpwnam("hashitest")
    except KeyError:
        subprocess.run(["useradd", "-m", "hashitest"], check=True, capture_output=True)
    subprocess.run(["chpasswd"], input="hashitest:secret\n", text=True, check=True)
    kh = sshd.known_hosts(tmp_path / "kh")
    good, bad = tmp_path / "pw", tmp_path / "pwbad"
    good.write_text("secret\n")
    bad.write_text("wrong\n")
    base = ["-o", f"UserKnownHostsFile={kh}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes"]
    r = run(probe, [*base, "--password-file", str(good), f"hashitest@{sshd.host}",
                    str(sshd.port)], home)
    assert_connected(r)
    r = run(probe, [*base, "--password-file", str(bad), f"hashitest@{sshd.host}",
                    str(sshd.port)], home)
    assert r.returncode == 255
    assert "hashitest@127.0.0.1: Permission denied (publickey,password)." in r.stderr


@pytest.fixture
def agent(tmp_path):
    sock = str(tmp_path / "agent.sock")
    out = subprocess.run(["ssh-agent", "-s", "-a", sock], check=True, capture_output=True,
                         text=True).stdout
    pid = int(re.search(r"SSH_AGENT_PID=(\d+)", out).group(1))
    try:
        yield sock
    finally:
        os.kill(pid, signal.SIGTERM)


def ssh_add(agent, *keys):
    env = dict(os.environ, SSH_AUTH_SOCK=agent)
    subprocess.run(["ssh-add", "-q", *keys], env=env, check=True, capture_output=True)


def test_agent(sshd, probe, home, tmp_path, agent):
    ssh_add(agent, sshd.key_wrong, sshd.key_ed25519)
    kh = sshd.known_hosts(tmp_path / "kh")
    # through SSH_AUTH_SOCK, no identity files at all
    r = run(probe, ssh_args(sshd, kh, "-o", "PasswordAuthentication=no"), home, agent=agent)
    assert_connected(r)
    # through IdentityAgent
    r = run(probe, ssh_args(sshd, kh, "-o", f"IdentityAgent={agent}"), home)
    assert_connected(r)
    # IdentityAgent=none wins over SSH_AUTH_SOCK
    r = run(probe, ssh_args(sshd, kh, "-o", "IdentityAgent=none"), home, agent=agent)
    assert r.returncode == 255
    assert "Permission denied" in r.stderr


def test_agent_identities_only(sshd, probe, home, tmp_path, agent):
    """IdentitiesOnly: only the agent's keys that match identity files."""
    ssh_add(agent, sshd.key_ed25519)
    kh = sshd.known_hosts(tmp_path / "kh")
    r = run(probe, ssh_args(sshd, kh, "-o", "IdentitiesOnly=yes", key=sshd.key_wrong), home,
            agent=agent)
    assert r.returncode == 255
    # a file whose public half is the agent's key: signed by the agent
    # even though the private file is unreadable here
    only_pub = tmp_path / "only_pub"
    only_pub.write_text("not a key\n")
    os.chmod(only_pub, 0o600)
    shutil.copy(sshd.key_ed25519 + ".pub", str(only_pub) + ".pub")
    r = run(probe, ssh_args(sshd, kh, "-o", "IdentitiesOnly=yes", key=str(only_pub)), home,
            agent=agent)
    assert_connected(r)


def test_rsa_in_agent_only(sshd, probe, home, tmp_path, agent):
    ssh_add(agent, sshd.key_rsa)
    kh = sshd.known_hosts(tmp_path / "kh")
    r = run(probe, ssh_args(sshd, kh, "-o", "PasswordAuthentication=no"), home, agent=agent)
    assert r.returncode == 255
    assert "libssh2 cannot sign with RSA-SHA2" in r.stderr


# --------------------------------------------------------------------------
# host keys


def run_kex(probe, args, home):
    """run(), again if the test sshd dropped the connection before the key
    exchange (seen on a loaded machine; not what these tests are about)."""
    for _ in range(3):
        r = run(probe, args, home)
        if "Connection closed by" not in r.stderr:
            break
    return r


def test_unknown_host_strict(sshd, probe, home, tmp_path):
    r = run_kex(probe, ssh_args(sshd, tmp_path / "none", key=sshd.key_ed25519), home)
    assert r.returncode == 255
    assert r.stderr == (f"No ED25519 host key is known for [127.0.0.1]:{sshd.port} and you "
                        "have requested strict checking.\nHost key verification failed.\n")


def test_unknown_host_ask_without_terminal(sshd, probe, home, tmp_path):
    r = run_kex(probe, ssh_args(sshd, tmp_path / "none", key=sshd.key_ed25519, strict="ask"), home)
    assert r.returncode == 255
    assert r.stderr == "Host key verification failed.\n"


@pytest.mark.parametrize("mode", ["accept-new", "no"])
def test_accept_new(sshd, probe, home, tmp_path, mode):
    kh = home / ".ssh" / "known_hosts"
    r = run(probe, ssh_args(sshd, kh, key=sshd.key_ed25519, strict=mode), home)
    assert_connected(r)
    assert r.stderr == (f"Warning: Permanently added '[127.0.0.1]:{sshd.port}' (ED25519) "
                        "to the list of known hosts.\n")
    assert kh.read_text() == f"[127.0.0.1]:{sshd.port} {pub(sshd.host_ed25519)}\n"
    # now known: strict checking passes, and nothing more is added
    r = run(probe, ssh_args(sshd, kh, key=sshd.key_ed25519), home)
    assert_connected(r)
    assert r.stderr == ""
    assert len(kh.read_text().splitlines()) == 1


def test_accept_new_creates_directory(sshd, probe, tmp_path):
    home = tmp_path / "bare-home"
    home.mkdir()
    kh = home / ".ssh" / "known_hosts"
    r = run(probe, ssh_args(sshd, kh, key=sshd.key_ed25519, strict="accept-new"), home)
    assert_connected(r)
    assert (home / ".ssh").stat().st_mode & 0o777 == 0o700
    assert kh.read_text().startswith(f"[127.0.0.1]:{sshd.port} ssh-ed25519 ")


def test_accept_new_appends_after_unterminated_line(sshd, probe, home, tmp_path):
    kh = home / ".ssh" / "known_hosts"
    kh.write_text("other.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOqA")  # no newline
    r = run(probe, ssh_args(sshd, kh, key=sshd.key_ed25519, strict="accept-new"), home)
    assert_connected(r)
    lines = kh.read_text().splitlines()
    assert len(lines) == 2 and lines[1].startswith(f"[127.0.0.1]:{sshd.port} ")


def test_no_known_hosts_files(sshd, probe, home, tmp_path):
    """UserKnownHostsFile=none: nowhere to remember a key, so ssh refuses."""
    for strict in ("accept-new", "no"):
        r = run(probe, ["-o", "UserKnownHostsFile=none", "-o", "GlobalKnownHostsFile=none",
                        "-o", f"StrictHostKeyChecking={strict}", "-o", "BatchMode=yes",
                        "-i", sshd.key_ed25519, f"{sshd.user}@{sshd.host}", str(sshd.port)],
                home)
        assert r.returncode == 255
        assert r.stderr == "Host key verification failed.\n"


def test_hashed_known_hosts(sshd, probe, home, tmp_path):
    kh = sshd.known_hosts(tmp_path / "kh")
    subprocess.run(["ssh-keygen", "-H", "-f", kh], check=True, capture_output=True)
    assert Path(kh).read_text().startswith("|1|")
    assert_connected(run(probe, ssh_args(sshd, kh, key=sshd.key_ed25519), home))


def test_wildcard_and_negation(sshd, probe, home, tmp_path):
    kh = tmp_path / "kh"
    kh.write_text(f"[127.0.0.*]:{sshd.port},!other {pub(sshd.host_ed25519)}\n")
    assert_connected(run(probe, ssh_args(sshd, str(kh), key=sshd.key_ed25519), home))
    kh.write_text(f"[127.0.0.*]:{sshd.port},![127.0.0.1]:* {pub(sshd.host_ed25519)}\n")
    r = run(probe, ssh_args(sshd, str(kh), key=sshd.key_ed25519), home)
    assert "No ED25519 host key is known" in r.stderr


def test_known_without_port(sshd, probe, home, tmp_path):
    """As ssh: a key recorded for the bare host name also counts."""
    kh = tmp_path / "kh"
    kh.write_text(f"127.0.0.1 {pub(sshd.host_ed25519)}\n")
    assert_connected(run(probe, ssh_args(sshd, str(kh), key=sshd.key_ed25519), home))


def test_host_key_alias(sshd, probe, home, tmp_path):
    kh = tmp_path / "kh"
    kh.write_text(f"myalias {pub(sshd.host_ed25519)}\n")
    r = run(probe, ssh_args(sshd, str(kh), "-o", "HostKeyAlias=myalias",
                            key=sshd.key_ed25519), home)
    assert_connected(r)


def test_user_file_then_global_file(sshd, probe, home, tmp_path):
    glob = sshd.known_hosts(tmp_path / "global")
    args = ["-o", f"UserKnownHostsFile={tmp_path / 'user'}",
            "-o", f"GlobalKnownHostsFile={glob}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-i", sshd.key_ed25519,
            f"{sshd.user}@{sshd.host}", str(sshd.port)]
    assert_connected(run(probe, args, home))


def test_changed_host_key(sshd, probe, home, tmp_path):
    kh = tmp_path / "kh"
    kh.write_text(f"# a comment\n[127.0.0.1]:{sshd.port} {pub(sshd.key_wrong)}\n")
    for strict in ("yes", "no", "accept-new"):
        r = run(probe, ssh_args(sshd, str(kh), key=sshd.key_ed25519, strict=strict), home)
        assert r.returncode == 255
        at = "@" * 59
        assert r.stderr.startswith(
            f"{at}\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n{at}\n"
            "IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n")
        assert f"Offending ED25519 key in {kh}:2\n" in r.stderr
        assert (f"Host key for [127.0.0.1]:{sshd.port} has changed and you have requested "
                "strict checking.\n") in r.stderr
        assert r.stderr.endswith("\nHost key verification failed.\n")
    assert len(kh.read_text().splitlines()) == 2


def test_changed_key_message_matches_openssh(sshd, probe, home, tmp_path):
    kh = tmp_path / "kh"
    kh.write_text(f"[127.0.0.1]:{sshd.port} {pub(sshd.key_wrong)}\n")
    ours = run(probe, ssh_args(sshd, str(kh), key=sshd.key_ed25519), home).stderr
    theirs = subprocess.run(
        ["ssh", "-F", "/dev/null", "-p", str(sshd.port), "-i", sshd.key_ed25519,
         "-o", f"UserKnownHostsFile={kh}", "-o", "GlobalKnownHostsFile=/dev/null",
         "-o", "BatchMode=yes", f"{sshd.user}@{sshd.host}", "true"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, start_new_session=True,
        env=env_for(home), timeout=TIMEOUT).stderr
    assert ours == theirs.replace("\r\n", "\n")


def test_revoked_host_key(sshd, probe, home, tmp_path):
    kh = tmp_path / "kh"
    kh.write_text(f"[127.0.0.1]:{sshd.port} {pub(sshd.host_ed25519)}\n"
                  f"@revoked * {pub(sshd.host_ed25519)}\n")
    r = run(probe, ssh_args(sshd, str(kh), key=sshd.key_ed25519), home)
    assert r.returncode == 255
    assert "@       WARNING: REVOKED HOST KEY DETECTED!               @" in r.stderr
    assert (f"The ED25519 host key for [127.0.0.1]:{sshd.port} is marked as revoked."
            in r.stderr)
    assert r.stderr.endswith("Host key verification failed.\n")


def test_cert_authority_line_is_not_a_host_key(sshd, probe, home, tmp_path):
    kh = sshd.known_hosts(tmp_path / "kh", prefix="@cert-authority ")
    r = run_kex(probe, ssh_args(sshd, kh, key=sshd.key_ed25519), home)
    assert r.returncode == 255
    assert "No ED25519 host key is known" in r.stderr


@pytest.fixture(scope="module")
def two_key_port(sshd):
    return sshd.listen(host_keys=[sshd.host_ed25519, sshd.host_ecdsa])


@pytest.mark.parametrize("which", ["ed25519", "ecdsa"])
def test_known_key_type_is_preferred(sshd, probe, home, tmp_path, two_key_port, which):
    """With two host keys on the server, the one known_hosts has is asked for."""
    key = sshd.host_ed25519 if which == "ed25519" else sshd.host_ecdsa
    kh = sshd.known_hosts(tmp_path / "kh", port=two_key_port, key=key)
    r = run(probe, ssh_args(sshd, kh, key=sshd.key_ed25519, port=two_key_port), home)
    assert_connected(r)


# --------------------------------------------------------------------------
# terminal prompts (through a pseudo-terminal)


def run_pty(probe, args, home, answers, timeout=60):
    """Run the probe on a new pty; answer each (prompt, reply) in turn.
    Returns (exit status, everything the terminal showed)."""
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execve(probe, [probe, *args], env_for(home))
        finally:
            os._exit(127)
    out = b""
    pending = list(answers)
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                raise AssertionError(f"no output for {timeout} s; so far: {out!r}")
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child has gone
                break
            if not chunk:
                break
            out += chunk
            if pending and out.decode(errors="replace").endswith(pending[0][0]):
                os.write(fd, pending[0][1].encode() + b"\n")
                pending.pop(0)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace").replace("\r\n", "\n")


def fingerprint(pubfile):
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", pubfile],
                         check=True, capture_output=True, text=True).stdout
    return out.split()[1]


@pytest.mark.parametrize("answer", ["yes", "fingerprint", "no"])
def test_ask_on_terminal(sshd, probe, home, tmp_path, answer):
    kh = home / ".ssh" / "known_hosts"
    fp = fingerprint(sshd.host_ed25519 + ".pub")
    reply = fp if answer == "fingerprint" else answer
    args = ["-o", f"UserKnownHostsFile={kh}", "-o", "StrictHostKeyChecking=ask",
            "-i", sshd.key_ed25519, f"{sshd.user}@{sshd.host}", str(sshd.port)]
    name = f"[127.0.0.1]:{sshd.port}"
    question = "Are you sure you want to continue connecting (yes/no/[fingerprint])? "
    status, shown = run_pty(probe, args, home, [(question, reply)])
    assert (f"The authenticity of host '{name} ({name})' can't be established.\n"
            f"ED25519 key fingerprint is {fp}.\n"
            "This key is not known by any other names.\n" + question) in shown
    if answer == "no":
        assert status == 255
        assert "Host key verification failed." in shown
        assert not kh.exists()
    else:
        assert status == 0, shown
        assert (f"Warning: Permanently added '{name}' (ED25519) to the list of known hosts."
                in shown)
        assert kh.read_text() == f"{name} {pub(sshd.host_ed25519)}\n"


def test_ask_mentions_other_names(sshd, probe, home, tmp_path):
    kh = home / ".ssh" / "known_hosts"
    kh.write_text(f"otherhost {pub(sshd.host_ed25519)}\n")
    args = ["-o", f"UserKnownHostsFile={kh}", "-o", "StrictHostKeyChecking=ask",
            "-i", sshd.key_ed25519, f"{sshd.user}@{sshd.host}", str(sshd.port)]
    status, shown = run_pty(probe, args, home, [("(yes/no/[fingerprint])? ", "no")])
    assert ("This host key is known by the following other names/addresses:\n"
            "    ~/.ssh/known_hosts:1: otherhost\n") in shown
    assert status == 255


def test_passphrase_on_terminal(sshd, probe, home, tmp_path):
    kh = sshd.known_hosts(tmp_path / "kh")
    args = ["-o", f"UserKnownHostsFile={kh}", "-o", "StrictHostKeyChecking=yes",
            "-i", sshd.key_secret, f"{sshd.user}@{sshd.host}", str(sshd.port)]
    prompt = f"Enter passphrase for key '{sshd.key_secret}': "
    status, shown = run_pty(probe, args, home, [(prompt, "bad guess"), (prompt, "open sesame")])
    assert status == 0, shown
    assert "version 3" in shown


def test_no_passphrase_asked_for_a_key_the_server_refuses(sshd, probe, home, tmp_path):
    kh = sshd.known_hosts(tmp_path / "kh")
    args = ["-o", f"UserKnownHostsFile={kh}", "-o", "StrictHostKeyChecking=yes",
            "-o", "PasswordAuthentication=no", "-i", sshd.key_secret_unknown,
            f"{sshd.user}@{sshd.host}", str(sshd.port)]
    status, shown = run_pty(probe, args, home, [])
    assert status == 255
    assert "Enter passphrase" not in shown
    assert "Permission denied (publickey,password)." in shown


def test_password_on_terminal(sshd, probe, home, tmp_path):
    if os.getuid() != 0:
        pytest.skip("needs root to create the test user")
    try:
        pwd.getpwnam("hashitest")
    except KeyError:
        subprocess.run(["useradd", "-m", "hashitest"], check=True, capture_output=True)
    subprocess.run(["chpasswd"], input="hashitest:secret\n", text=True, check=True)
    kh = sshd.known_hosts(tmp_path / "kh")
    args = ["-o", f"UserKnownHostsFile={kh}", "-o", "StrictHostKeyChecking=yes",
            f"hashitest@{sshd.host}", str(sshd.port)]
    prompt = "hashitest@127.0.0.1's password: "
    status, shown = run_pty(probe, args, home, [(prompt, "wrong"), (prompt, "secret")])
    assert status == 0, shown
    assert "Permission denied, please try again.\n" in shown


# --------------------------------------------------------------------------
# connecting


def test_connection_refused(sshd, probe, home, tmp_path):
    with socket.socket() as s:  # bound, not listening: connects are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        r = run(probe, ssh_args(sshd, tmp_path / "kh", key=sshd.key_ed25519, port=port), home)
    assert r.returncode == 255
    assert r.stderr == f"ssh: connect to host 127.0.0.1 port {port}: Connection refused\n"


def test_connect_timeout(sshd, probe, home, tmp_path):
    """A listener whose backlog is full drops the SYN: the connect times out."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(0)
        port = s.getsockname()[1]
        fillers = []
        try:
            for _ in range(2):
                c = socket.socket()
                c.setblocking(False)
                c.connect_ex(("127.0.0.1", port))
                fillers.append(c)
            r = run(probe, ssh_args(sshd, tmp_path / "kh", "-o", "ConnectTimeout=1",
                                    key=sshd.key_ed25519, port=port), home)
        finally:
            for c in fillers:
                c.close()
    assert r.returncode == 255
    assert r.stderr.startswith(f"ssh: connect to host 127.0.0.1 port {port}: "
                               "Connection timed out"), r.stderr


def test_banner_timeout(sshd, probe, home, tmp_path):
    with socket.socket() as s:  # accepts (in the kernel) but never speaks
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        port = s.getsockname()[1]
        r = run(probe, ssh_args(sshd, tmp_path / "kh", "-o", "ConnectTimeout=1",
                                key=sshd.key_ed25519, port=port), home)
    assert r.returncode == 255
    assert r.stderr == (f"ssh: connect to host 127.0.0.1 port {port}: Connection timed out "
                        "during banner exchange\n")


def test_unknown_host_name(sshd, probe, home, tmp_path):
    r = run(probe, ["-o", "BatchMode=yes", "root@nosuchhost.invalid", "22"], home)
    assert r.returncode == 255
    assert r.stderr.startswith("ssh: Could not resolve hostname nosuchhost.invalid: ")


def test_proxy_command(sshd, probe, home, tmp_path):
    kh = sshd.known_hosts(tmp_path / "kh")
    proxy = (f"ssh -F /dev/null -i {sshd.key_ed25519} -o BatchMode=yes "
             f"-o UserKnownHostsFile={kh} -p {sshd.port} -W 127.0.0.1:{sshd.port} "
             f"{sshd.user}@127.0.0.1")
    r = run(probe, ssh_args(sshd, kh, "-o", f"ProxyCommand={proxy}", key=sshd.key_ed25519),
            home)
    assert_connected(r)


def test_proxy_jump(sshd, probe, home, tmp_path):
    """ProxyJump runs `ssh -W [host]:port jump`; a wrapper named ssh first on
    PATH gives that ssh its key and known_hosts."""
    kh = sshd.known_hosts(tmp_path / "kh")
    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"Host *\n  IdentityFile {sshd.key_ed25519}\n  UserKnownHostsFile {kh}\n"
                   "  BatchMode yes\n")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "ssh"
    wrapper.write_text(f"#!/bin/sh\nexec {shutil.which('ssh')} -F {cfg} \"$@\"\n")
    wrapper.chmod(0o755)
    env = env_for(home)
    env["PATH"] = f"{bindir}:{env['PATH']}"
    r = subprocess.run([probe, *ssh_args(sshd, kh, "-o",
                                         f"ProxyJump={sshd.user}@127.0.0.1:{sshd.port}",
                                         key=sshd.key_ed25519)],
                       env=env, text=True, capture_output=True, stdin=subprocess.DEVNULL,
                       start_new_session=True, timeout=TIMEOUT)
    assert_connected(r)


def test_algorithm_choices(sshd, probe, home, tmp_path):
    kh = sshd.known_hosts(tmp_path / "kh")
    for opt in ("Ciphers=aes256-ctr", "Ciphers=chacha20-poly1305@openssh.com,aes192-ctr",
                "MACs=hmac-sha2-512", "KexAlgorithms=+diffie-hellman-group14-sha256",
                "Ciphers=-aes128*", "HostKeyAlgorithms=ssh-ed25519", "Compression=yes"):
        r = run(probe, ssh_args(sshd, kh, "-o", opt, key=sshd.key_ed25519), home)
        assert_connected(r)
    r = run(probe, ssh_args(sshd, kh, "-o", "Ciphers=chacha20-poly1305@openssh.com",
                            key=sshd.key_ed25519), home)
    assert r.returncode == 255
    assert "none of the ciphers" in r.stderr and "transport=openssh" in r.stderr


def test_sftp_server_option(sshd, probe, home, tmp_path):
    kh = sshd.known_hosts(tmp_path / "kh")
    r = run(probe, ssh_args(sshd, kh, "-o", f"sftp_server={SFTP_SERVER}",
                            key=sshd.key_ed25519), home)
    assert_connected(r)
    r = run(probe, ssh_args(sshd, kh, "-o", "sftp_server=nosuchsubsystem",
                            key=sshd.key_ed25519), home)
    assert r.returncode == 255
    assert r.stderr == "subsystem request failed on channel 0\n"
    # the channel's stderr is dropped, not mixed into the stream
    noisy = f"/bin/sh -c 'echo noise >&2; exec {SFTP_SERVER}'"
    r = run(probe, ssh_args(sshd, kh, "-o", f"sftp_server={noisy}", key=sshd.key_ed25519),
            home)
    assert_connected(r)


def test_channel_eof(sshd, probe, home, tmp_path):
    """A server that exits at once: read() reports the end of the stream."""
    kh = sshd.known_hosts(tmp_path / "kh")
    r = run(probe, ssh_args(sshd, kh, "-o", "sftp_server=/bin/true", key=sshd.key_ed25519),
            home)
    assert r.returncode == 255
    assert r.stderr == ("probe: the server closed the stream: "
                        "the server closed the SFTP channel\n")


def test_bulk_with_rekeying(sshd, probe, home, tmp_path):
    """Both directions at once, many requests in flight, while sshd rekeys
    every MiB: the non-blocking paths and libssh2's EAGAIN rules."""
    port = sshd.listen(extra=["RekeyLimit 1M"])
    kh = sshd.known_hosts(tmp_path / "kh", port=port)
    r = run(probe, [*ssh_args(sshd, kh, key=sshd.key_ed25519, port=port), "--bulk", "48"],
            home)
    assert r.returncode == 0, r.stderr
    n = 48 << 20
    assert f"bulk {n} {n}" in r.stdout



BATCHED = re.compile(r"cipher (\S+), MAC (\S+); AES-CTR contexts with batched keystream: (\d+)")


@pytest.mark.parametrize("cipher", ["aes128-ctr", "aes256-ctr"])
def test_ctr_keystream_batched(sshd, probe, home, tmp_path, cipher):
    """libssh2 1.10 asks OpenSSL for AES-CTR one 16-byte block at a time;
    ctr-batch.c answers from a keystream computed 16 KiB at a time. Both of
    the session's contexts (in and out) must be batched in the built
    program (the interposition took), and bulk data both ways, checked by
    sshd's and libssh2's MACs, must get through."""
    kh = sshd.known_hosts(tmp_path / "kh")
    r = run(probe, [*ssh_args(sshd, kh, "-o", f"Ciphers={cipher}", "-v",
                              key=sshd.key_ed25519), "--bulk", "16"], home)
    assert r.returncode == 0, r.stderr
    assert f"bulk {16 << 20} {16 << 20}" in r.stdout
    m = BATCHED.search(r.stderr)
    assert m, r.stderr
    assert m.group(1) == cipher
    assert m.group(3) == "2"


def test_ctr_keystream_batching_off(sshd, probe, home, tmp_path, monkeypatch):
    """HASHI_NO_CTR_BATCH=1 leaves AES-CTR to libssh2 and libcrypto alone."""
    monkeypatch.setenv("HASHI_NO_CTR_BATCH", "1")
    kh = sshd.known_hosts(tmp_path / "kh")
    r = run(probe, [*ssh_args(sshd, kh, "-v", key=sshd.key_ed25519), "--bulk", "4"], home)
    assert r.returncode == 0, r.stderr
    m = BATCHED.search(r.stderr)
    assert m, r.stderr
    assert m.group(3) == "0"


# --------------------------------------------------------------------------
# the other transports


def test_command_transport(probe, home):
    r = run(probe, ["--command", SFTP_SERVER], home)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("transport command\nversion 3\n")
    r = run(probe, ["--bulk", "8", "--command", SFTP_SERVER], home)
    assert r.returncode == 0, r.stderr
    assert f"bulk {8 << 20} {8 << 20}" in r.stdout


def test_command_not_found(probe, home, tmp_path):
    r = run(probe, ["--command", str(tmp_path / "nosuch")], home)
    assert r.returncode == 255
    assert r.stderr == f"{tmp_path / 'nosuch'}: No such file or directory\n"


def test_tcp_transport(probe, home):
    """directport: sftp-server straight on a TCP socket."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        server = {}

        def serve():
            conn, _ = s.accept()
            with conn:
                server["p"] = subprocess.Popen([SFTP_SERVER], stdin=conn, stdout=conn)

        t = threading.Thread(target=serve)
        t.start()
        r = run(probe, ["--tcp", "127.0.0.1", str(port)], home)
        t.join(timeout=TIMEOUT)
        server["p"].wait(timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("transport tcp\nversion 3\n")


def test_tcp_refused(probe, home):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        r = run(probe, ["--tcp", "127.0.0.1", str(port)], home)
    assert r.returncode == 255
    assert r.stderr == f"connect to host 127.0.0.1 port {port}: Connection refused\n"
