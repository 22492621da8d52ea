#!/usr/bin/python3
"""A hostile SFTP v3 server, for testing hashi against servers that lie.

It speaks plain SFTP on TCP (hashi reaches it with -o directport=PORT, no
SSH) and serves a real directory read-only, as "/" (the first component of
every path is the directory's own top). That is enough for hashi to mount it
and list, stat, read and readlink. One scenario at a time misbehaves, and
only on requests for a path whose last component starts with "evil" (or a
handle opened on one), so the mount itself goes through; the scenarios named
version_* misbehave in the VERSION packet at once.

    server = HostileServer(directory, "unknown_type")
    ... hashi 127.0.0.1:/ MNT -o directport=%d % server.port ...
    server.fired.wait(...)     # the hostile reply was sent
    server.close()

Standalone:  hostile_server.py DIR SCENARIO   (prints the port, serves until
killed).  `hostile_server.py --list` names the scenarios.
"""

import errno
import os
import posixpath
import socket
import stat
import struct
import sys
import threading
import time

# packet types
INIT, VERSION, OPEN, CLOSE, READ, WRITE, LSTAT, FSTAT = 1, 2, 3, 4, 5, 6, 7, 8
SETSTAT, FSETSTAT, OPENDIR, READDIR, REALPATH, STAT, READLINK = 9, 10, 11, 12, 16, 17, 19
STATUS, HANDLE, DATA, NAME, ATTRS = 101, 102, 103, 104, 105
# status codes
OK, EOF, NO_SUCH_FILE, PERMISSION_DENIED, FAILURE, OP_UNSUPPORTED = 0, 1, 2, 3, 4, 8

ATTR_ALL = 0x1 | 0x2 | 0x4 | 0x8
ATTR_EXTENDED = 0x80000000

SCENARIOS = {
    # framing: the reply's length or type is wrong
    "len_4g": "a packet length prefix of 4 GiB",
    "len_200m_trickle": "a packet length of 200 MiB, then a byte every 50 ms",
    "trickle": "a (permissible) 100 KiB packet whose bytes come one every 50 ms",
    "long_packet": "a packet length 100 bytes longer than the data sent, then silence",
    "short_id": "a packet of one byte: a type and no id",
    "unknown_type": "a reply of type 200",
    "unsolicited": "the reply carries an id that was never sent",
    "duplicate": "the right reply, sent twice",
    "wrong_type": "a DATA reply to a STAT",
    # the reply's fields do not fit its packet
    "short_attrs": "ATTRS whose flags promise fields the packet lacks",
    "attrs_ext_huge": "ATTRS with an extended count of 2^32-1",
    "status_short": "a STATUS with no status code",
    "name_huge_count": "a NAME (READDIR) with a count of 2^32-1 and one entry",
    "handle_4g": "a HANDLE whose length is 4 GiB",
    "handle_long": "a HANDLE of 300 bytes (the limit is 256)",
    "data_short": "a DATA whose length runs past the packet",
    "read_too_much": "a DATA with 4 KiB more than the READ asked for",
    # what the fields say
    "readdir_names": "READDIR names with '/', '..', '.', NUL, empty, 300 bytes",
    "readdir_forever": "a READDIR that never ends: always new names",
    "symlink_weird": "READLINK targets with a NUL, empty, or 5000 bytes long",
    "silent": "from the first 'evil' request on, no reply to anything",
    # VERSION
    "version_huge_ext": "a VERSION with 6,000 extensions (200 KiB)",
    "version_too_big": "a VERSION of 4 MiB",
    "version_malformed": "a VERSION whose extension name runs past the packet",
    "version_never": "no VERSION: INIT is never answered",
    "init_silent": "an unsolicited reply to an 'evil' request on the first connection; "
                   "on every later one, INIT is never answered",
    # handles given by another rule than OpenSSH's (the slot freed last); the
    # directory is writable (OPEN to write or create, WRITE, FSETSTAT)
    "handles_lowest": "writable; a handle is the lowest free slot (older OpenSSH)",
    "handles_fresh": "writable; a handle is never given twice (a counter from 0)",
}
WRITABLE = ("handles_lowest", "handles_fresh")


