"""A small raw SFTP version 3 client for protocol-level tests.

It spawns a server binary (ours or OpenSSH's sftp-server) with pipes, speaks
the wire protocol byte by byte, and never blocks forever: every read waits
with select() and a timeout. Requests can be pipelined (send now, read the
replies later), and arbitrary bytes can be written for malformed-packet tests.

Typical use:

    with SFTPWire([server, "-e"], cwd=tree) as c:
        h = c.open("file", FXF_READ).ok().handle
        assert c.read(h, 0, 10).ok().data == b"..."
        c.close_handle(h).ok()
"""

import os
import select
import struct
import subprocess
import tempfile
import time

# Packet types
FXP_INIT = 1
FXP_VERSION = 2
FXP_OPEN = 3
FXP_CLOSE = 4
FXP_READ = 5
FXP_WRITE = 6
FXP_LSTAT = 7
FXP_FSTAT = 8
FXP_SETSTAT = 9
FXP_FSETSTAT = 10
FXP_OPENDIR = 11
FXP_READDIR = 12
FXP_REMOVE = 13
FXP_MKDIR = 14
FXP_RMDIR = 15
FXP_REALPATH = 16
FXP_STAT = 17
FXP_RENAME = 18
FXP_READLINK = 19
FXP_SYMLINK = 20
FXP_STATUS = 101
FXP_HANDLE = 102
FXP_DATA = 103
FXP_NAME = 104
FXP_ATTRS = 105
FXP_EXTENDED = 200
FXP_EXTENDED_REPLY = 201

# Attribute flags
ATTR_SIZE = 0x1
ATTR_UIDGID = 0x2
ATTR_PERMISSIONS = 0x4
ATTR_ACMODTIME = 0x8
ATTR_EXTENDED = 0x80000000

# Open flags
FXF_READ = 0x1
FXF_WRITE = 0x2
FXF_APPEND = 0x4
FXF_CREAT = 0x8
FXF_TRUNC = 0x10
FXF_EXCL = 0x20

# Status codes
FX_OK = 0
FX_EOF = 1
FX_NO_SUCH_FILE = 2
FX_PERMISSION_DENIED = 3
FX_FAILURE = 4
FX_BAD_MESSAGE = 5
FX_NO_CONNECTION = 6
FX_CONNECTION_LOST = 7
FX_OP_UNSUPPORTED = 8

STATUS_NAMES = {
    0: "OK", 1: "EOF", 2: "NO_SUCH_FILE", 3: "PERMISSION_DENIED", 4: "FAILURE",
    5: "BAD_MESSAGE", 6: "NO_CONNECTION", 7: "CONNECTION_LOST", 8: "OP_UNSUPPORTED",
}

MAX_MSG_LENGTH = 256 * 1024
MAX_READ_LENGTH = MAX_MSG_LENGTH - 1024

# Request names as the -P/-p/-Q options know them, with the packet type
# (core requests) or the SSH_FXP_EXTENDED name (extensions).
CORE_REQUESTS = {
    "open": FXP_OPEN, "close": FXP_CLOSE, "read": FXP_READ, "write": FXP_WRITE,
    "lstat": FXP_LSTAT, "fstat": FXP_FSTAT, "setstat": FXP_SETSTAT,
    "fsetstat": FXP_FSETSTAT, "opendir": FXP_OPENDIR, "readdir": FXP_READDIR,
    "remove": FXP_REMOVE, "mkdir": FXP_MKDIR, "rmdir": FXP_RMDIR,
    "realpath": FXP_REALPATH, "stat": FXP_STAT, "rename": FXP_RENAME,
    "readlink": FXP_READLINK, "symlink": FXP_SYMLINK,
}
EXTENSIONS = {
    "posix-rename": ("posix-rename@openssh.com", "1"),
    "statvfs": ("statvfs@openssh.com", "2"),
    "fstatvfs": ("fstatvfs@openssh.com", "2"),
    "hardlink": ("hardlink@openssh.com", "1"),
    "fsync": ("fsync@openssh.com", "1"),
    "lsetstat": ("lsetstat@openssh.com", "1"),
    "limits": ("limits@openssh.com", "1"),
    "expand-path": ("expand-path@openssh.com", "1"),
    "copy-data": ("copy-data", "1"),
    "home-directory": ("home-directory", "1"),
    "users-groups-by-id": ("users-groups-by-id@openssh.com", "1"),
}
EXT_NAME_TO_REQUEST = {v[0]: k for k, v in EXTENSIONS.items()}

