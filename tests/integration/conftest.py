"""Shared fixtures for hashi's integration tests.

Everything here drives real OpenSSH binaries: the `sftp` client, OpenSSH's own
sftp-server (the reference implementation our server must match), and a
throwaway sshd on 127.0.0.1 whose `Subsystem sftp` is our server.

Fixture API (used by every test file in this directory):

  build_dir       session  Path of the meson build dir (env HASHI_BUILD_DIR,
                           default <repo>/build); fails if the server is not built
  hashi_server    session  str path of <build_dir>/sftp-server/hashi-sftp-server
  openssh_server  session  "/usr/lib/openssh/sftp-server" (skip if missing)
  server_path     function parametrized over "hashi" and "openssh": that server's path
  workdir         function a fresh, empty directory (Path) under tmp_path
  sshd            session  a running sshd (see class Sshd)

and the plain helper run_sftp_d(server_cmd, batch_text, cwd=None) (alias sftp_d)
that runs `sftp -b - -D server_cmd` with batch_text on stdin.
"""

import os
import pwd
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

# A suite started in the background by a shell without job control (as
# `cmd &` in a script) inherits SIGINT ignored, and every program it runs
# would too: hashi's SIGINT tests would then test that. Start from the
# usual disposition instead.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = Path(__file__).resolve().parents[2]
SERVER_REL = Path("sftp-server") / "hashi-sftp-server"
OPENSSH_SFTP_SERVER = "/usr/lib/openssh/sftp-server"
SSHD_BIN = "/usr/sbin/sshd"
SFTP_BIN = "sftp"

# Upper bound for any single client run. It only stops a hung test from hanging
# the whole suite; nothing asserts on how long anything takes.
RUN_TIMEOUT = 300

# HASHI_SERVER_WRAPPER: a command that hashi-sftp-server runs under when
# run_sftp_d starts it (words without spaces: sftp -D splits them), e.g.
# "valgrind --error-exitcode=99 --log-file=DIR/%p.log" (see tests/run-all.sh).
SERVER_WRAPPER = os.environ.get("HASHI_SERVER_WRAPPER", "")


def _build_dir_path():
    return Path(os.environ.get("HASHI_BUILD_DIR", REPO / "build")).resolve()


def _hashi_path():
    return str(_build_dir_path() / SERVER_REL)


def current_user():
    return pwd.getpwuid(os.getuid()).pw_name


def run_sftp_d(server_cmd, batch_text, cwd=None, extra_args=(), timeout=RUN_TIMEOUT):
    """Run `sftp -b - -D "<server_cmd>"` with batch_text on stdin.

    sftp splits server_cmd into words itself (so "PATH -l INFO -e" works).
    Returns the CompletedProcess (text mode, stdout and stderr captured).
    """
    server_cmd = str(server_cmd)
    if SERVER_WRAPPER and server_cmd.split(None, 1)[0].endswith(str(SERVER_REL)):
        server_cmd = f"{SERVER_WRAPPER} {server_cmd}"
    cmd = [SFTP_BIN, *extra_args, "-b", "-", "-D", server_cmd]
    return subprocess.run(cmd, input=batch_text, text=True, capture_output=True,
                          cwd=None if cwd is None else str(cwd), timeout=timeout)


sftp_d = run_sftp_d


# --------------------------------------------------------------------------
# server binaries

@pytest.fixture(scope="session")
def build_dir():
    d = _build_dir_path()
    if not (d / SERVER_REL).is_file():
        pytest.fail(f"hashi-sftp-server is not built: {d / SERVER_REL} does not exist. "
                    f"Run `meson setup build && ninja -C build` in {REPO} "
                    f"(or point HASHI_BUILD_DIR at your build directory).",
                    pytrace=False)
    return d


@pytest.fixture(scope="session")
def hashi_server(build_dir):
    return str(build_dir / SERVER_REL)


@pytest.fixture(scope="session")
def openssh_server():
    if not os.access(OPENSSH_SFTP_SERVER, os.X_OK):
        pytest.skip(f"{OPENSSH_SFTP_SERVER} not installed (apt-get install openssh-sftp-server)")
    return OPENSSH_SFTP_SERVER


@pytest.fixture(params=["hashi", "openssh"])
def server_path(request):
    """The path of one server; tests using it run once for each."""
    if request.param == "hashi":
        return request.getfixturevalue("hashi_server")
    return request.getfixturevalue("openssh_server")


@pytest.fixture
def workdir(tmp_path):
    d = tmp_path / "work"
    d.mkdir()
    return d


# --------------------------------------------------------------------------
# sshd

def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(host, port):
    try:
        with socket.create_connection((host, port), timeout=5):
            return True
    except OSError:
        return False


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie nobody has reaped yet counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_for(cond, what, limit=60.0, step=0.05):
    """Poll cond() until true; raise if it has not happened within limit."""
    deadline = time.monotonic() + limit
    while True:
        if cond():
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what}")
        time.sleep(step)