def u32(v):
    return struct.pack(">I", v)


def u64(v):
    return struct.pack(">Q", v)


def sstr(b):
    if isinstance(b, str):
        b = b.encode()
    return u32(len(b)) + b


def attrs_of(st):
    return (u32(ATTR_ALL) + u64(st.st_size) + u32(st.st_uid) + u32(st.st_gid)
            + u32(st.st_mode) + u32(int(st.st_atime)) + u32(int(st.st_mtime)))


def packet(ptype, body):
    return u32(len(body) + 1) + bytes([ptype]) + body


def status_body(rid, code, msg=""):
    return u32(rid) + u32(code) + sstr(msg) + sstr("")


def errno_status(e):
    return {errno.ENOENT: NO_SUCH_FILE, errno.EACCES: PERMISSION_DENIED,
            errno.EPERM: PERMISSION_DENIED}.get(e.errno, FAILURE)


class Reader:
    def __init__(self, data):
        self.d, self.p = data, 0

    def u8(self):
        self.p += 1
        return self.d[self.p - 1]

    def u32(self):
        self.p += 4
        return struct.unpack(">I", self.d[self.p - 4:self.p])[0]

    def u64(self):
        self.p += 8
        return struct.unpack(">Q", self.d[self.p - 8:self.p])[0]

    def string(self):
        n = self.u32()
        self.p += n
        return self.d[self.p - n:self.p]