# hashi's own extensions (man/PROTOCOL.hashi): -P/-p/-Q name them by their
# extension names. Only our server has them; OpenSSH's never does.
HASHI_EXTENSIONS = [
    "errno@hashi", "stat@hashi", "readdir@hashi", "setstat@hashi", "open@hashi",
    "mknod@hashi", "getxattr@hashi", "setxattr@hashi", "listxattr@hashi",
    "removexattr@hashi", "lock@hashi", "fallocate@hashi", "lseek@hashi",
]
HASHI_MUTATING = {"setstat@hashi", "mknod@hashi", "setxattr@hashi",
                  "removexattr@hashi", "fallocate@hashi"}

TARGET_HANDLE = 0x1
TARGET_NOFOLLOW = 0x2
ID_NONE = 0xFFFFFFFF
HSET_MODE, HSET_UID, HSET_GID, HSET_SIZE = 0x1, 0x2, 0x4, 0x8
HSET_ATIME, HSET_MTIME, HSET_ATIME_NOW, HSET_MTIME_NOW = 0x10, 0x20, 0x40, 0x80
O_NOFOLLOW, O_SYNC, O_DSYNC, O_NOATIME = 0x100, 0x200, 0x400, 0x800
XATTR_CREATE, XATTR_REPLACE = 1, 2
LOCK_GET, LOCK_SET, LOCK_FLOCK, LOCK_CANCEL = 0, 1, 2, 3
LOCK_WAIT = 1
RDLCK, WRLCK, UNLCK = 0, 1, 2
FALLOC_KEEP_SIZE, FALLOC_PUNCH_HOLE, FALLOC_ZERO_RANGE = 0x1, 0x2, 0x10
SEEK_DATA, SEEK_HOLE = 3, 4
HATTRS_FIELDS = ("mask", "mode", "nlink", "uid", "gid", "blksize", "ino", "size",
                 "blocks", "dev_major", "dev_minor", "rdev_major", "rdev_minor",
                 "atime", "atime_nsec", "mtime", "mtime_nsec", "ctime", "ctime_nsec",
                 "btime", "btime_nsec")
HATTRS_V1_LEN = 112

STATVFS_FIELDS = ("bsize", "frsize", "blocks", "bfree", "bavail", "files",
                  "ffree", "favail", "fsid", "flag", "namemax")
LIMITS_FIELDS = ("max_packet_length", "max_read_length", "max_write_length",
                 "max_open_handles")

DEFAULT_TIMEOUT = 10.0


class ProtocolError(Exception):
    """The server sent something we cannot parse, or nothing in time."""


class ServerTimeout(ProtocolError):
    pass


class ServerClosed(ProtocolError):
    """The server closed its output (usually: it exited)."""


# ---------------------------------------------------------------- encoding

def u8(v):
    return struct.pack(">B", v)


def u32(v):
    return struct.pack(">I", v)


def u64(v):
    return struct.pack(">Q", v)


def sstr(s):
    """An SSH string: u32 length then the bytes (str is encoded as UTF-8)."""
    if isinstance(s, str):
        s = s.encode()
    return u32(len(s)) + bytes(s)


