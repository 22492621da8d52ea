"""Command-line options of hashi-sftp-server, checked against OpenSSH's
sftp-server run the same way (it is the reference: same output, same exit
status, same log wording)."""

import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import current_user, run_sftp_d
from sftpwire import HASHI_EXTENSIONS

USER = current_user()
HOME = os.path.expanduser("~" + USER)


def run_server(path, *args, stdin=subprocess.DEVNULL, timeout=60):
    return subprocess.run([path, *args], stdin=stdin, capture_output=True, text=True,
                          timeout=timeout)


def normalize_prog(text, path):
    """Usage text names the program (argv[0]'s basename); make that neutral."""
    return text.replace(os.path.basename(path), "PROG")


@pytest.fixture
def both(hashi_server, openssh_server):
    return {"openssh": openssh_server, "hashi": hashi_server}


# --------------------------------------------------------------------------
# -h, -Q, bad options

USAGE = """\
usage: PROG [-ehR] [-d start_directory] [-f log_facility] [-l log_level]
\t[-P denied_requests] [-p allowed_requests] [-u umask]
       PROG -Q protocol_feature
"""


@pytest.mark.parametrize("args", [["-h"], ["-e", "-h", "-l", "INFO"]], ids=" ".join)
def test_usage(server_path, args):
    r = run_server(server_path, *args)
    assert r.returncode == 1
    assert r.stdout == ""
    # OpenSSH pads the continuation lines for "sftp-server"; compare the words.
    lines = normalize_prog(r.stderr, server_path).splitlines()
    assert [l.split() for l in lines] == [l.split() for l in USAGE.splitlines()]
    assert lines[1].startswith("\t[-P")


@pytest.mark.parametrize("args", [["-Z"], ["-d"], ["-Q"], ["-u"], ["-l"], ["-x", "-Q", "requests"]],
                         ids=" ".join)
def test_bad_option_prints_usage(server_path, args):
    """Unknown option or missing argument: usage, exit 1. (OpenSSH prints the
    usage alone; a getopt diagnostic line before it is tolerated.)"""
    r = run_server(server_path, *args)
    assert r.returncode == 1
    assert r.stdout == ""
    lines = normalize_prog(r.stderr, server_path).splitlines()
    assert [l.split() for l in lines[-3:]] == [l.split() for l in USAGE.splitlines()]
    assert len(lines) <= 4


def test_usage_identical_text(both):
    """Byte-for-byte, but for the program name."""
    out = {k: run_server(p, "-h") for k, p in both.items()}
    assert out["hashi"].returncode == out["openssh"].returncode
    assert (normalize_prog(out["hashi"].stderr, both["hashi"])
            == normalize_prog(out["openssh"].stderr, both["openssh"]))


REQUESTS = """\
open close read write lstat fstat setstat fsetstat opendir readdir remove mkdir
rmdir realpath stat rename readlink symlink posix-rename statvfs fstatvfs hardlink
fsync lsetstat limits expand-path copy-data home-directory users-groups-by-id
""".split()


@pytest.mark.parametrize("what", ["requests", "Requests", "REQUESTS"])
def test_query_requests(server_path, what):
    r = run_server(server_path, "-Q", what)
    assert r.returncode == 0
    assert r.stderr == ""
    ours = [] if server_path.endswith("/sftp-server") else HASHI_EXTENSIONS
    assert r.stdout.splitlines() == REQUESTS + ours


def test_query_requests_identical(both):
    """OpenSSH's list, then our own extensions' names (man/PROTOCOL.hashi)."""
    out = {k: run_server(p, "-Q", "requests") for k, p in both.items()}
    assert out["hashi"].stdout == out["openssh"].stdout + "".join(n + "\n" for n in HASHI_EXTENSIONS)
    assert out["hashi"].returncode == out["openssh"].returncode == 0


def test_query_exits_before_later_options(server_path):
    r = run_server(server_path, "-Q", "requests", "-Z")
    assert r.returncode == 0
    assert r.stdout.splitlines()[:len(REQUESTS)] == REQUESTS


@pytest.mark.parametrize("what", ["other", "", "request", "requestsx"])
def test_query_unknown(server_path, what):
    r = run_server(server_path, "-Q", what)
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr == "Invalid query type\n"


@pytest.mark.parametrize("umask", ["8", "999", "01000", "-1", "", "abc", "07x", "1777"])
def test_invalid_umask(both, umask):
    """OpenSSH exits 255 (fatal) without serving. Serving would mean reading
    stdin's EOF and exiting 0."""
    codes = {k: run_server(p, "-u", umask).returncode for k, p in both.items()}
    assert codes["openssh"] == 255
    assert codes["hashi"] == codes["openssh"]


