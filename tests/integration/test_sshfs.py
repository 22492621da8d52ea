"""sshfs (Debian's, a real client users have) mounting through our server:
`sshfs -o sftp_server=PATH` runs hashi-sftp-server on the remote side."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

SSHFS = shutil.which("sshfs")


def _mounted(path):
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == str(path) for line in f)


@pytest.mark.skipif(SSHFS is None, reason="sshfs is not installed")
def test_sshfs_over_our_server(sshd, hashi_server):
    base = Path(tempfile.mkdtemp(prefix="hashi-sshfs-"))
    export, mnt = base / "export", base / "mnt"
    export.mkdir()
    mnt.mkdir()
    (export / "hello").write_text("hello through sshfs\n")
    try:
        r = subprocess.run(
            [SSHFS, f"{sshd.user}@127.0.0.1:{export}", str(mnt), "-p", str(sshd.port),
             "-o", f"IdentityFile={sshd.key},UserKnownHostsFile={sshd.known_hosts}",
             "-o", "StrictHostKeyChecking=yes,BatchMode=yes,IdentitiesOnly=yes",
             "-o", f"sftp_server={hashi_server}", "-F", "/dev/null"],
            capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        try:
            assert (mnt / "hello").read_text() == "hello through sshfs\n"
            data = os.urandom(3 * 1024 * 1024 + 17)
            (mnt / "big").write_bytes(data)
            assert (export / "big").read_bytes() == data
            assert (mnt / "big").read_bytes() == data
            (mnt / "d").mkdir()
            os.rename(mnt / "big", mnt / "d" / "moved")
            assert sorted(os.listdir(mnt / "d")) == ["moved"]
            os.chmod(mnt / "hello", 0o600)
            assert (os.stat(export / "hello").st_mode & 0o777) == 0o600
            os.unlink(mnt / "d" / "moved")
            os.rmdir(mnt / "d")
            assert sorted(os.listdir(export)) == ["hello"]
            # the sshd log shows our server ran, not the subsystem
            log = Path(sshd.log).read_text()
            assert "Starting session: command" in log
        finally:
            subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
        assert not _mounted(mnt)
    finally:
        shutil.rmtree(base, ignore_errors=True)