class Attrs:
    """SFTP v3 ATTRS. Fields left None are absent from the encoding."""

    def __init__(self, size=None, uid=None, gid=None, perm=None, atime=None,
                 mtime=None, extended=None, flags=None):
        self.size, self.uid, self.gid, self.perm = size, uid, gid, perm
        self.atime, self.mtime = atime, mtime
        self.extended = extended  # list of (type, data) or None
        self._flags = flags

    @property
    def flags(self):
        if self._flags is not None:
            return self._flags
        f = 0
        if self.size is not None:
            f |= ATTR_SIZE
        if self.uid is not None or self.gid is not None:
            f |= ATTR_UIDGID
        if self.perm is not None:
            f |= ATTR_PERMISSIONS
        if self.atime is not None or self.mtime is not None:
            f |= ATTR_ACMODTIME
        if self.extended:
            f |= ATTR_EXTENDED
        return f

    def encode(self):
        f = self.flags
        b = u32(f)
        if f & ATTR_SIZE:
            b += u64(self.size or 0)
        if f & ATTR_UIDGID:
            b += u32(self.uid if self.uid is not None else 0xFFFFFFFF)
            b += u32(self.gid if self.gid is not None else 0xFFFFFFFF)
        if f & ATTR_PERMISSIONS:
            b += u32(self.perm or 0)
        if f & ATTR_ACMODTIME:
            b += u32(self.atime or 0) + u32(self.mtime or 0)
        if f & ATTR_EXTENDED:
            ext = self.extended or []
            b += u32(len(ext))
            for t, d in ext:
                b += sstr(t) + sstr(d)
        return b

    def as_dict(self):
        return {k: getattr(self, k) for k in
                ("size", "uid", "gid", "perm", "atime", "mtime")}

    def __eq__(self, other):
        return isinstance(other, Attrs) and self.as_dict() == other.as_dict() \
            and (self.extended or []) == (other.extended or [])

    def __hash__(self):
        return hash(tuple(sorted(self.as_dict().items())))

    def __repr__(self):
        d = {k: v for k, v in self.as_dict().items() if v is not None}
        if "perm" in d:
            d["perm"] = oct(d["perm"])
        return "Attrs(%s)" % ", ".join("%s=%s" % kv for kv in d.items())


class Reader:
    def __init__(self, data):
        self.data = bytes(data)
        self.pos = 0

    def remaining(self):
        return len(self.data) - self.pos

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ProtocolError("short packet: need %d bytes at %d of %d"
                                % (n, self.pos, len(self.data)))
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def u8(self):
        return self.take(1)[0]

    def u32(self):
        return struct.unpack(">I", self.take(4))[0]

    def u64(self):
        return struct.unpack(">Q", self.take(8))[0]

    def string(self):
        return self.take(self.u32())

    def text(self):
        return self.string().decode("utf-8", "surrogateescape")

    def attrs(self):
        f = self.u32()
        a = Attrs()
        if f & ATTR_SIZE:
            a.size = self.u64()
        if f & ATTR_UIDGID:
            a.uid = self.u32()
            a.gid = self.u32()
        if f & ATTR_PERMISSIONS:
            a.perm = self.u32()
        if f & ATTR_ACMODTIME:
            a.atime = self.u32()
            a.mtime = self.u32()
        if f & ATTR_EXTENDED:
            n = self.u32()
            a.extended = [(self.string(), self.string()) for _ in range(n)]
        a._flags = f
        return a


