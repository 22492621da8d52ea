"""Protocol-level tests with a raw SFTP client (sftpwire.py).

Most tests run against our server only; where OpenSSH's sftp-server behaves
differently on purpose (see the project notes), the same test also runs
against OpenSSH's and asserts OpenSSH's behaviour, to document the difference.
"""

import os
import pwd
import resource
import stat

import pytest

from sftpwire import (
    ATTR_EXTENDED, ATTR_SIZE, Attrs, FX_BAD_MESSAGE, FX_EOF, FX_FAILURE,
    FX_NO_SUCH_FILE, FX_OK, FX_OP_UNSUPPORTED, FXF_CREAT, FXF_READ, FXF_TRUNC,
    FXF_WRITE, FXP_ATTRS, FXP_CLOSE, FXP_DATA, FXP_EXTENDED, FXP_EXTENDED_REPLY,
    FXP_FSETSTAT, FXP_FSTAT, FXP_HANDLE, FXP_LSTAT, FXP_MKDIR, FXP_NAME,
    FXP_OPEN, FXP_OPENDIR, FXP_READ, FXP_READDIR, FXP_READLINK, FXP_REALPATH,
    FXP_REMOVE, FXP_RENAME, FXP_RMDIR, FXP_SETSTAT, FXP_STAT, FXP_STATUS,
    FXP_SYMLINK, FXP_WRITE, HASHI_EXTENSIONS, MAX_MSG_LENGTH, MAX_READ_LENGTH, ServerClosed,
    SFTPWire, is_openssh, reachable_by_others, spawn, sstr, u32, u64, u8,
)

HANDLE8 = b"\0\0\0\0\0\0\0\1"  # well-formed for our server, names nothing open


@pytest.fixture
def hashi(hashi_server, workdir):
    """A session with our server in workdir."""
    with spawn(hashi_server, workdir) as c:
        yield c


@pytest.fixture
def conn(server_path, workdir):
    """A session with either server (parametrized) in workdir."""
    with spawn(server_path, workdir) as c:
        yield c


def stat_ok(c):
    """A request queued behind another one is still answered."""
    r = c.stat(".")
    assert r.type == FXP_ATTRS, r
    assert stat.S_ISDIR(r.attrs.perm)


# ------------------------------------------------------------------ unknowns

def test_unknown_packet_type(server_path, workdir):
    with spawn(server_path, workdir) as c:
        bad = c.send_request(99, b"whatever")
        good = c.send_request(FXP_STAT, sstr("."))
        if is_openssh(server_path):
            # OpenSSH logs "Unknown message 99" and sends nothing. Worse, it
            # handles one packet per poll() wakeup, and the unanswered one
            # produced no output to wake it: the stat queued behind it in
            # the same read waits until more input arrives.
            c.wait_stderr("Unknown message 99")
            more = c.send_request(FXP_STAT, sstr("."))
            first = c.recv()
            assert first.id == good and first.type == FXP_ATTRS
            assert c.reply_to(more).type == FXP_ATTRS
        else:
            first = c.recv()
            assert first.id == bad
            first.expect(FX_OP_UNSUPPORTED)
            second = c.recv()
            assert second.id == good and second.type == FXP_ATTRS


def test_unknown_extension(conn):
    conn.call_extended("no-such-extension@example.com", b"xyz").expect(FX_OP_UNSUPPORTED)
    conn.call_extended("", b"").expect(FX_OP_UNSUPPORTED)
    stat_ok(conn)


def test_version_advertises_all_extensions(conn, server_path):
    """OpenSSH's extensions in OpenSSH's order; ours (PROTOCOL.hashi) after them."""
    assert conn.version_reply.version == 3
    hashi = [] if is_openssh(server_path) else [(n, "1") for n in HASHI_EXTENSIONS]
    assert conn.version_reply.extension_list == [
        ("posix-rename@openssh.com", "1"), ("statvfs@openssh.com", "2"),
        ("fstatvfs@openssh.com", "2"), ("hardlink@openssh.com", "1"),
        ("fsync@openssh.com", "1"), ("lsetstat@openssh.com", "1"),
        ("limits@openssh.com", "1"), ("expand-path@openssh.com", "1"),
        ("copy-data", "1"), ("home-directory", "1"),
        ("users-groups-by-id@openssh.com", "1")] + hashi


def test_init_version_2_status_without_message(server_path, workdir):
    """A version 2 client gets STATUS replies without message and language."""
    with SFTPWire([server_path, "-e"], cwd=str(workdir), version=2) as c:
        assert c.version_reply.version == 3
        r = c.stat("missing").expect(FX_NO_SUCH_FILE)
        assert r.msg is None and len(r.body) == 8


def test_second_init_gets_version_again(conn):
    v = conn.init()
    assert v.version == 3 and v.extensions == conn.version_reply.extensions
    stat_ok(conn)


# ------------------------------------------------------------------ malformed

EXT_NO_ARGS = {"limits@openssh.com"}

