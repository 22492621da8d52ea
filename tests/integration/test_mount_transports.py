"""hashi's transports without SSH, as sshfs has them: -o directport= (a TCP
connection straight to an SFTP server) and -o passive (SFTP on stdin/stdout),
against our own server."""

import os
import socket
import subprocess
import threading

import mountfix
from mountfix import *  # noqa: F401,F403  (fixtures: menv, ...)


def _serve_tcp(server_path, export):
    """A listening socket on 127.0.0.1 that runs one server per connection,
    its stdin and stdout the connection (inetd style)."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)
    children = []

    def loop():
        while True:
            try:
                conn, _ = ls.accept()
            except OSError:
                return
            children.append(subprocess.Popen([server_path], stdin=conn, stdout=conn,
                                             cwd=export))
            conn.close()

    threading.Thread(target=loop, daemon=True).start()
    return ls, children


def test_directport(menv, tmp_path):
    export = menv.new_dir("direct-export")
    (export / "hello").write_text("over plain TCP\n")
    mnt = menv.new_dir("direct-mnt")
    ls, children = _serve_tcp(menv.server_path("hashi"), export)
    try:
        port = ls.getsockname()[1]
        r = subprocess.run([menv.hashi, "127.0.0.1:%s" % export, str(mnt),
                            "-o", "directport=%d" % port],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        try:
            assert (mnt / "hello").read_text() == "over plain TCP\n"
            (mnt / "new").write_bytes(b"x" * 100000)
            assert (export / "new").read_bytes() == b"x" * 100000
        finally:
            subprocess.run(["fusermount3", "-u", str(mnt)], check=True)
    finally:
        ls.close()
        for c in children:
            c.wait(timeout=30)


def test_directport_refused(menv):
    mnt = menv.new_dir("direct-refused")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    r = subprocess.run([menv.hashi, "127.0.0.1:/", str(mnt), "-o", "directport=%d" % port],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "Connection refused" in r.stderr
    assert not mounted(mnt)


def test_passive(menv):
    """-o passive: the SFTP stream is hashi's stdin and stdout; it stays in the
    foreground and exits 0 when unmounted."""
    export = menv.new_dir("passive-export")
    (export / "f").write_text("passive\n")
    mnt = menv.new_dir("passive-mnt")
    srv = subprocess.Popen([menv.server_path("hashi")], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, cwd=export)
    h = subprocess.Popen([menv.hashi, "localhost:%s" % export, str(mnt), "-o", "passive"],
                         stdin=srv.stdout, stdout=srv.stdin, stderr=subprocess.PIPE)
    srv.stdout.close()
    srv.stdin.close()
    try:
        mountfix._wait_for(lambda: mounted(mnt) or h.poll() is not None, "the passive mount")
        assert mounted(mnt), h.stderr.read().decode()
        assert (mnt / "f").read_text() == "passive\n"
    finally:
        if mounted(mnt):
            subprocess.run(["fusermount3", "-u", str(mnt)], check=True)
        assert h.wait(timeout=30) == 0
        srv.wait(timeout=30)