class Reply:
    """One decoded server packet. Fields by type:
    STATUS: code, msg, lang; HANDLE: handle; DATA: data;
    NAME: names (list of (filename, longname, Attrs)); ATTRS: attrs;
    EXTENDED_REPLY: payload (raw, the caller's helper decodes it)."""

    def __init__(self, ptype, body):
        self.type = ptype
        self.body = body
        self.id = None
        self.code = self.msg = self.lang = None
        self.handle = self.data = self.names = self.attrs = self.payload = None
        self.extra = None  # decoded EXTENDED_REPLY, set by helpers
        self.errno = None
        r = Reader(body)
        if ptype == FXP_VERSION:
            self.version = r.u32()
            self.extensions = {}
            self.extension_list = []
            while r.remaining():
                k, v = r.text(), r.text()
                self.extensions[k] = v
                self.extension_list.append((k, v))
            return
        self.id = r.u32()
        if ptype == FXP_STATUS:
            self.code = r.u32()
            # v3 servers send message and language tag; tolerate absence
            if r.remaining():
                self.msg = r.text()
            if r.remaining():
                self.lang = r.text()
            self.errno = None  # errno@hashi: the server's errno, when on
            if r.remaining() == 4:
                self.errno = r.u32()
        elif ptype == FXP_HANDLE:
            self.handle = r.string()
        elif ptype == FXP_DATA:
            self.data = r.string()
        elif ptype == FXP_NAME:
            n = r.u32()
            self.names = [(r.text(), r.text(), r.attrs()) for _ in range(n)]
        elif ptype == FXP_ATTRS:
            self.attrs = r.attrs()
        elif ptype == FXP_EXTENDED_REPLY:
            self.payload = r.take(r.remaining())
        else:
            raise ProtocolError("unexpected packet type %d" % ptype)
        if ptype != FXP_EXTENDED_REPLY and r.remaining():
            raise ProtocolError("%d trailing bytes in packet type %d"
                                % (r.remaining(), ptype))

    @property
    def status(self):
        """The status code, or None for a non-STATUS reply."""
        return self.code if self.type == FXP_STATUS else None

    @property
    def status_name(self):
        if self.type != FXP_STATUS:
            return "reply type %d" % self.type
        return STATUS_NAMES.get(self.code, str(self.code))

    def ok(self, expected_type=None):
        """Assert success (a non-error reply, or STATUS OK); returns self."""
        if self.type == FXP_STATUS and self.code != FX_OK:
            raise AssertionError("request %s failed: %s (%r)"
                                 % (self.id, self.status_name, self.msg))
        if expected_type is not None and self.type != expected_type:
            raise AssertionError("request %s: expected reply type %d, got %d"
                                 % (self.id, expected_type, self.type))
        return self

    def expect(self, code):
        """Assert a STATUS reply with this code; returns self."""
        assert self.type == FXP_STATUS, \
            "request %s: expected status %s, got reply type %d" % (
                self.id, STATUS_NAMES.get(code, code), self.type)
        assert self.code == code, "request %s: expected status %s, got %s (%r)" % (
            self.id, STATUS_NAMES.get(code, code), self.status_name, self.msg)
        return self

    @property
    def name(self):
        """The single filename of a one-entry NAME reply."""
        assert self.type == FXP_NAME and len(self.names) == 1, self
        return self.names[0][0]

    def summary(self):
        """A comparable, id-free description of the reply."""
        if self.type == FXP_STATUS:
            return ("STATUS", self.code)
        if self.type == FXP_HANDLE:
            return ("HANDLE",)
        if self.type == FXP_DATA:
            return ("DATA", self.data)
        if self.type == FXP_NAME:
            return ("NAME", tuple(n[0] for n in self.names))
        if self.type == FXP_ATTRS:
            return ("ATTRS",)
        return ("EXTENDED_REPLY",)

    def __repr__(self):
        if self.type == FXP_STATUS:
            return "<Reply id=%s STATUS %s %r>" % (self.id, self.status_name, self.msg)
        return "<Reply id=%s type=%d %r>" % (self.id, self.type, self.body[4:64])


def decode_statvfs(payload):
    r = Reader(payload)
    d = {k: r.u64() for k in STATVFS_FIELDS}
    if r.remaining():
        raise ProtocolError("statvfs reply: %d trailing bytes" % r.remaining())
    return d


def decode_limits(payload):
    r = Reader(payload)
    d = {k: r.u64() for k in LIMITS_FIELDS}
    if r.remaining():
        raise ProtocolError("limits reply: %d trailing bytes" % r.remaining())
    return d


def decode_users_groups(payload):
    r = Reader(payload)
    users, groups = Reader(r.string()), Reader(r.string())
    if r.remaining():
        raise ProtocolError("users-groups reply: trailing bytes")
    u, g = [], []
    while users.remaining():
        u.append(users.text())
    while groups.remaining():
        g.append(groups.text())
    return u, g


def decode_hattrs(r):
    """hashi's full attributes (one string) from Reader r, as a dict."""
    b = Reader(r.string())
    if b.remaining() < HATTRS_V1_LEN:
        raise ProtocolError("hattrs: %d bytes" % b.remaining())
    d = {}
    for k in ("mask", "mode", "nlink", "uid", "gid", "blksize"):
        d[k] = b.u32()
    for k in ("ino", "size", "blocks"):
        d[k] = b.u64()
    for k in ("dev_major", "dev_minor", "rdev_major", "rdev_minor"):
        d[k] = b.u32()
    for k in ("atime", "mtime", "ctime", "btime"):
        d[k] = struct.unpack(">q", b.take(8))[0]
        d[k + "_nsec"] = b.u32()
    return d