MALFORMED = [
    # (label, packet type, payload after the id)
    ("open-empty", FXP_OPEN, b""),
    ("open-no-flags", FXP_OPEN, sstr("f")),
    ("open-no-attrs", FXP_OPEN, sstr("f") + u32(FXF_READ)),
    ("open-attrs-short", FXP_OPEN, sstr("f") + u32(FXF_READ) + u32(ATTR_SIZE) + b"\0\0"),
    ("open-path-past-end", FXP_OPEN, u32(1000) + b"abc"),
    ("close-empty", FXP_CLOSE, b""),
    ("close-handle-past-end", FXP_CLOSE, u32(8) + b"\0\0\0"),
    ("read-no-offset", FXP_READ, sstr(HANDLE8)),
    ("read-no-len", FXP_READ, sstr(HANDLE8) + u64(0)),
    ("read-short-len", FXP_READ, sstr(HANDLE8) + u64(0) + b"\0\0"),
    ("write-no-data", FXP_WRITE, sstr(HANDLE8) + u64(0)),
    ("write-data-past-end", FXP_WRITE, sstr(HANDLE8) + u64(0) + u32(100) + b"abc"),
    ("lstat-empty", FXP_LSTAT, b""),
    ("fstat-empty", FXP_FSTAT, b""),
    ("setstat-no-attrs", FXP_SETSTAT, sstr(".")),
    ("setstat-attrs-short", FXP_SETSTAT, sstr(".") + u32(0x8)),
    ("fsetstat-no-attrs", FXP_FSETSTAT, sstr(HANDLE8)),
    ("opendir-empty", FXP_OPENDIR, b""),
    ("readdir-empty", FXP_READDIR, b""),
    ("remove-empty", FXP_REMOVE, b""),
    ("mkdir-no-attrs", FXP_MKDIR, sstr("d")),
    ("rmdir-empty", FXP_RMDIR, b""),
    ("realpath-empty", FXP_REALPATH, b""),
    ("stat-empty", FXP_STAT, b""),
    ("stat-len-past-end", FXP_STAT, u32(1000) + b"abc"),
    ("stat-len-ffffffff", FXP_STAT, u32(0xFFFFFFFF) + b"abc"),
    ("stat-short-len", FXP_STAT, b"\0\0"),
    ("stat-nul-in-path", FXP_STAT, sstr(b"a\0b")),
    ("rename-one-path", FXP_RENAME, sstr("a")),
    ("readlink-empty", FXP_READLINK, b""),
    ("symlink-one-path", FXP_SYMLINK, sstr("a")),
    ("extended-empty", FXP_EXTENDED, b""),
    ("extended-name-past-end", FXP_EXTENDED, u32(50) + b"posix-rename"),
    ("users-groups-uneven", FXP_EXTENDED,
     sstr("users-groups-by-id@openssh.com") + sstr(b"\0\0\0\0\0") + sstr(b"")),
    ("users-groups-inner-past-end", FXP_EXTENDED,
     sstr("users-groups-by-id@openssh.com") + u32(12) + b"\0\0\0\0"),
    ("copy-data-short", FXP_EXTENDED,
     sstr("copy-data") + sstr(HANDLE8) + u64(0) + u64(0) + sstr(HANDLE8)),
] + [
    ("ext-%s-empty" % name.split("@")[0], FXP_EXTENDED, sstr(name))
    for name in ("posix-rename@openssh.com", "statvfs@openssh.com", "fstatvfs@openssh.com",
                 "hardlink@openssh.com", "fsync@openssh.com", "lsetstat@openssh.com",
                 "expand-path@openssh.com", "copy-data", "home-directory",
                 "users-groups-by-id@openssh.com")
]