class Conn:
    """One client connection: handles, and the scenario's state."""

    def __init__(self, server, sock, index):
        self.srv, self.sock, self.index = server, sock, index
        self.handles = {}
        self.next_handle = 1
        self.silent = False
        self.forever = 0

    # -- helpers -----------------------------------------------------------

    def hostile(self):
        """Whether this connection misbehaves (once=True: only the first)."""
        return not self.srv.once or self.index == 0

    def evil(self, path):
        return self.hostile() and posixpath.basename(path).startswith("evil")

    def local(self, path):
        path = posixpath.normpath("/" + path.decode(errors="surrogateescape"))
        return os.path.join(self.srv.root, path.lstrip("/")), path

    def send(self, data):
        self.sock.sendall(data)

    def reply(self, ptype, body):
        self.send(packet(ptype, body))

    def fire(self, what):
        self.srv.fired_log.append(what)
        self.srv.fired.set()

    def trickle(self, data, delay=0.05):
        for i in range(len(data)):
            if self.srv.closing.is_set():
                return
            self.send(data[i:i + 1])
            time.sleep(delay)

    # -- the loop ----------------------------------------------------------

    def run(self):
        buf = b""
        try:
            while True:
                while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
                    chunk = self.sock.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                n = struct.unpack(">I", buf[:4])[0]
                pkt, buf = buf[4:4 + n], buf[4 + n:]
                if self.silent:
                    continue
                self.request(pkt)
        except (OSError, IndexError, struct.error):
            return
        finally:
            self.sock.close()

    def request(self, pkt):
        r = Reader(pkt)
        t = r.u8()
        if t == INIT:
            return self.version()
        rid = r.u32()
        h = {OPEN: self.open, CLOSE: self.close, READ: self.read, LSTAT: self.lstat,
             STAT: self.stat, FSTAT: self.fstat, OPENDIR: self.opendir,
             READDIR: self.readdir, REALPATH: self.realpath,
             READLINK: self.readlink}.get(t)
        if self.srv.scenario in WRITABLE:
            h = {WRITE: self.write, FSETSTAT: self.fsetstat}.get(t, h)
        if h is None:
            return self.reply(STATUS, status_body(rid, OP_UNSUPPORTED, "unsupported"))
        h(rid, r)

    def version(self):
        sc = self.srv.scenario
        if sc == "version_never" or (sc == "init_silent" and self.index > 0):
            self.fire(sc)
            return
        body = u32(3)
        if sc == "version_huge_ext":
            self.fire(sc)
            for i in range(6000):
                body += sstr(f"x{i:05d}@hostile.example") + sstr("1")
        elif sc == "version_too_big":
            self.fire(sc)
            body += sstr("big@hostile.example") + sstr(b"B" * (4 << 20))
        elif sc == "version_malformed":
            self.fire(sc)
            body += u32(1000) + b"short"
        self.reply(VERSION, body)

    # -- the generic misbehaviours, in place of a good reply ------------

    def misbehave(self, rid, ptype, body):
        """Send the good reply (ptype, body), or what the scenario says
        instead. Returns True when the scenario acted."""
        sc = self.srv.scenario
        good = packet(ptype, body)
        if sc == "len_4g":
            self.send(u32(0xFFFFFFFF) + bytes([ptype]) + u32(rid) + b"\0" * 64)
        elif sc == "len_200m_trickle":
            self.fire(sc)
            self.send(u32(200 << 20) + bytes([ptype]) + u32(rid))
            self.trickle(b"\0" * 100000)
            return True
        elif sc == "trickle":
            self.fire(sc)
            self.send(u32(100 << 10) + bytes([ptype]) + u32(rid))
            self.trickle(b"\0" * 100000)
            return True
        elif sc == "long_packet":
            self.send(u32(len(body) + 1 + 100) + bytes([ptype]) + body)
        elif sc == "short_id":
            self.send(u32(1) + bytes([ptype]))
        elif sc == "unknown_type":
            self.send(packet(200, u32(rid) + b"what is this"))
        elif sc in ("unsolicited", "init_silent"):
            self.send(packet(ptype, u32(rid + 1000) + body[4:]))
        elif sc == "duplicate":
            self.send(good + good)
        elif sc == "status_short":
            self.send(packet(STATUS, u32(rid)))
        else:
            return False
        self.fire(sc)
        return True

    # -- requests ------------------------------------------------------------

    def path_attrs(self, rid, path, follow):
        lp, vp = self.local(path)
        try:
            st = os.stat(lp) if follow else os.lstat(lp)
        except OSError as e:
            return self.reply(STATUS, status_body(rid, errno_status(e), e.strerror))
        sc = self.srv.scenario
        if self.evil(vp):
            if sc == "silent":
                self.fire(sc)
                self.silent = True
                return
            if sc == "short_attrs":
                self.fire(sc)
                return self.reply(ATTRS, u32(rid) + u32(ATTR_ALL) + u64(st.st_size))
            if sc == "attrs_ext_huge":
                self.fire(sc)
                return self.reply(ATTRS, u32(rid) + u32(ATTR_EXTENDED) + u32(0xFFFFFFFF)
                                  + sstr("a") + sstr("b"))
            if sc == "wrong_type":
                self.fire(sc)
                return self.reply(DATA, u32(rid) + sstr("not attributes"))
            if self.misbehave(rid, ATTRS, u32(rid) + attrs_of(st)):
                return
        self.reply(ATTRS, u32(rid) + attrs_of(st))

    def lstat(self, rid, r):
        self.path_attrs(rid, r.string(), False)

    def stat(self, rid, r):
        self.path_attrs(rid, r.string(), True)

    def fstat(self, rid, r):
        h = self.handles.get(r.string())
        if h is None:
            return self.reply(STATUS, status_body(rid, FAILURE, "bad handle"))
        self.reply(ATTRS, u32(rid) + attrs_of(os.stat(h["local"])))

    def realpath(self, rid, r):
        _, vp = self.local(r.string())
        self.reply(NAME, u32(rid) + u32(1) + sstr(vp) + sstr(vp) + u32(0))

    def new_handle(self, rid, lp, vp, kind, fd=None):
        if self.srv.scenario == "handles_lowest":
            n = 0
            while u32(n) in self.handles:
                n += 1
            hid = u32(n)
        elif self.srv.scenario == "handles_fresh":
            hid = u32(self.next_handle - 1)
            self.next_handle += 1
        else:
            hid = u32(self.next_handle)
            self.next_handle += 1
        self.handles[hid] = {"local": lp, "path": vp, "kind": kind, "pos": 0, "fd": fd}
        sc = self.srv.scenario
        if self.evil(vp):
            if sc == "handle_4g":
                self.fire(sc)
                self.reply(HANDLE, u32(rid) + u32(0xFFFFFFFF) + hid)
                return hid
            if sc == "handle_long":
                self.fire(sc)
                self.reply(HANDLE, u32(rid) + sstr(hid + b"H" * 296))
                return hid
        self.reply(HANDLE, u32(rid) + sstr(hid))
        return hid

    def opendir(self, rid, r):
        lp, vp = self.local(r.string())
        try:
            names = sorted(os.listdir(lp))
        except OSError as e:
            return self.reply(STATUS, status_body(rid, errno_status(e), e.strerror))
        hid = self.new_handle(rid, lp, vp, "dir")
        self.handles[hid]["names"] = [".", ".."] + names

    def open(self, rid, r):
        lp, vp = self.local(r.string())
        pflags = r.u32()
        if self.srv.scenario in WRITABLE and pflags & 0x2:
            return self.open_write(rid, r, lp, vp, pflags)
        if pflags & ~0x1:
            return self.reply(STATUS, status_body(rid, PERMISSION_DENIED, "read-only"))
        if not os.path.isfile(lp):
            return self.reply(STATUS, status_body(rid, NO_SUCH_FILE, "no such file"))
        self.new_handle(rid, lp, vp, "file")

    def open_write(self, rid, r, lp, vp, pflags):
        flags, perm = os.O_WRONLY, 0o644
        for bit, f in ((0x4, os.O_APPEND), (0x8, os.O_CREAT), (0x10, os.O_TRUNC), (0x20, os.O_EXCL)):
            if pflags & bit:
                flags |= f
        if r.u32() & 0x4:  # attrs: PERMISSIONS (after SIZE, UIDGID when present)
            perm = r.u32() & 0o7777
        try:
            fd = os.open(lp, flags, perm)
        except OSError as e:
            return self.reply(STATUS, status_body(rid, errno_status(e), e.strerror))
        self.new_handle(rid, lp, vp, "file", fd)

    def write(self, rid, r):
        h = self.handles.get(r.string())
        off, data = r.u64(), r.string()
        if h is None or h.get("fd") is None:
            return self.reply(STATUS, status_body(rid, FAILURE, "bad handle"))
        os.pwrite(h["fd"], data, off)
        self.reply(STATUS, status_body(rid, OK, "ok"))

    def fsetstat(self, rid, r):
        h = self.handles.get(r.string())
        if h is None:
            return self.reply(STATUS, status_body(rid, FAILURE, "bad handle"))
        flags = r.u32()
        try:
            if flags & 0x1:
                os.ftruncate(h["fd"], r.u64())
            if flags & 0x2:
                os.fchown(h["fd"], r.u32(), r.u32())
            if flags & 0x4:
                os.fchmod(h["fd"], r.u32() & 0o7777)
            if flags & 0x8:
                at, mt = r.u32(), r.u32()
                os.utime(h["fd"], (at, mt))
        except OSError as e:
            return self.reply(STATUS, status_body(rid, errno_status(e), e.strerror))
        self.reply(STATUS, status_body(rid, OK, "ok"))

    def close(self, rid, r):
        h = self.handles.pop(r.string(), None)
        if h is not None and h.get("fd") is not None:
            os.close(h["fd"])
        self.reply(STATUS, status_body(rid, OK if h is not None else FAILURE, "ok"))

    def entry(self, name, st):
        return sstr(name) + sstr(name) + attrs_of(st)

    def readdir(self, rid, r):
        h = self.handles.get(r.string())
        if h is None or h["kind"] != "dir":
            return self.reply(STATUS, status_body(rid, FAILURE, "bad handle"))
        sc = self.srv.scenario
        if self.evil(h["path"]):
            st = os.lstat(h["local"])
            if sc == "name_huge_count":
                self.fire(sc)
                return self.reply(NAME, u32(rid) + u32(0xFFFFFFFF) + self.entry("one", st))
            if sc == "readdir_names" and not h.get("done"):
                self.fire(sc)
                h["done"] = True
                names = [b"good", b".", b"..", b"a/b", b"/abs", b"../../escape", b"",
                         b"x\0y", b"L" * 300, b"..", b"also-good"]
                return self.reply(NAME, u32(rid) + u32(len(names))
                                  + b"".join(self.entry(n, st) for n in names))
            if sc == "readdir_forever":
                self.fire(sc)
                names = []
                for _ in range(500):
                    self.forever += 1
                    names.append(b"f%09d-" % self.forever + b"n" * 180)
                return self.reply(NAME, u32(rid) + u32(len(names))
                                  + b"".join(self.entry(n, st) for n in names))
            if sc not in ("readdir_names",) and self.misbehave(rid, NAME, u32(rid) + u32(0)):
                return
        names = h["names"][h["pos"]:h["pos"] + 50]
        h["pos"] += len(names)
        if not names:
            return self.reply(STATUS, status_body(rid, EOF, "eof"))
        out = []
        for n in names:
            try:
                st = os.lstat(os.path.join(h["local"], n))
            except OSError:
                continue
            out.append(self.entry(n, st))
        self.reply(NAME, u32(rid) + u32(len(out)) + b"".join(out))

    def read(self, rid, r):
        h = self.handles.get(r.string())
        off, length = r.u64(), r.u32()
        if h is None or h["kind"] != "file":
            return self.reply(STATUS, status_body(rid, FAILURE, "bad handle"))
        with open(h["local"], "rb") as f:
            f.seek(off)
            data = f.read(length)
        sc = self.srv.scenario
        if self.evil(h["path"]):
            if sc == "read_too_much":
                self.fire(sc)
                return self.reply(DATA, u32(rid) + sstr(data + b"X" * (length - len(data) + 4096)))
            if sc == "data_short":
                self.fire(sc)
                return self.reply(DATA, u32(rid) + u32(len(data) + 1000) + data)
            if data and self.misbehave(rid, DATA, u32(rid) + sstr(data)):
                return
        if not data:
            return self.reply(STATUS, status_body(rid, EOF, "eof"))
        self.reply(DATA, u32(rid) + sstr(data))

    def readlink(self, rid, r):
        lp, vp = self.local(r.string())
        if self.evil(vp) and self.srv.scenario == "symlink_weird":
            self.fire("symlink_weird")
            name = posixpath.basename(vp)
            target = {"evil-nul": b"/etc\0passwd", "evil-empty": b"",
                      "evil-long": b"d/" * 2500}.get(name, b"x")
            return self.reply(NAME, u32(rid) + u32(1) + sstr(target) + sstr(target) + u32(0))
        try:
            target = os.readlink(lp)
        except OSError as e:
            return self.reply(STATUS, status_body(rid, errno_status(e), e.strerror))
        self.reply(NAME, u32(rid) + u32(1) + sstr(target) + sstr(target) + u32(0))


class HostileServer:
    def __init__(self, root, scenario, once=False):
        if scenario not in SCENARIOS and scenario != "none":
            raise ValueError(f"unknown scenario {scenario}")
        self.root = os.path.abspath(root)
        self.scenario = scenario
        self.once = once
        self.fired = threading.Event()
        self.fired_log = []
        self.closing = threading.Event()
        self.connections = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.closing.is_set():
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            c = Conn(self, s, self.connections)
            self.connections += 1
            self.conns.append(c)
            threading.Thread(target=c.run, daemon=True).start()

    def close(self):
        self.closing.set()
        self.sock.close()
        for c in self.conns:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "--list":
        for k, v in SCENARIOS.items():
            print(f"{k:18} {v}")
        return 0
    if len(sys.argv) != 3:
        print("usage: hostile_server.py DIR SCENARIO | --list", file=sys.stderr)
        return 2
    srv = HostileServer(sys.argv[1], sys.argv[2])
    print(srv.port, flush=True)
    try:
        srv.thread.join()
    except KeyboardInterrupt:
        srv.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