def hsetattr(mode=None, uid=None, gid=None, size=None, atime=None, mtime=None,
             atime_now=False, mtime_now=False):
    """setstat@hashi's block; times are (sec, nsec) pairs; None is omitted."""
    valid = 0
    if mode is not None:
        valid |= HSET_MODE
    if uid is not None:
        valid |= HSET_UID
    if gid is not None:
        valid |= HSET_GID
    if size is not None:
        valid |= HSET_SIZE
    if atime is not None:
        valid |= HSET_ATIME
    if mtime is not None:
        valid |= HSET_MTIME
    if atime_now:
        valid |= HSET_ATIME_NOW
    if mtime_now:
        valid |= HSET_MTIME_NOW
    at, mt = atime or (0, 0), mtime or (0, 0)
    return (u32(valid) + u32(mode or 0) + u32(uid or 0) + u32(gid or 0) + u64(size or 0)
            + struct.pack(">qI", *at) + struct.pack(">qI", *mt))


# ---------------------------------------------------------------- client

class SFTPWire:
    """A connection to one spawned server process.

    argv: the command (list). cwd: its working directory. init: send INIT
    and read VERSION at once (the VERSION reply is in .version_reply,
    .extensions). stderr goes to a temporary file (see stderr_text()) so a
    chatty server can never block on a full pipe."""

    def __init__(self, argv, cwd=None, env=None, init=True, timeout=DEFAULT_TIMEOUT,
                 version=3, **popen_kw):
        self.argv = list(argv)
        self.timeout = timeout
        self._errf = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._errf,
                                     cwd=cwd, env=env, bufsize=0, **popen_kw)
        self._in = self.proc.stdin.fileno()
        self._out = self.proc.stdout.fileno()
        os.set_blocking(self._in, False)
        self._rbuf = bytearray()
        self._eof = False
        self._next_id = 1
        self._stash = {}
        self.version_reply = None
        self.extensions = None
        if init:
            self.init(version)

    # -- lifecycle

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()

    def shutdown(self):
        """Close our end and reap the process (killing it if it lingers)."""
        if self.proc.poll() is None:
            try:
                self.close_stdin()
                self.proc.wait(self.timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        self._errf.close()

    def close_stdin(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def wait_exit(self, timeout=None):
        """Wait for the process to exit; returns its exit status."""
        return self.proc.wait(self.timeout if timeout is None else timeout)

    def stderr_text(self):
        self._errf.flush()
        self._errf.seek(0)
        return self._errf.read().decode("utf-8", "replace")

    def wait_stderr(self, text, timeout=None):
        """Wait until the server's log (stderr) contains text. stderr goes to
        a file, so this polls it: use it only when the log line is the sole
        sign of the event (e.g. a request that gets no reply)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while text not in self.stderr_text():
            if time.monotonic() > deadline:
                raise ServerTimeout("%r never appeared in the server's log" % text)
            time.sleep(0.01)

    def alive(self):
        return self.proc.poll() is None

    # -- raw I/O

    def _pump(self, timeout):
        """Wait up to timeout for output and append what came to the buffer.
        Returns False at EOF."""
        if self._eof:
            return False
        r, _, _ = select.select([self._out], [], [], timeout)
        if not r:
            return True
        chunk = os.read(self._out, 1 << 20)
        if not chunk:
            self._eof = True
            return False
        self._rbuf += chunk
        return True

    def send_raw(self, data):
        """Write bytes to the server. While the pipe is full, keep draining
        the server's output into our buffer so that neither side can
        deadlock; the replies stay queued for recv()."""
        view = memoryview(bytes(data))
        deadline = time.monotonic() + self.timeout
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServerTimeout("server stopped reading its input")
            rl = [self._out] if not self._eof else []
            r, w, _ = select.select(rl, [self._in], [], left)
            if r:
                self._pump(0)
            if w:
                try:
                    n = os.write(self._in, view)
                except BlockingIOError:
                    continue
                except BrokenPipeError:
                    raise ServerClosed("server closed its input")
                view = view[n:]
                deadline = time.monotonic() + self.timeout

    def send_packet(self, ptype, body=b""):
        """Send one framed packet: u32 length, u8 type, body."""
        self.send_raw(u32(len(body) + 1) + u8(ptype) + bytes(body))

    def new_id(self):
        rid = self._next_id
        self._next_id = (self._next_id + 1) & 0xFFFFFFFF
        return rid

    def send_request(self, ptype, payload=b"", rid=None):
        """Send a request with a fresh id (or rid); returns the id."""
        if rid is None:
            rid = self.new_id()
        self.send_packet(ptype, u32(rid) + bytes(payload))
        return rid

    def send_extended(self, name, payload=b"", rid=None):
        return self.send_request(FXP_EXTENDED, sstr(name) + bytes(payload), rid)

    def recv_packet(self, timeout=None):
        """The next packet as (type, body), waiting at most timeout seconds.
        Raises ServerTimeout, or ServerClosed at EOF."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            if len(self._rbuf) >= 4:
                n = struct.unpack(">I", self._rbuf[:4])[0]
                if n < 1 or n > MAX_MSG_LENGTH + 1024:
                    raise ProtocolError("bad reply length %d" % n)
                if len(self._rbuf) >= 4 + n:
                    pkt = bytes(self._rbuf[4:4 + n])
                    del self._rbuf[:4 + n]
                    return pkt[0], pkt[1:]
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServerTimeout("no reply within %.1fs" % timeout)
            if not self._pump(left):
                if self._rbuf:
                    raise ServerClosed("EOF inside a reply (%d bytes)" % len(self._rbuf))
                raise ServerClosed("server closed its output")

    def recv(self, timeout=None):
        """The next reply (decoded), whatever its id."""
        if self._stash:
            rid = min(self._stash)
            return self._stash.pop(rid)
        t, body = self.recv_packet(timeout)
        return Reply(t, body)

    def reply_to(self, rid, timeout=None):
        """The reply for request rid (other replies are kept for later)."""
        if rid in self._stash:
            return self._stash.pop(rid)
        while True:
            t, body = self.recv_packet(timeout)
            rep = Reply(t, body)
            if rep.id == rid:
                return rep
            if rep.id in self._stash:
                raise ProtocolError("two replies for id %s" % rep.id)
            self._stash[rep.id] = rep

    def no_reply(self, timeout=0.5):
        """True when nothing arrives within timeout (used only to document
        servers that stay silent; never to wait for an event)."""
        try:
            t, body = self.recv_packet(timeout)
        except ServerTimeout:
            return True
        self._stash_reply(Reply(t, body))
        return False

    def _stash_reply(self, rep):
        self._stash[rep.id] = rep

    def read_until_eof(self, timeout=None):
        """All remaining replies until the server closes its output."""
        out = list(self._stash[k] for k in sorted(self._stash))
        self._stash.clear()
        while True:
            try:
                t, body = self.recv_packet(timeout)
            except ServerClosed:
                return out
            out.append(Reply(t, body))

    def call(self, ptype, payload=b"", timeout=None):
        return self.reply_to(self.send_request(ptype, payload), timeout)

    def call_extended(self, name, payload=b"", timeout=None):
        return self.reply_to(self.send_extended(name, payload), timeout)

    # -- session

    def init(self, version=3):
        self.send_packet(FXP_INIT, u32(version))
        t, body = self.recv_packet()
        if t != FXP_VERSION:
            raise ProtocolError("expected VERSION, got type %d" % t)
        self.version_reply = Reply(t, body)
        self.extensions = self.version_reply.extensions
        return self.version_reply

    # -- core requests (each returns a Reply)

    def open(self, path, flags, attrs=None):
        return self.call(FXP_OPEN, sstr(path) + u32(flags) + (attrs or Attrs()).encode())

    def close_handle(self, handle):
        return self.call(FXP_CLOSE, sstr(handle))

    def read(self, handle, offset, length):
        return self.call(FXP_READ, sstr(handle) + u64(offset) + u32(length))

    def write(self, handle, offset, data):
        return self.call(FXP_WRITE, sstr(handle) + u64(offset) + sstr(data))

    def lstat(self, path):
        return self.call(FXP_LSTAT, sstr(path))

    def stat(self, path):
        return self.call(FXP_STAT, sstr(path))

    def fstat(self, handle):
        return self.call(FXP_FSTAT, sstr(handle))

    def setstat(self, path, attrs):
        return self.call(FXP_SETSTAT, sstr(path) + attrs.encode())

    def fsetstat(self, handle, attrs):
        return self.call(FXP_FSETSTAT, sstr(handle) + attrs.encode())

    def opendir(self, path):
        return self.call(FXP_OPENDIR, sstr(path))

    def readdir(self, handle):
        return self.call(FXP_READDIR, sstr(handle))

    def remove(self, path):
        return self.call(FXP_REMOVE, sstr(path))

    def mkdir(self, path, attrs=None):
        return self.call(FXP_MKDIR, sstr(path) + (attrs or Attrs()).encode())

    def rmdir(self, path):
        return self.call(FXP_RMDIR, sstr(path))

    def realpath(self, path):
        return self.call(FXP_REALPATH, sstr(path))

    def rename(self, old, new):
        return self.call(FXP_RENAME, sstr(old) + sstr(new))

    def readlink(self, path):
        return self.call(FXP_READLINK, sstr(path))

    def symlink(self, linkpath, target):
        """SSH_FXP_SYMLINK. OpenSSH (and we, as a drop-in) take the fields in
        the reverse of the draft's order: first the target, then the link
        path. This helper takes them in the natural order and swaps."""
        return self.call(FXP_SYMLINK, sstr(target) + sstr(linkpath))

    # -- composite helpers (assert success)

    def read_file(self, path):
        h = self.open(path, FXF_READ).ok(FXP_HANDLE).handle
        out = b""
        while True:
            r = self.read(h, len(out), 65536)
            if r.type == FXP_STATUS:
                r.expect(FX_EOF)
                break
            out += r.ok(FXP_DATA).data
        self.close_handle(h).ok()
        return out

    def write_file(self, path, data, flags=FXF_WRITE | FXF_CREAT | FXF_TRUNC, perm=None):
        h = self.open(path, flags, Attrs(perm=perm)).ok(FXP_HANDLE).handle
        for off in range(0, len(data), 32768):
            self.write(h, off, data[off:off + 32768]).ok()
        self.close_handle(h).ok()

    def readdir_all(self, handle):
        """Every (filename, longname, Attrs) until EOF."""
        out = []
        while True:
            r = self.readdir(handle)
            if r.type == FXP_STATUS:
                r.expect(FX_EOF)
                return out
            out.extend(r.ok(FXP_NAME).names)

    def listdir(self, path):
        h = self.opendir(path).ok(FXP_HANDLE).handle
        try:
            return self.readdir_all(h)
        finally:
            self.close_handle(h).ok()

    # -- extensions

    def posix_rename(self, old, new):
        return self.call_extended("posix-rename@openssh.com", sstr(old) + sstr(new))

    def statvfs(self, path):
        r = self.call_extended("statvfs@openssh.com", sstr(path))
        if r.type == FXP_EXTENDED_REPLY:
            r.extra = decode_statvfs(r.payload)
        return r

    def fstatvfs(self, handle):
        r = self.call_extended("fstatvfs@openssh.com", sstr(handle))
        if r.type == FXP_EXTENDED_REPLY:
            r.extra = decode_statvfs(r.payload)
        return r

    def hardlink(self, old, new):
        return self.call_extended("hardlink@openssh.com", sstr(old) + sstr(new))

    def fsync(self, handle):
        return self.call_extended("fsync@openssh.com", sstr(handle))

    def lsetstat(self, path, attrs):
        return self.call_extended("lsetstat@openssh.com", sstr(path) + attrs.encode())

    def limits(self):
        r = self.call_extended("limits@openssh.com")
        if r.type == FXP_EXTENDED_REPLY:
            r.extra = decode_limits(r.payload)
        return r

    def expand_path(self, path):
        return self.call_extended("expand-path@openssh.com", sstr(path))

    def copy_data(self, rhandle, roff, rlen, whandle, woff):
        return self.call_extended("copy-data", sstr(rhandle) + u64(roff) + u64(rlen)
                                  + sstr(whandle) + u64(woff))

    def home_directory(self, user):
        return self.call_extended("home-directory", sstr(user))

    def users_groups_by_id(self, uids, gids):
        p = sstr(b"".join(u32(u) for u in uids)) + sstr(b"".join(u32(g) for g in gids))
        r = self.call_extended("users-groups-by-id@openssh.com", p)
        if r.type == FXP_EXTENDED_REPLY:
            r.extra = decode_users_groups(r.payload)
        return r

    # -- hashi's extensions (each returns the Reply, with .extra decoded)

    def _hx(self, name, payload, decode=None):
        r = self.call_extended(name, payload)
        if decode and r.type == FXP_EXTENDED_REPLY:
            rd = Reader(r.payload)
            r.extra = decode(rd)
            if rd.remaining():
                raise ProtocolError("%s reply: %d trailing bytes" % (name, rd.remaining()))
        return r

    def hx_errno(self, on=True):
        return self._hx("errno@hashi", u32(1 if on else 0))

    def hx_stat(self, target, flags=0):
        return self._hx("stat@hashi", sstr(target) + u32(flags), decode_hattrs)

    def hx_readdir(self, handle):
        def dec(r):
            return [(r.text(), decode_hattrs(r)) for _ in range(r.u32())]
        return self._hx("readdir@hashi", sstr(handle), dec)

    def hx_setstat(self, target, flags=0, **attrs):
        return self._hx("setstat@hashi", sstr(target) + u32(flags) + hsetattr(**attrs),
                        decode_hattrs)

    def hx_open(self, path, flags, mode=0o644, uid=ID_NONE, gid=ID_NONE):
        def dec(r):
            return r.string(), decode_hattrs(r)
        return self._hx("open@hashi", sstr(path) + u32(flags) + u32(mode) + u32(uid)
                        + u32(gid), dec)

    def hx_mknod(self, path, mode, major=0, minor=0, uid=ID_NONE, gid=ID_NONE, target=""):
        return self._hx("mknod@hashi", sstr(path) + u32(mode) + u32(major) + u32(minor)
                        + u32(uid) + u32(gid) + sstr(target), decode_hattrs)

    def hx_getxattr(self, target, name, flags=0):
        return self._hx("getxattr@hashi", sstr(target) + u32(flags) + sstr(name),
                        lambda r: r.string())

    def hx_listxattr(self, target, flags=0):
        return self._hx("listxattr@hashi", sstr(target) + u32(flags),
                        lambda r: [n for n in r.string().split(b"\0") if n])

    def hx_setxattr(self, target, name, value, xflags=0, flags=0):
        return self._hx("setxattr@hashi", sstr(target) + u32(flags) + sstr(name)
                        + sstr(value) + u32(xflags))

    def hx_removexattr(self, target, name, flags=0):
        return self._hx("removexattr@hashi", sstr(target) + u32(flags) + sstr(name))

    def hx_lock_send(self, handle, op, ltype=WRLCK, start=0, length=0, flags=0):
        """Send a lock@hashi request without waiting; returns its id."""
        return self.send_extended("lock@hashi", sstr(handle) + u32(op) + u32(flags)
                                  + u32(ltype) + u64(start) + u64(length))

    def hx_lock(self, handle, op, ltype=WRLCK, start=0, length=0, flags=0):
        r = self.reply_to(self.hx_lock_send(handle, op, ltype, start, length, flags))
        if r.type == FXP_EXTENDED_REPLY:
            rd = Reader(r.payload)
            r.extra = {"type": rd.u32(), "start": rd.u64(), "len": rd.u64(), "pid": rd.u32()}
        return r

    def hx_fallocate(self, handle, mode, offset, length):
        return self._hx("fallocate@hashi", sstr(handle) + u32(mode) + u64(offset) + u64(length))

    def hx_lseek(self, handle, offset, whence):
        return self._hx("lseek@hashi", sstr(handle) + u64(offset) + u32(whence),
                        lambda r: r.u64())


def query_requests(binary):
    """The request names `binary -Q requests` prints."""
    out = subprocess.run([binary, "-Q", "requests"], capture_output=True,
                         timeout=DEFAULT_TIMEOUT, check=True)
    return out.stdout.decode().split()


def spawn(server, cwd, *args, **kw):
    """Start server (path) with -e plus args, in directory cwd; INIT done."""
    return SFTPWire([str(server), "-e", *args], cwd=str(cwd), **kw)


def is_openssh(server):
    return os.path.basename(str(server)) == "sftp-server"


def reachable_by_others(path):
    """True when users other than the owner can reach and run path (every
    directory on the way searchable by others)."""
    p = os.path.realpath(str(path))
    if not os.stat(p).st_mode & 0o001:
        return False
    p = os.path.dirname(p)
    while True:
        if not os.stat(p).st_mode & 0o001:
            return False
        if p == "/":
            return True
        p = os.path.dirname(p)