@pytest.mark.parametrize("level", ["FOO", "", "debug4", "7"])
def test_invalid_log_level(both, level):
    out = {k: run_server(p, "-l", level) for k, p in both.items()}
    assert out["openssh"].returncode == 1
    assert out["hashi"].returncode == out["openssh"].returncode
    assert out["hashi"].stderr != ""
    assert out["hashi"].stdout == ""


@pytest.mark.parametrize("facility", ["FOO", "", "LOCAL8", "kern"])
def test_invalid_log_facility(both, facility):
    out = {k: run_server(p, "-f", facility) for k, p in both.items()}
    assert out["openssh"].returncode == 1
    assert out["hashi"].returncode == out["openssh"].returncode
    assert out["hashi"].stderr != ""
    assert out["hashi"].stdout == ""


LEVELS = ["QUIET", "FATAL", "ERROR", "INFO", "VERBOSE", "DEBUG", "DEBUG1", "DEBUG2", "DEBUG3",
          "info", "Debug3"]
FACILITIES = ["DAEMON", "USER", "AUTH", "AUTHPRIV", "LOCAL0", "LOCAL1", "LOCAL2", "LOCAL3",
              "LOCAL4", "LOCAL5", "LOCAL6", "LOCAL7", "local7", "auth"]


@pytest.mark.parametrize("level", LEVELS)
def test_valid_log_levels(server_path, workdir, level):
    r = run_sftp_d(f"{server_path} -e -l {level}", "pwd\n", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert f"Remote working directory: {workdir}" in r.stdout
    opened = f"session opened for local user {USER} from [UNKNOWN]"
    assert (opened in r.stderr) == (level.upper() not in ("QUIET", "FATAL", "ERROR"))


@pytest.mark.parametrize("facility", FACILITIES)
def test_valid_log_facilities(server_path, workdir, facility):
    # -e keeps it off syslog; the option must still be accepted.
    r = run_sftp_d(f"{server_path} -e -f {facility}", "pwd\n", cwd=workdir)
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------
# -c

@pytest.mark.parametrize("rest", ["-Q requests", "-Z", "-u 999", "-d /nonexistent/%x",
                                  "some command text"])
def test_c_ignores_remaining_arguments(server_path, workdir, rest):
    """sftp-server as a login shell is run as `sftp-server -c COMMAND`."""
    r = run_sftp_d(f"{server_path} -c {rest}", "pwd\n", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"sftp> pwd\nRemote working directory: {workdir}\n"


def test_c_keeps_earlier_options(server_path, workdir):
    (workdir / "start").mkdir()
    r = run_sftp_d(f"{server_path} -e -l INFO -d {workdir}/start -c -l QUIET -d /",
                   "pwd\n", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert f"Remote working directory: {workdir}/start" in r.stdout
    assert f"session opened for local user {USER}" in r.stderr


# --------------------------------------------------------------------------
# -d

def _pwd(server_cmd, cwd):
    r = run_sftp_d(server_cmd, "pwd\n", cwd=cwd)
    assert r.returncode == 0, r.stderr
    m = re.search(r"^Remote working directory: (.*)$", r.stdout, re.M)
    assert m, r.stdout
    return m.group(1)


def test_d_user_escape(server_path, workdir):
    (workdir / USER).mkdir()
    assert _pwd(f"{server_path} -d {workdir}/%u", workdir) == f"{workdir}/{USER}"


def test_d_home_escape(server_path, workdir):
    assert _pwd(f"{server_path} -d %d", workdir) == os.path.realpath(HOME)


def test_d_percent_escape(server_path, workdir):
    (workdir / "a%b").mkdir()
    assert _pwd(f"{server_path} -d {workdir}/a%%b", workdir) == f"{workdir}/a%b"


def test_d_combined_escapes(server_path, workdir):
    name = f"{USER}%x"
    (workdir / name / "deeper").mkdir(parents=True)
    assert (_pwd(f"{server_path} -d {workdir}/%u%%x/deeper", workdir)
            == f"{workdir}/{name}/deeper")


def test_d_relative(server_path, workdir):
    (workdir / "rel").mkdir()
    assert _pwd(f"{server_path} -d rel", workdir) == f"{workdir}/rel"


@pytest.mark.parametrize("bad", ["/nonexistent-hashi", "FILE"])
def test_d_unusable_directory_is_logged_and_ignored(server_path, workdir, bad):
    (workdir / "FILE").write_bytes(b"")
    target = str(workdir / "FILE") if bad == "FILE" else bad
    r = run_sftp_d(f"{server_path} -e -d {target}", "pwd\n", cwd=workdir)
    assert r.returncode == 0
    assert f"Remote working directory: {workdir}" in r.stdout
    why = "Not a directory" if bad == "FILE" else "No such file or directory"
    assert f'chdir to "{target}" failed: {why}\n' in r.stderr


def test_d_unknown_escape_is_fatal(both, workdir):
    codes = {k: run_server(p, "-d", f"{workdir}/%x").returncode for k, p in both.items()}
    assert codes["openssh"] == 255
    assert codes["hashi"] == codes["openssh"]


def test_d_through_sshd(sshd, server_path, workdir):
    (workdir / USER).mkdir()
    r = sshd.sftp("pwd\n", subsystem=f"{server_path} -d {workdir}/%u")
    assert r.returncode == 0, r.stderr
    assert f"Remote working directory: {workdir}/{USER}\n" in r.stdout
    r = sshd.sftp("pwd\n", subsystem=f"{server_path} -d %d")
    assert f"Remote working directory: {os.path.realpath(HOME)}\n" in r.stdout


# --------------------------------------------------------------------------
# -u

@pytest.mark.parametrize("mask,filemode,dirmode", [("077", 0o600, 0o700), ("0", 0o666, 0o777),
                                                   ("027", 0o640, 0o750), ("0777", 0, 0)])
def test_umask(server_path, workdir, mask, filemode, dirmode):
    local = workdir / "local"
    local.write_bytes(b"x")
    local.chmod(0o666)
    old = os.umask(0o022)  # what the server would use without -u
    try:
        r = run_sftp_d(f"{server_path} -u {mask}", "put local remote\nmkdir dir\n", cwd=workdir)
    finally:
        os.umask(old)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(workdir / "remote").st_mode) == filemode
    assert stat.S_IMODE(os.stat(workdir / "dir").st_mode) == dirmode


def test_umask_through_sshd(sshd, server_path, workdir):
    (workdir / "local").write_bytes(b"x")
    (workdir / "local").chmod(0o644)
    r = sshd.sftp(f'cd "{workdir}"\nlcd "{workdir}"\nput local remote\n',
                  subsystem=f"{server_path} -u 077")
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(workdir / "remote").st_mode) == 0o600


# --------------------------------------------------------------------------
# logging to stderr (-e)

LOG_BATCH = """\
put local f1
put -p local f2
put -f local f3
get f1 g1
get -p f2 g2
ls -l
ls -la
mkdir d
rmdir d
rename f1 f4
rename -l f4 f5
ln -s f5 sl
ln f5 hl
chmod 600 f5
-chmod -h 600 sl
chown 0 f5
chgrp 0 f5
copy f5 f6
df
df -i
-rm nope
-get nope
-mkdir d2/d3
-rmdir f5
rm f6
cd d0
pwd
cd ..
put -p local f7
"""


def _log_session(server, level, workdir, extra=""):
    """Run LOG_BATCH in a fresh copy of a fixed tree; return the server's own
    stderr (captured apart from the client's, so they cannot interleave)."""
    work = workdir / f"tree-{Path(server).name}-{level}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    (work / "d0").mkdir()
    (work / "local").write_bytes(b"hello\n")
    os.chmod(work / "local", 0o644)
    os.utime(work / "local", (981173106, 981173106))
    log = workdir / f"log-{Path(server).name}-{level}"
    wrapper = workdir / "wrap.sh"
    wrapper.write_text(f'#!/bin/sh\nexec "$@" 2>"{log}"\n')
    wrapper.chmod(0o755)
    batch = f'cd "{work}"\n' + LOG_BATCH
    r = run_sftp_d(f"{wrapper} {server} -e -l {level} {extra}", batch, cwd=work)
    assert r.returncode == 0, r.stdout + r.stderr
    return log.read_text().replace(str(work), "WORK")


def test_log_info_content(server_path, workdir):
    log = _log_session(server_path, "INFO", workdir)
    lines = log.splitlines()
    assert lines[0] == f"session opened for local user {USER} from [UNKNOWN]"
    assert lines[-1] == f"session closed for local user {USER} from [UNKNOWN]"
    for expect in [
        'open "WORK/f1" flags WRITE,CREATE,TRUNCATE mode 0644',
        'close "WORK/f1" bytes read 0 written 6',
        'open "WORK/f1" flags READ mode 0666',
        'close "WORK/f1" bytes read 6 written 0',
        'set "WORK/f2" mode 0644',
        'opendir "WORK"',
        'closedir "WORK"',
        'mkdir name "WORK/d" mode 0777',
        'rmdir name "WORK/d"',
        'posix-rename old "WORK/f1" new "WORK/f4"',
        'rename old "WORK/f4" new "WORK/f5"',
        'symlink old "f5" new "WORK/sl"',
        'hardlink old "WORK/f5" new "WORK/hl"',
        'set "WORK/f5" mode 0600',
        'set "WORK/f5" owner 0 group 0',
        'statvfs "WORK"',
        'remove name "WORK/nope"',
        'sent status No such file',
        'sent status Failure',
        'set "WORK/f7" modtime ' + time.strftime("%Y%m%d-%H:%M:%S", time.localtime(981173106)),
    ]:
        assert expect in lines, f"missing log line {expect!r} in:\n{log}"


def _fix_ugid_count(line):
    """OpenSSH 9.2 counts the groups of a users-groups-by-id request as users
    (`nusers++` in both loops), so it logs "2 users, 0 groups" for one of
    each. Compare the total only."""
    m = re.fullmatch(r"users-groups-by-id: (\d+) users, (\d+) groups", line)
    return f"users-groups-by-id: {int(m[1]) + int(m[2])} ids" if m else line


@pytest.mark.parametrize("level", ["INFO", "VERBOSE"])
def test_log_identical_to_openssh(hashi_server, openssh_server, workdir, level):
    ours = _log_session(hashi_server, level, workdir)
    theirs = _log_session(openssh_server, level, workdir)
    assert [_fix_ugid_count(l) for l in ours.splitlines()] == \
        [_fix_ugid_count(l) for l in theirs.splitlines()]


def _is_debug(line):
    return re.match(r"debug[123]: ", line) is not None


def test_log_debug3(server_path, workdir):
    """DEBUG3 adds debugN: lines (their wording is the implementation's own)
    and keeps every VERBOSE line, in order."""
    verbose = _log_session(server_path, "VERBOSE", workdir).splitlines()
    debug = _log_session(server_path, "DEBUG3", workdir).splitlines()
    assert any(l.startswith("debug1: ") for l in debug)
    assert any(l.startswith("debug3: ") for l in debug)
    rest = iter(l for l in debug if not _is_debug(l))
    missing = [l for l in verbose if not any(l == m for m in rest)]
    assert missing == [], "\n".join(debug)


def test_log_quiet_levels_say_nothing(server_path, workdir):
    for level in ("QUIET", "FATAL"):
        assert _log_session(server_path, level, workdir) == ""


def test_log_error_level(server_path, workdir):
    # ERROR: only real errors; the batch's failures are client-visible
    # statuses, not server errors.
    log = _log_session(server_path, "ERROR", workdir)
    assert "session opened" not in log
    assert "open " not in log


def test_without_e_stderr_stays_quiet(server_path, workdir):
    """Without -e the log goes to syslog, never to the client's stderr."""
    (workdir / "local").write_bytes(b"x")
    r = run_sftp_d(f"{server_path} -l DEBUG3", "put local remote\nls\n", cwd=workdir)
    assert r.returncode == 0
    assert r.stderr == ""


def test_log_through_sshd_names_client_address(sshd, server_path, workdir):
    log = workdir / "server.log"
    wrapper = workdir / "wrap.sh"
    wrapper.write_text(f'#!/bin/sh\nexec "$@" 2>"{log}"\n')
    wrapper.chmod(0o755)
    (workdir / "local").write_bytes(b"x")
    r = sshd.sftp(f'cd "{workdir}"\nlcd "{workdir}"\nput local remote\n',
                  subsystem=f"{wrapper} {server_path} -e -l INFO")
    assert r.returncode == 0, r.stderr
    lines = log.read_text().splitlines()
    assert lines[0] == f"session opened for local user {USER} from [127.0.0.1]"
    assert lines[-1] == f"session closed for local user {USER} from [127.0.0.1]"
    assert f'open "{workdir}/remote" flags WRITE,CREATE,TRUNCATE mode 0644' in lines


# --------------------------------------------------------------------------
# logging to syslog: a private mount namespace whose /dev/log is our socket

def _can_unshare():
    if os.getuid() != 0 or not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


@pytest.fixture
def fake_syslog():
    """Yields (wrapper, receive): the wrapper runs a command with /dev/log
    bound to a datagram socket we read; receive() returns the messages."""
    d = Path(tempfile.mkdtemp(prefix="hashi-syslog-"))
    try:
        dev = d / "dev"
        dev.mkdir()
        (dev / "null").write_bytes(b"")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(dev / "log"))
        wrapper = d / "in-ns.sh"
        # unshare(1) makes the new namespace's mounts private: nothing leaks.
        wrapper.write_text(f"""#!/bin/sh
exec unshare -m sh -c 'mount --bind /dev/null "{dev}/null" && mount --rbind "{dev}" /dev && exec "$0" "$@"' "$@"
""")
        wrapper.chmod(0o755)

        def receive():
            msgs = []
            sock.setblocking(False)
            while True:
                try:
                    msgs.append(sock.recv(65536).decode(errors="replace"))
                except BlockingIOError:
                    return msgs

        yield str(wrapper), receive
        sock.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _syslog_session(fake_syslog, server, workdir, args):
    wrapper, receive = fake_syslog
    receive()
    (workdir / "local").write_bytes(b"x")
    r = run_sftp_d(f"{wrapper} {server} {args}", "put local remote\nrm remote\n", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    out = []
    for m in receive():
        # "<PRI>Mmm dd hh:mm:ss TAG[PID]: message"
        mm = re.match(r"<(\d+)>\w{3} [ \d]\d \d\d:\d\d:\d\d ([^\[:]+)\[(\d+)\]: (.*)$", m, re.S)
        assert mm, m
        out.append((int(mm.group(1)), mm.group(2), mm.group(4).rstrip("\n")))
    return out


@pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare -m")
@pytest.mark.parametrize("facility,code", [("LOCAL3", 19), ("AUTH", 4), (None, 4)])
def test_syslog(server_path, workdir, fake_syslog, facility, code):
    args = "-l INFO" + (f" -f {facility}" if facility else "")
    msgs = _syslog_session(fake_syslog, server_path, workdir, args)
    assert msgs, "nothing logged"
    assert {tag for _, tag, _ in msgs} == {Path(server_path).name}
    INFO = 6
    assert {pri for pri, _, _ in msgs} == {code * 8 + INFO}
    texts = [t for _, _, t in msgs]
    assert texts[0] == f"session opened for local user {USER} from [UNKNOWN]"
    assert f'remove name "{workdir}/remote"' in texts
    assert texts[-1] == f"session closed for local user {USER} from [UNKNOWN]"


@pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare -m")
def test_syslog_identical_to_openssh(hashi_server, openssh_server, workdir, fake_syslog):
    a = _syslog_session(fake_syslog, openssh_server, workdir, "-l VERBOSE -f LOCAL5")
    b = _syslog_session(fake_syslog, hashi_server, workdir, "-l VERBOSE -f LOCAL5")
    assert [(p, _fix_ugid_count(t)) for p, _, t in b] == [(p, _fix_ugid_count(t)) for p, _, t in a]


# --------------------------------------------------------------------------
# process properties

@pytest.mark.skipif(os.getuid() != 0, reason="needs root to switch to nobody")
def test_not_dumpable(server_path):
    """Both servers make themselves non-dumpable (OpenSSH: platform_disable_
    tracing). For a non-root process that shows as /proc/PID/mem owned by root."""
    cmd = f"setpriv --reuid=65534 --regid=65534 --clear-groups {server_path} -e -l INFO"
    p = subprocess.Popen(["sftp", "-b", "-", "-D", cmd], stdin=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd="/")
    try:
        # The server logs "session opened" once set up; its stderr is ours.
        line = p.stderr.readline()
        assert line.startswith("session opened for local user nobody"), line
        kids = []
        for ent in os.listdir("/proc"):
            if not ent.isdigit():
                continue
            try:
                st = Path(f"/proc/{ent}/status").read_text()
            except OSError:
                continue
            if re.search(rf"^PPid:\s+{p.pid}$", st, re.M):
                kids.append((int(ent), st))
        assert len(kids) == 1, kids
        pid, st = kids[0]
        assert re.search(r"^Uid:\s+65534\s", st, re.M)  # it is the server, as nobody
        # (/proc/PID itself keeps the euid; the files in it change owner)
        assert os.stat(f"/proc/{pid}/mem").st_uid == 0
        assert os.stat(f"/proc/{pid}/maps").st_uid == 0
    finally:
        p.stdin.close()
        p.wait(timeout=60)
        p.stderr.close()