class Sshd:
    """A private OpenSSH sshd on 127.0.0.1.

    Its `Subsystem sftp` is hashi-sftp-server; `sftp -s PATH` makes sshd run
    PATH (with any arguments) instead, so it serves OpenSSH's server too.
    """

    host = "127.0.0.1"

    def __init__(self, directory, subsystem):
        self.dir = Path(directory)
        self.subsystem = subsystem
        self.user = current_user()
        self.key = str(self.dir / "client_ed25519")
        self.host_key = str(self.dir / "host_ed25519")
        self.authorized_keys = str(self.dir / "authorized_keys")
        self.config = str(self.dir / "sshd_config")
        self.pidfile = str(self.dir / "sshd.pid")
        self.known_hosts = str(self.dir / "known_hosts")
        self.log = str(self.dir / "sshd.log")
        self.port = None
        self.pid = None

    # -- lifecycle
    def _keygen(self, path, comment):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
                        "-f", path], check=True, capture_output=True)

    def start(self):
        self._keygen(self.host_key, "hashi-test-host")
        self._keygen(self.key, "hashi-test-client")
        Path(self.authorized_keys).write_text(Path(self.key + ".pub").read_text())
        os.chmod(self.authorized_keys, 0o600)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        host_pub = Path(self.host_key + ".pub").read_text().split()
        last_err = None
        for _attempt in range(5):
            self.port = _free_port()
            Path(self.known_hosts).write_text(
                f"[{self.host}]:{self.port} {host_pub[0]} {host_pub[1]}\n")
            self._write_config()
            try:
                self._launch()
                return self
            except RuntimeError as e:  # e.g. somebody took the port meanwhile
                last_err = e
                self.stop()
        raise RuntimeError(f"could not start sshd: {last_err}")

    def _write_config(self):
        Path(self.config).write_text(f"""\
# written by tests/integration/conftest.py
ListenAddress {self.host}:{self.port}
HostKey {self.host_key}
PidFile {self.pidfile}
AuthorizedKeysFile {self.authorized_keys}
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin yes
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
MaxStartups 100
MaxSessions 100
LogLevel DEBUG
Subsystem sftp {self.subsystem}
""")

    def _launch(self):
        for p in (self.pidfile, self.log):
            if os.path.exists(p):
                os.unlink(p)
        # sshd checks its config, forks into the background, and the parent
        # exits: a nonzero status here is a configuration error.
        r = subprocess.run([SSHD_BIN, "-f", self.config, "-E", self.log],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"sshd exited {r.returncode}: {r.stderr}{self._log_text()}")

        def ready():
            # The pid file is written only once sshd listens; a connect then
            # proves it is ours that answers.
            try:
                pid = int(Path(self.pidfile).read_text().strip())
            except (OSError, ValueError):
                if "fatal" in self._log_text() or "Cannot bind" in self._log_text():
                    raise RuntimeError(f"sshd failed: {self._log_text()}")
                return False
            self.pid = pid
            if not _pid_alive(pid):
                raise RuntimeError(f"sshd died: {self._log_text()}")
            return _port_open(self.host, self.port)

        _wait_for(ready, f"sshd on port {self.port} (log {self.log})")

    def _log_text(self):
        try:
            return Path(self.log).read_text(errors="replace")
        except OSError:
            return ""

    def stop(self):
        pid = self.pid
        if pid is None:
            try:
                pid = int(Path(self.pidfile).read_text().strip())
            except (OSError, ValueError):
                return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        else:
            _wait_for(lambda: not _pid_alive(pid), f"sshd pid {pid} to exit")
        self.pid = None

    # -- clients
    def ssh_args(self):
        """Options that make ssh/sftp/scp use our key and known_hosts, no prompts."""
        return ["-F", "/dev/null",
                "-o", "BatchMode=yes",
                "-o", "IdentitiesOnly=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "StrictHostKeyChecking=yes",
                "-o", "LogLevel=ERROR",
                "-i", self.key]

    @property
    def destination(self):
        return f"{self.user}@{self.host}"

    def sftp(self, batch_text, extra_args=(), subsystem=None, remote_path=None,
             cwd=None, timeout=RUN_TIMEOUT):
        """Run `sftp -b - -P port [-s subsystem] user@127.0.0.1[:remote_path]`.

        subsystem None uses sshd's `Subsystem sftp` (our server); a string with
        a '/' is run by sshd as a command (so "PATH -l INFO -e" works).
        """
        cmd = [SFTP_BIN, *self.ssh_args(), "-b", "-", "-P", str(self.port)]
        if subsystem is not None:
            cmd += ["-s", subsystem]
        cmd += list(extra_args)
        dest = self.destination
        if remote_path is not None:
            dest += ":" + remote_path
        cmd.append(dest)
        return subprocess.run(cmd, input=batch_text, text=True, capture_output=True,
                              cwd=None if cwd is None else str(cwd), timeout=timeout)

    def ssh(self, command, timeout=RUN_TIMEOUT, **kw):
        """Run a command through ssh; command is a string for the remote shell."""
        cmd = ["ssh", *self.ssh_args(), "-p", str(self.port), self.destination, command]
        return subprocess.run(cmd, text=True, capture_output=True, timeout=timeout, **kw)

    def scp(self, *args, timeout=RUN_TIMEOUT, **kw):
        """Run scp (SFTP mode) with our options; remote paths as `sshd.remote(path)`."""
        cmd = ["scp", *self.ssh_args(), "-P", str(self.port), *map(str, args)]
        return subprocess.run(cmd, text=True, capture_output=True, timeout=timeout, **kw)

    def remote(self, path):
        return f"{self.destination}:{path}"


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    if not os.access(SSHD_BIN, os.X_OK):
        pytest.skip(f"{SSHD_BIN} not installed (apt-get install openssh-server)")
    d = tmp_path_factory.mktemp("sshd")
    os.chmod(d, 0o755)
    # The configured subsystem is our server even when it is not built yet, so
    # tests that pick OpenSSH's server with -s still work meanwhile.
    server = Sshd(d, shlex.quote(_hashi_path()))
    server.start()
    try:
        yield server
    finally:
        server.stop()