@pytest.mark.parametrize("label,ptype,payload", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_request_bad_message(hashi, label, ptype, payload):
    rid = hashi.send_request(ptype, payload)
    hashi.reply_to(rid).expect(FX_BAD_MESSAGE)
    stat_ok(hashi)
    assert hashi.alive()


OPENSSH_FATAL = [m for m in MALFORMED
                 if m[0] in ("open-empty", "stat-len-past-end", "stat-nul-in-path")]


@pytest.mark.parametrize("label,ptype,payload", OPENSSH_FATAL, ids=[m[0] for m in OPENSSH_FATAL])
def test_openssh_dies_on_malformed_request(openssh_server, workdir, label, ptype, payload):
    """Documents OpenSSH: a malformed request is fatal (no reply, exit 255)."""
    with spawn(openssh_server, workdir) as c:
        c.send_request(ptype, payload)
        assert c.read_until_eof() == []
        assert c.wait_exit() == 255


def test_malformed_does_not_leak_into_next_request(hashi, workdir):
    """Trailing garbage inside a packet is skipped, not parsed as a request."""
    (workdir / "f").write_bytes(b"x")
    rid = hashi.send_request(FXP_STAT, sstr("f") + u8(FXP_REMOVE) + sstr("f"))
    assert hashi.reply_to(rid).type == FXP_ATTRS
    assert (workdir / "f").exists()


def test_attrs_huge_extended_count(hashi, workdir):
    (workdir / "f").write_bytes(b"x")
    # count 0xFFFFFFFF with no pairs
    hashi.call(FXP_SETSTAT, sstr("f") + u32(ATTR_EXTENDED) + u32(0xFFFFFFFF)).expect(FX_BAD_MESSAGE)
    # count says 3, one pair present
    hashi.call(FXP_SETSTAT, sstr("f") + u32(ATTR_EXTENDED) + u32(3) + sstr("a") + sstr("b")) \
        .expect(FX_BAD_MESSAGE)
    # a pair's string length past the end
    hashi.call(FXP_SETSTAT, sstr("f") + u32(ATTR_EXTENDED) + u32(1) + sstr("a") + u32(99)) \
        .expect(FX_BAD_MESSAGE)
    # same in fsetstat and open
    h = hashi.open("f", FXF_READ).ok(FXP_HANDLE).handle
    hashi.call(FXP_FSETSTAT, sstr(h) + u32(ATTR_EXTENDED) + u32(0x7FFFFFFF)).expect(FX_BAD_MESSAGE)
    hashi.call(FXP_OPEN, sstr("f") + u32(FXF_READ) + u32(ATTR_EXTENDED) + u32(0xFFFFFFFF)) \
        .expect(FX_BAD_MESSAGE)
    # the session goes on
    stat_ok(hashi)
    hashi.close_handle(h).ok()


def test_attrs_extended_pairs_accepted(conn, workdir):
    """Well-formed extended pairs are parsed and ignored (both servers)."""
    (workdir / "f").write_bytes(b"x")
    a = Attrs(perm=0o600, extended=[(b"foo@example.com", b"1"), (b"bar@example.com", b"")])
    conn.setstat("f", a).ok()
    assert stat.S_IMODE(os.stat(workdir / "f").st_mode) == 0o600


def test_packet_without_id_ends_session(server_path, workdir):
    with spawn(server_path, workdir) as c:
        c.send_packet(FXP_STAT, b"\0\0")  # type + 2 bytes: no room for an id
        assert c.read_until_eof() == []
        assert c.wait_exit() != 0


def test_empty_packet_ends_session(hashi_server, workdir):
    """A length prefix of 0 (no type byte). OpenSSH waits for 5 bytes before
    looking at a packet, so it takes this for an incomplete packet and the
    next packet's first byte for its type; we end the session at once."""
    with spawn(hashi_server, workdir) as c:
        c.send_raw(u32(0))
        assert c.read_until_eof() == []
        assert c.wait_exit() != 0


# ------------------------------------------------------------------ handles

@pytest.mark.parametrize("size", [0, 3, 4, 7, 9, 255, 256, 1000])
def test_handle_of_wrong_size(conn, workdir, size):
    (workdir / "f").write_bytes(b"data")
    h = conn.open("f", FXF_READ).ok(FXP_HANDLE).handle
    bogus = (b"\0" * size) if len(h) != size else b"\xff" * size
    conn.read(bogus, 0, 10).expect(FX_FAILURE)
    conn.fstat(bogus).expect(FX_FAILURE)
    conn.write(bogus, 0, b"x").expect(FX_FAILURE)
    conn.readdir(bogus).expect(FX_FAILURE)
    conn.close_handle(bogus).expect(FX_NO_SUCH_FILE)  # as OpenSSH: close says ENOENT
    assert conn.read(h, 0, 10).ok(FXP_DATA).data == b"data"
    conn.close_handle(h).ok()


def test_handle_kind_mismatch(conn, workdir):
    (workdir / "f").write_bytes(b"data")
    fh = conn.open("f", FXF_READ).ok(FXP_HANDLE).handle
    dh = conn.opendir(".").ok(FXP_HANDLE).handle
    conn.readdir(fh).expect(FX_FAILURE)
    conn.read(dh, 0, 10).expect(FX_FAILURE)
    conn.write(dh, 0, b"x").expect(FX_FAILURE)
    conn.close_handle(fh).ok()
    conn.close_handle(dh).ok()


def test_stale_handle_after_close(server_path, workdir):
    (workdir / "a").write_bytes(b"AAAA")
    (workdir / "b").write_bytes(b"BBBB")
    with spawn(server_path, workdir) as c:
        h1 = c.open("a", FXF_READ).ok(FXP_HANDLE).handle
        c.close_handle(h1).ok()
        c.read(h1, 0, 4).expect(FX_FAILURE)
        c.fstat(h1).expect(FX_FAILURE)
        h2 = c.open("b", FXF_READ).ok(FXP_HANDLE).handle
        if is_openssh(server_path):
            # OpenSSH reuses the handle string: the old one now reads "b".
            assert h2 == h1
            assert c.read(h1, 0, 4).ok(FXP_DATA).data == b"BBBB"
            return
        assert len(h1) == len(h2) == 8
        assert h2[:4] == h1[:4], "expected the slot to be reused (index part)"
        assert h2 != h1
        c.read(h1, 0, 4).expect(FX_FAILURE)
        c.fstat(h1).expect(FX_FAILURE)
        c.write(h1, 0, b"x").expect(FX_FAILURE)
        c.fsetstat(h1, Attrs(perm=0o600)).expect(FX_FAILURE)
        c.fstatvfs(h1).expect(FX_FAILURE)
        c.close_handle(h1).expect(FX_NO_SUCH_FILE)
        # the new handle is untouched by all that
        assert c.read(h2, 0, 4).ok(FXP_DATA).data == b"BBBB"
        c.close_handle(h2).ok()
        assert (workdir / "b").read_bytes() == b"BBBB"


def test_read_huge_length_is_capped(conn, workdir):
    data = os.urandom(300 * 1024)
    (workdir / "f").write_bytes(data)
    h = conn.open("f", FXF_READ).ok(FXP_HANDLE).handle
    r = conn.read(h, 0, 0xFFFFFFFF).ok(FXP_DATA)
    assert len(r.data) == MAX_READ_LENGTH
    assert r.data == data[:MAX_READ_LENGTH]
    r = conn.read(h, MAX_READ_LENGTH, 0xFFFFFFFF).ok(FXP_DATA)
    assert r.data == data[MAX_READ_LENGTH:]
    conn.read(h, len(data), 0xFFFFFFFF).expect(FX_EOF)
    # length 0: an empty DATA (both servers)
    assert conn.read(h, 0, 0).ok(FXP_DATA).data == b""
    # an offset past 2^63 is refused, not a crash
    r = conn.read(h, 0xFFFFFFFFFFFFFFFF, 10)
    assert r.type == FXP_STATUS and r.code != FX_OK
    stat_ok(conn)
    conn.close_handle(h).ok()


def test_handle_table_limit(hashi_server, workdir):
    (workdir / "f").write_bytes(b"x")
    with spawn(hashi_server, workdir) as c:
        limit = c.limits().ok(FXP_EXTENDED_REPLY).extra["max_open_handles"]
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert 0 < limit <= soft
        # pipeline limit+3 opens, then read the replies
        ids = [c.send_request(FXP_OPEN, sstr("f") + u32(FXF_READ) + u32(0))
               for _ in range(limit + 3)]
        replies = [c.reply_to(i) for i in ids]
        handles = [r.handle for r in replies if r.type == FXP_HANDLE]
        refused = [r for r in replies if r.type != FXP_HANDLE]
        assert len(handles) + len(refused) == limit + 3
        assert 0 < len(handles) <= limit
        assert refused, "the server never refused an open"
        for r in refused:
            r.expect(FX_FAILURE)
        # a directory needs a handle too
        c.opendir(".").expect(FX_FAILURE)
        # closing one makes room for one
        c.close_handle(handles.pop()).ok()
        h = c.opendir(".").ok(FXP_HANDLE).handle
        c.open("f", FXF_READ).expect(FX_FAILURE)
        stat_ok(c)
        c.close_handle(h).ok()
        for h in handles:
            c.close_handle(h).ok()


def _low_nofile():
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


@pytest.mark.parametrize("which", ["hashi", "openssh"])
def test_handle_limit_follows_rlimit(request, workdir, which):
    """With RLIMIT_NOFILE 64, our advertised max-open-handles is honoured.
    OpenSSH advertises rlimit-5 but, with -e and no syslog descriptor, can
    actually open more than that until open(2) fails with EMFILE."""
    server = request.getfixturevalue(which + "_server")
    (workdir / "f").write_bytes(b"x")
    with SFTPWire([server, "-e"], cwd=str(workdir), preexec_fn=_low_nofile) as c:
        limit = c.limits().ok(FXP_EXTENDED_REPLY).extra["max_open_handles"]
        assert 0 < limit < 64
        n = 0
        while True:
            r = c.open("f", FXF_READ)
            if r.type != FXP_HANDLE:
                r.expect(FX_FAILURE)
                break
            n += 1
            assert n < 64
        if which == "hashi":
            assert n == limit
        else:
            assert n >= limit  # 61 here: fds 3..63
        stat_ok(c)


def test_fifo_open_does_not_block(hashi, workdir):
    os.mkfifo(workdir / "fifo")
    oid = hashi.send_request(FXP_OPEN, sstr("fifo") + u32(FXF_READ) + u32(0))
    sid = hashi.send_request(FXP_STAT, sstr("."))
    r = hashi.reply_to(oid)
    assert hashi.reply_to(sid).type == FXP_ATTRS
    assert r.type == FXP_HANDLE, r
    h = r.handle
    # no writer yet: end of file, at once
    hashi.read(h, 0, 100).expect(FX_EOF)
    wfd = os.open(workdir / "fifo", os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(wfd, b"through the fifo")
        assert hashi.read(h, 0, 100).ok(FXP_DATA).data == b"through the fifo"
        # a writer but no data: a status (not a stalled server)
        r = hashi.read(h, 0, 100)
        assert r.type == FXP_STATUS and r.code != FX_OK
        stat_ok(hashi)
    finally:
        os.close(wfd)
    hashi.close_handle(h).ok()
    # opening a FIFO for writing with no reader fails instead of blocking
    r = hashi.open("fifo", FXF_WRITE)
    assert r.type == FXP_STATUS and r.code != FX_OK
    stat_ok(hashi)


# ------------------------------------------------------------------ framing

def test_oversized_length_prefix_ends_session(server_path, workdir):
    with spawn(server_path, workdir) as c:
        stat_ok(c)
        c.send_raw(u32(MAX_MSG_LENGTH + 1) + u8(FXP_STAT) + b"\0" * 64)
        assert c.read_until_eof() == []
        code = c.wait_exit()
        assert code != 0
        assert "bad message" in c.stderr_text()
        if is_openssh(server_path):
            assert code == 11


def test_largest_packet_accepted(conn, workdir):
    h = conn.open("f", FXF_WRITE | FXF_CREAT).ok(FXP_HANDLE).handle
    # 1 type + 4 id + (4+len(h)) handle + 8 offset + 4 data length + data = 256 KiB
    n = MAX_MSG_LENGTH - (1 + 4 + 4 + len(h) + 8 + 4)
    data = os.urandom(n)
    conn.send_raw(u32(MAX_MSG_LENGTH) + u8(FXP_WRITE) + u32(4242) + sstr(h) + u64(0) + sstr(data))
    conn.reply_to(4242).ok()
    conn.close_handle(h).ok()
    assert (workdir / "f").read_bytes() == data


def test_length_prefix_split_across_writes(conn):
    """A packet dribbled in one byte at a time is still one packet."""
    pkt = u32(1 + 4 + 5) + u8(FXP_STAT) + u32(777) + sstr(".")
    for b in pkt:
        conn.send_raw(bytes([b]))
    assert conn.reply_to(777).type == FXP_ATTRS


def test_request_before_init_ends_session(server_path, workdir):
    with SFTPWire([server_path, "-e"], cwd=str(workdir), init=False) as c:
        c.send_request(FXP_STAT, sstr("."))
        assert c.read_until_eof() == []
        assert c.wait_exit() != 0
        assert "before init" in c.stderr_text()


def test_extended_before_init_ends_session(server_path, workdir):
    with SFTPWire([server_path, "-e"], cwd=str(workdir), init=False) as c:
        c.send_extended("limits@openssh.com")
        assert c.read_until_eof() == []
        assert c.wait_exit() != 0


def test_pipelined_then_eof(server_path, workdir):
    """Many requests written before reading any reply, then our end closed:
    our server answers every one; OpenSSH exits at EOF and drops the rest."""
    (workdir / "f").write_bytes(b"0123456789")
    n = 1000
    with spawn(server_path, workdir) as c:
        ids = []
        for i in range(n):
            if i % 3 == 0:
                ids.append(c.send_request(FXP_STAT, sstr("f")))
            elif i % 3 == 1:
                ids.append(c.send_request(FXP_LSTAT, sstr("missing")))
            else:
                ids.append(c.send_extended("limits@openssh.com"))
        c.close_stdin()
        replies = c.read_until_eof()
        assert c.wait_exit() == 0
        if is_openssh(server_path):
            # OpenSSH exits at EOF: how many it answered first depends on
            # timing (usually not all); nothing to assert about it.
            return
        assert [r.id for r in replies] == ids
        for i, r in enumerate(replies):
            if i % 3 == 0:
                assert r.type == FXP_ATTRS and r.attrs.size == 10
            elif i % 3 == 1:
                r.expect(FX_NO_SUCH_FILE)
            else:
                assert r.type == FXP_EXTENDED_REPLY


def test_pipelined_big_replies_then_eof(hashi_server, workdir):
    """Replies far larger than any buffer, all due when stdin closes."""
    data = os.urandom(1024 * 1024)
    (workdir / "big").write_bytes(data)
    with spawn(hashi_server, workdir) as c:
        h = c.open("big", FXF_READ).ok(FXP_HANDLE).handle
        ids = [c.send_request(FXP_READ, sstr(h) + u64((i % 4) * 262144) + u32(MAX_READ_LENGTH))
               for i in range(120)]
        c.close_stdin()
        replies = c.read_until_eof()
        assert c.wait_exit() == 0
    assert [r.id for r in replies] == ids
    for i, r in enumerate(replies):
        off = (i % 4) * 262144
        assert r.type == FXP_DATA and r.data == data[off:off + MAX_READ_LENGTH]


def test_interleaved_handles_pipelined(hashi, workdir):
    """Writes to two files interleaved in one burst land where they should."""
    ha = hashi.open("a", FXF_WRITE | FXF_CREAT | FXF_TRUNC).ok(FXP_HANDLE).handle
    hb = hashi.open("b", FXF_WRITE | FXF_CREAT | FXF_TRUNC).ok(FXP_HANDLE).handle
    ids = []
    for i in range(200):
        ids.append(hashi.send_request(FXP_WRITE, sstr(ha) + u64(i * 4) + sstr(b"a%03d" % i)))
        ids.append(hashi.send_request(FXP_WRITE, sstr(hb) + u64((199 - i) * 4)
                                      + sstr(b"b%03d" % (199 - i))))
    for i in ids:
        hashi.reply_to(i).ok()
    hashi.close_handle(ha).ok()
    hashi.close_handle(hb).ok()
    assert (workdir / "a").read_bytes() == b"".join(b"a%03d" % i for i in range(200))
    assert (workdir / "b").read_bytes() == b"".join(b"b%03d" % i for i in range(200))


# ------------------------------------------------------------------ extensions

def test_home_directory(server_path, workdir):
    me = pwd.getpwuid(os.getuid())
    daemon = pwd.getpwnam("daemon")
    assert daemon.pw_dir != me.pw_dir
    with spawn(server_path, workdir) as c:
        assert c.home_directory(me.pw_name).ok(FXP_NAME).name == me.pw_dir
        if is_openssh(server_path):
            # OpenSSH: "" is no user; any known name answers the login user's home
            c.home_directory("").expect(FX_FAILURE)
            assert c.home_directory("daemon").ok(FXP_NAME).name == me.pw_dir
        else:
            assert c.home_directory("").ok(FXP_NAME).name == me.pw_dir
            assert c.home_directory("daemon").ok(FXP_NAME).name == daemon.pw_dir
        c.home_directory("nosuchuserxyz").expect(FX_FAILURE)
        stat_ok(c)


def test_copy_data_between_files(conn, workdir):
    src = os.urandom(200_000)
    (workdir / "src").write_bytes(src)
    (workdir / "dst").write_bytes(b"X" * 50)
    rh = conn.open("src", FXF_READ).ok(FXP_HANDLE).handle
    wh = conn.open("dst", FXF_WRITE).ok(FXP_HANDLE).handle
    # length 0: to the end of the source
    conn.copy_data(rh, 1000, 0, wh, 10).ok()
    assert (workdir / "dst").read_bytes() == b"X" * 10 + src[1000:]
    # a slice into the middle
    conn.copy_data(rh, 5, 300, wh, 20).ok()
    expect = bytearray(b"X" * 10 + src[1000:])
    expect[20:320] = src[5:305]
    assert (workdir / "dst").read_bytes() == bytes(expect)
    # from an offset at EOF with length 0: nothing to do
    conn.copy_data(rh, len(src), 0, wh, 0).ok()
    assert (workdir / "dst").read_bytes() == bytes(expect)
    conn.close_handle(rh).ok()
    conn.close_handle(wh).ok()


def test_copy_data_onto_same_file(server_path, workdir):
    data = os.urandom(100_000)
    (workdir / "f").write_bytes(data)
    os.link(workdir / "f", workdir / "hardlink")
    with spawn(server_path, workdir) as c:
        rh = c.open("f", FXF_READ | FXF_WRITE).ok(FXP_HANDLE).handle
        c.copy_data(rh, 0, 0, rh, 0).expect(FX_FAILURE)  # same handle
        wh = c.open("f", FXF_WRITE).ok(FXP_HANDLE).handle
        c.copy_data(rh, 0, 0, wh, 10).expect(FX_FAILURE)  # same path
        lh = c.open("hardlink", FXF_WRITE).ok(FXP_HANDLE).handle
        dh = c.open("./f", FXF_WRITE).ok(FXP_HANDLE).handle
        if is_openssh(server_path):
            # OpenSSH compares the names only: another name for the same file
            # is copied onto itself.
            c.copy_data(rh, 0, 1000, lh, 0).ok()
        else:
            c.copy_data(rh, 0, 0, lh, 10).expect(FX_FAILURE)  # same inode
            c.copy_data(rh, 0, 0, dh, 10).expect(FX_FAILURE)
            assert (workdir / "f").read_bytes() == data
        for h in (rh, wh, lh, dh):
            c.close_handle(h).ok()


def test_copy_data_needs_file_handles(conn, workdir):
    (workdir / "f").write_bytes(b"abc")
    rh = conn.open("f", FXF_READ).ok(FXP_HANDLE).handle
    dh = conn.opendir(".").ok(FXP_HANDLE).handle
    conn.copy_data(rh, 0, 0, dh, 0).expect(FX_FAILURE)
    conn.copy_data(dh, 0, 0, rh, 0).expect(FX_FAILURE)
    conn.copy_data(rh, 0, 0, b"\0" * 8, 0).expect(FX_FAILURE)
    conn.close_handle(rh).ok()
    conn.close_handle(dh).ok()


def _unused_id(lookup):
    for i in range(4242, 60000):
        try:
            lookup(i)
        except KeyError:
            return i
    raise RuntimeError("no unused id")


def test_users_groups_by_id(conn):
    import grp
    uid = _unused_id(pwd.getpwuid)
    gid = _unused_id(grp.getgrgid)
    r = conn.users_groups_by_id([0, uid, os.getuid()], [0, gid]).ok(FXP_EXTENDED_REPLY)
    users, groups = r.extra
    assert users == ["root", "", pwd.getpwuid(os.getuid()).pw_name]
    assert groups == [grp.getgrgid(0).gr_name, ""]
    assert conn.users_groups_by_id([], []).ok(FXP_EXTENDED_REPLY).extra == ([], [])


def test_limits(conn):
    lim = conn.limits().ok(FXP_EXTENDED_REPLY).extra
    assert lim["max_packet_length"] == 256 * 1024
    assert lim["max_read_length"] == 256 * 1024 - 1024
    assert lim["max_write_length"] == 256 * 1024 - 1024
    assert 0 < lim["max_open_handles"] <= resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _check_statvfs(d, path):
    st = os.statvfs(path)
    assert d["bsize"] == st.f_bsize
    assert d["frsize"] == st.f_frsize
    assert d["blocks"] == st.f_blocks
    assert d["files"] == st.f_files
    assert d["namemax"] == st.f_namemax
    assert d["fsid"] == st.f_fsid
    flag = (1 if st.f_flag & os.ST_RDONLY else 0) | (2 if st.f_flag & os.ST_NOSUID else 0)
    assert d["flag"] == flag
    assert d["blocks"] >= d["bfree"]


def test_statvfs_layout(conn, workdir):
    (workdir / "f").write_bytes(b"x")
    r = conn.statvfs(".").ok(FXP_EXTENDED_REPLY)
    assert len(r.payload) == 11 * 8
    _check_statvfs(r.extra, workdir)
    _check_statvfs(conn.statvfs("/proc").ok(FXP_EXTENDED_REPLY).extra, "/proc")
    conn.statvfs("missing").expect(FX_NO_SUCH_FILE)
    h = conn.open("f", FXF_READ).ok(FXP_HANDLE).handle
    r = conn.fstatvfs(h).ok(FXP_EXTENDED_REPLY)
    assert len(r.payload) == 11 * 8
    _check_statvfs(r.extra, workdir)
    conn.close_handle(h).ok()


def test_fstat_fsetstat_fstatvfs_on_dir_handle(server_path, workdir):
    with spawn(server_path, workdir) as c:
        os.mkdir(workdir / "d")
        h = c.opendir("d").ok(FXP_HANDLE).handle
        if is_openssh(server_path):
            c.fstat(h).expect(FX_FAILURE)
            c.fsetstat(h, Attrs(perm=0o700)).expect(FX_FAILURE)
            c.fstatvfs(h).expect(FX_FAILURE)
        else:
            a = c.fstat(h).ok(FXP_ATTRS).attrs
            assert stat.S_ISDIR(a.perm)
            c.fsetstat(h, Attrs(perm=0o700, atime=1000000, mtime=2000000)).ok()
            st = os.stat(workdir / "d")
            assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_mtime == 2000000
            _check_statvfs(c.fstatvfs(h).ok(FXP_EXTENDED_REPLY).extra, workdir)
        c.close_handle(h).ok()


def test_expand_path(conn, workdir):
    wd = os.path.realpath(workdir)
    os.mkdir(workdir / "sub")
    root_home = pwd.getpwnam("root").pw_dir
    assert conn.expand_path("~").ok(FXP_NAME).name == wd
    assert conn.expand_path("~/x").ok(FXP_NAME).name == wd + "/x"
    assert conn.expand_path("~/sub").ok(FXP_NAME).name == wd + "/sub"
    assert conn.expand_path("~root").ok(FXP_NAME).name == os.path.realpath(root_home)
    assert conn.expand_path("~root/").ok(FXP_NAME).name == os.path.realpath(root_home)
    assert conn.expand_path("sub").ok(FXP_NAME).name == wd + "/sub"
    assert conn.expand_path("sub/../sub/./new").ok(FXP_NAME).name == wd + "/sub/new"
    assert conn.expand_path("").ok(FXP_NAME).name == wd
    assert conn.expand_path("/").ok(FXP_NAME).name == "/"
    conn.expand_path("~nosuchuserxyz").expect(FX_NO_SUCH_FILE)
    conn.expand_path("~nosuchuserxyz/x").expect(FX_NO_SUCH_FILE)
    conn.expand_path("~/missing/x").expect(FX_NO_SUCH_FILE)


def test_expand_path_honours_start_dir(server_path, workdir):
    os.mkdir(workdir / "start")
    with spawn(server_path, "/", "-d", str(workdir / "start")) as c:
        assert c.expand_path("~").ok(FXP_NAME).name == os.path.realpath(workdir / "start")
        assert c.realpath(".").ok(FXP_NAME).name == os.path.realpath(workdir / "start")


# ------------------------------------------------------------------ renames, links

def test_rename_never_overwrites(conn, workdir):
    (workdir / "a").write_bytes(b"A")
    (workdir / "b").write_bytes(b"B")
    conn.rename("a", "b").expect(FX_FAILURE)
    assert (workdir / "a").read_bytes() == b"A"
    assert (workdir / "b").read_bytes() == b"B"
    # directories too
    os.mkdir(workdir / "d1")
    os.mkdir(workdir / "d2")
    conn.rename("d1", "d2").expect(FX_FAILURE)
    assert (workdir / "d1").is_dir() and (workdir / "d2").is_dir()
    # a symlink as the target (even a dangling one) is not replaced either
    os.symlink("nowhere", workdir / "dangling")
    conn.rename("a", "dangling").expect(FX_FAILURE)
    assert os.readlink(workdir / "dangling") == "nowhere"
    assert (workdir / "a").read_bytes() == b"A"
    # to a free name it works
    conn.rename("a", "c").ok()
    assert (workdir / "c").read_bytes() == b"A" and not (workdir / "a").exists()
    conn.rename("missing", "z").expect(FX_NO_SUCH_FILE)


def test_posix_rename_overwrites(conn, workdir):
    (workdir / "a").write_bytes(b"A")
    (workdir / "b").write_bytes(b"B")
    conn.posix_rename("a", "b").ok()
    assert not (workdir / "a").exists()
    assert (workdir / "b").read_bytes() == b"A"
    conn.posix_rename("missing", "b").expect(FX_NO_SUCH_FILE)


def test_lsetstat_on_symlink(conn, workdir):
    (workdir / "target").write_bytes(b"t")
    os.utime(workdir / "target", (500000, 600000))
    os.symlink("target", workdir / "link")
    conn.lsetstat("link", Attrs(atime=1000000, mtime=2000000)).ok()
    lst = os.lstat(workdir / "link")
    assert (lst.st_atime, lst.st_mtime) == (1000000, 2000000)
    st = os.stat(workdir / "target")
    assert (st.st_atime, st.st_mtime) == (500000, 600000)
    # setstat follows the link
    conn.setstat("link", Attrs(atime=3000000, mtime=4000000)).ok()
    st = os.stat(workdir / "target")
    assert (st.st_atime, st.st_mtime) == (3000000, 4000000)
    assert os.lstat(workdir / "link").st_mtime == 2000000
    # a size is meaningless for a link
    conn.lsetstat("link", Attrs(size=0)).expect(FX_BAD_MESSAGE)
    assert (workdir / "target").read_bytes() == b"t"


def test_realpath(conn, workdir):
    wd = os.path.realpath(workdir)
    os.mkdir(workdir / "sub")
    (workdir / "file").write_bytes(b"")
    assert conn.realpath(".").ok(FXP_NAME).name == wd
    assert conn.realpath("").ok(FXP_NAME).name == wd
    assert conn.realpath("sub/missing").ok(FXP_NAME).name == wd + "/sub/missing"
    assert conn.realpath("missing").ok(FXP_NAME).name == wd + "/missing"
    assert conn.realpath("sub/..").ok(FXP_NAME).name == wd
    conn.realpath("missing/x").expect(FX_NO_SUCH_FILE)
    conn.realpath("file/x").expect(FX_NO_SUCH_FILE)
    r = conn.realpath("sub").ok(FXP_NAME)
    assert r.names[0][1] == wd + "/sub"  # longname is the name too
    assert r.names[0][2].flags == 0


def test_symlink_argument_order(conn, workdir):
    """OpenSSH's order: target first, then the new link (the helper swaps)."""
    conn.symlink("lnk", "some/target").ok()
    assert os.readlink(workdir / "lnk") == "some/target"
    assert conn.readlink("lnk").ok(FXP_NAME).name == "some/target"
    conn.symlink("lnk", "other").expect(FX_FAILURE)  # EEXIST


# ------------------------------------------------------------------ process

def test_not_dumpable(server_path, tmp_path):
    """Run as an unprivileged user: a non-dumpable process's /proc files
    belong to root."""
    if os.getuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    if not reachable_by_others(server_path):
        pytest.skip("%s is not reachable by other users" % server_path)
    nobody = pwd.getpwnam("nobody")

    def drop():
        os.setgid(nobody.pw_gid)
        os.setgroups([])
        os.setuid(nobody.pw_uid)

    with SFTPWire([server_path, "-e"], cwd="/", preexec_fn=drop) as c:
        stat_ok(c)
        st = os.stat("/proc/%d/environ" % c.proc.pid)
        assert st.st_uid == 0, "the server process is dumpable"


def test_status_reply_has_message_and_language(conn):
    r = conn.stat("missing").expect(FX_NO_SUCH_FILE)
    assert r.msg == "No such file"
    assert r.lang == ""
    r = conn.call_extended("nope").expect(FX_OP_UNSUPPORTED)
    assert r.msg == "Operation unsupported"


def test_closing_stdin_exits_zero(conn):
    conn.close_stdin()
    assert conn.read_until_eof() == []
    assert conn.wait_exit() == 0


def test_forced_close_logged(hashi_server, workdir):
    (workdir / "f").write_bytes(b"abc")
    with spawn(hashi_server, workdir, "-l", "INFO") as c:
        h = c.open("f", FXF_READ).ok(FXP_HANDLE).handle
        c.read(h, 0, 3).ok(FXP_DATA)
        c.close_stdin()
        assert c.read_until_eof() == []
        assert c.wait_exit() == 0
        log = c.stderr_text()
    assert 'forced close "f" bytes read 3 written 0' in log
    assert "session closed for local user" in log


def test_server_survives_client_vanishing(hashi_server, workdir):
    """Replies to a client that closed its read end: the server exits cleanly."""
    (workdir / "big").write_bytes(os.urandom(1024 * 1024))
    c = spawn(hashi_server, workdir)
    try:
        h = c.open("big", FXF_READ).ok(FXP_HANDLE).handle
        c.proc.stdout.close()
        c._eof = True
        try:
            for i in range(50):
                c.send_request(FXP_READ, sstr(h) + u64(0) + u32(MAX_READ_LENGTH))
        except ServerClosed:
            pass
        c.close_stdin()
        assert c.wait_exit() in (0, 1)
    finally:
        if c.alive():
            c.proc.kill()
            c.proc.wait()
