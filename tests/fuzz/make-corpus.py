#!/usr/bin/python3
"""Write the seed corpora of the fuzz targets: tests/fuzz/corpus/<target>/.

    /usr/bin/python3 tests/fuzz/make-corpus.py [--out DIR]

Small hand-made inputs, valid and slightly broken: for fuzz-server one file
per core request and per extension (plus sessions, framing errors and the
playground's special files), for fuzz-attrs ATTRS encodings, for fuzz-wire
little reader/writer programs. The outputs are committed; re-running this
rewrites them (removing files it no longer makes) and is deterministic.

fuzz-server inputs are a header byte and then the client's packets (see
fuzz-server.c). The server sends INIT itself unless the header is 0xff, and
its handles are 8 bytes, index then generation: the first handle of a session
is H(0, 1), the second (the first still open) H(1, 2); opened after closing
the first instead, it is H(0, 2). Paths name fuzz-jail.c's playground: /file, /big, /sparse, /dir/...
"""
import argparse
import os
import shutil
import struct
import sys

# Packet types
INIT, OPEN, CLOSE, READ, WRITE, LSTAT, FSTAT, SETSTAT, FSETSTAT, OPENDIR, READDIR, \
    REMOVE, MKDIR, RMDIR, REALPATH, STAT, RENAME, READLINK, SYMLINK = \
    1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20
EXTENDED = 200

# Open flags
F_READ, F_WRITE, F_APPEND, F_CREAT, F_TRUNC, F_EXCL = 1, 2, 4, 8, 0x10, 0x20

# Attribute flags
A_SIZE, A_UIDGID, A_PERM, A_TIME, A_EXT = 1, 2, 4, 8, 0x80000000

# Header bytes (fuzz-server.c)
WHOLE, SMALL_PIECES, PIECES, BYTEWISE = 0x00, 0x01, 0x02, 0x03
READONLY, DENYLIST, ALLOWLIST = 5 << 2, 6 << 2, 7 << 2
RAW = 0xFF


def u8(v):
    return struct.pack(">B", v)


def u32(v):
    return struct.pack(">I", v & 0xFFFFFFFF)


def u64(v):
    return struct.pack(">Q", v & 0xFFFFFFFFFFFFFFFF)


def s(v):
    if isinstance(v, str):
        v = v.encode()
    return u32(len(v)) + v


def attrs(flags=0, size=0, uid=0, gid=0, perm=0, atime=0, mtime=0, ext=()):
    out = u32(flags)
    if flags & A_SIZE:
        out += u64(size)
    if flags & A_UIDGID:
        out += u32(uid) + u32(gid)
    if flags & A_PERM:
        out += u32(perm)
    if flags & A_TIME:
        out += u32(atime) + u32(mtime)
    if flags & A_EXT:
        out += u32(len(ext))
        for k, v in ext:
            out += s(k) + s(v)
    return out


def H(index, gen):
    """A handle string."""
    return s(u32(index) + u32(gen))


H1, H2 = H(0, 1), H(1, 2)


def pkt(type_, body):
    return u32(1 + len(body)) + u8(type_) + body


def req(type_, rid, body=b""):
    return pkt(type_, u32(rid) + body)


def ext(rid, name, body=b""):
    return req(EXTENDED, rid, s(name) + body)


def short(packet, cut=1):
    """The same request with its last `cut` bytes gone (length adjusted)."""
    body = packet[4:-cut]
    return u32(len(body)) + body


def open_(rid, path, flags=F_READ, a=b"\0\0\0\0"):
    return req(OPEN, rid, s(path) + u32(flags) + a)


def read(rid, h, off, length):
    return req(READ, rid, h + u64(off) + u32(length))


def write(rid, h, off, data):
    return req(WRITE, rid, h + u64(off) + s(data))


def close(rid, h):
    return req(CLOSE, rid, h)


def path_req(type_, rid, path):
    return req(type_, rid, s(path))


def two_paths(type_, rid, a, b):
    return req(type_, rid, s(a) + s(b))


def server_corpus():
    c = {}

    def add(name, packets, header=WHOLE):
        c[name] = u8(header) + b"".join(packets)

    # --- core requests, valid -----------------------------------------
    add("open-read", [open_(1, "/file"), read(2, H1, 0, 100), close(3, H1)])
    add("open-create", [open_(1, "/new", F_WRITE | F_CREAT | F_TRUNC, attrs(A_PERM, perm=0o640)),
                        write(2, H1, 0, b"new data\n"), close(3, H1), path_req(STAT, 4, "/new")])
    add("open-excl-exists", [open_(1, "/file", F_WRITE | F_CREAT | F_EXCL)])
    add("open-append", [open_(1, "/file", F_WRITE | F_APPEND), write(2, H1, 0, b"tail\n"),
                        write(3, H1, 0, b"more\n"), close(4, H1)])
    add("open-rdwr", [open_(1, "/dir/a", F_READ | F_WRITE), write(2, H1, 1, b"xyz"),
                      read(3, H1, 0, 10), close(4, H1)])
    add("close", [open_(1, "/file"), close(2, H1), close(3, H1)])
    add("read", [open_(1, "/big"), read(2, H1, 0, 32768), read(3, H1, 65536, 32768),
                 read(4, H1, 1 << 40, 10), read(5, H1, 0, 0), read(6, H1, 0, 0xFFFFFFFF),
                 close(7, H1)])
    add("read-sparse", [open_(1, "/sparse"), read(2, H1, 0, 300000), read(3, H1, (1 << 30) - 5, 100),
                        close(4, H1)])
    add("write", [open_(1, "/dir/b", F_WRITE), write(2, H1, 0, b"0123456789" * 20),
                  write(3, H1, 1 << 20, b"far"), write(4, H1, 0, b""), close(5, H1)])
    add("lstat", [path_req(LSTAT, 1, "/link"), path_req(LSTAT, 2, "/dangling")])
    add("fstat", [open_(1, "/file"), req(FSTAT, 2, H1), close(3, H1)])
    add("setstat", [req(SETSTAT, 1, s("/file") + attrs(A_SIZE | A_PERM | A_TIME | A_UIDGID, size=5,
                                                         perm=0o600, atime=1, mtime=2, uid=1000,
                                                         gid=1000))])
    add("fsetstat", [open_(1, "/file", F_WRITE),
                     req(FSETSTAT, 2, H1 + attrs(A_SIZE | A_PERM | A_TIME, size=3, perm=0o644,
                                                 atime=100, mtime=200)),
                     req(FSTAT, 3, H1), close(4, H1)])
    add("opendir-readdir", [path_req(OPENDIR, 1, "/dir"), req(READDIR, 2, H1), req(READDIR, 3, H1),
                            req(READDIR, 4, H1), close(5, H1)])
    add("readdir-root", [path_req(OPENDIR, 1, "/"), req(READDIR, 2, H1), req(READDIR, 3, H1),
                         close(4, H1)])
    add("remove", [path_req(REMOVE, 1, "/file"), path_req(REMOVE, 2, "/file"),
                   path_req(REMOVE, 3, "/dir")])
    add("mkdir", [req(MKDIR, 1, s("/newdir") + attrs(A_PERM, perm=0o700)),
                  req(MKDIR, 2, s("/newdir") + attrs()), path_req(STAT, 3, "/newdir")])
    add("rmdir", [path_req(RMDIR, 1, "/emptydir"), path_req(RMDIR, 2, "/dir")])
    add("realpath", [path_req(REALPATH, 1, "."), path_req(REALPATH, 2, ""),
                     path_req(REALPATH, 3, "/dir/../link"), path_req(REALPATH, 4, "/missing"),
                     path_req(REALPATH, 5, "/missing/more"), path_req(REALPATH, 6, "/loop")])
    add("stat", [path_req(STAT, 1, "/dirlink"), path_req(STAT, 2, "/noperm"),
                 path_req(STAT, 3, "/fifo")])
    add("rename", [two_paths(RENAME, 1, "/file", "/renamed"), two_paths(RENAME, 2, "/renamed", "/ro"),
                   two_paths(RENAME, 3, "/dir", "/dir/sub/x")])
    add("readlink", [path_req(READLINK, 1, "/link"), path_req(READLINK, 2, "/file"),
                     path_req(READLINK, 3, "/uplink")])
    add("symlink", [two_paths(SYMLINK, 1, "/file", "/sym"), path_req(READLINK, 2, "/sym"),
                    two_paths(SYMLINK, 3, "x", "/sym")])

    # --- extensions, valid --------------------------------------------
    add("ext-posix-rename", [ext(1, "posix-rename@openssh.com", s("/file") + s("/ro"))])
    add("ext-statvfs", [ext(1, "statvfs@openssh.com", s("/")), ext(2, "statvfs@openssh.com", s("/nope"))])
    add("ext-fstatvfs", [path_req(OPENDIR, 1, "/dir"), ext(2, "fstatvfs@openssh.com", H1), close(3, H1)])
    add("ext-hardlink", [ext(1, "hardlink@openssh.com", s("/file") + s("/hl")),
                         ext(2, "hardlink@openssh.com", s("/file") + s("/hl"))])
    add("ext-fsync", [open_(1, "/file", F_WRITE), ext(2, "fsync@openssh.com", H1), close(3, H1)])
    add("ext-lsetstat", [ext(1, "lsetstat@openssh.com", s("/link") + attrs(A_TIME | A_UIDGID, atime=5,
                                                                            mtime=6))])
    add("ext-limits", [ext(1, "limits@openssh.com")])
    add("ext-expand-path", [ext(1, "expand-path@openssh.com", s("~")),
                            ext(2, "expand-path@openssh.com", s("~/dir/../file")),
                            ext(3, "expand-path@openssh.com", s("~fuzz/notes")),
                            ext(4, "expand-path@openssh.com", s("~nobody")),
                            ext(5, "expand-path@openssh.com", s("dir/sub"))])
    add("ext-copy-data", [open_(1, "/big"), open_(2, "/copy", F_WRITE | F_CREAT),
                          ext(3, "copy-data", H1 + u64(0) + u64(0) + H2 + u64(0)),
                          ext(4, "copy-data", H1 + u64(100) + u64(1 << 20) + H2 + u64(7)),
                          close(5, H1), close(6, H2)])
    add("ext-copy-data-same", [open_(1, "/file", F_READ | F_WRITE), open_(2, "/hardlink", F_WRITE),
                               ext(3, "copy-data", H1 + u64(0) + u64(10) + H2 + u64(0)),
                               ext(4, "copy-data", H1 + u64(0) + u64(10) + H1 + u64(0))])
    add("ext-home-directory", [ext(1, "home-directory", s("")), ext(2, "home-directory", s("fuzz")),
                               ext(3, "home-directory", s("nobody"))])
    add("ext-users-groups-by-id", [ext(1, "users-groups-by-id@openssh.com",
                                       s(u32(0) + u32(1000) + u32(5)) + s(u32(0) + u32(1000)))])

    # --- broken requests ----------------------------------------------
    for name, packet in [
            ("open", open_(1, "/file")), ("read", read(1, H1, 0, 10)), ("write", write(1, H1, 0, b"x")),
            ("setstat", req(SETSTAT, 1, s("/file") + attrs(A_PERM, perm=0o644))),
            ("mkdir", req(MKDIR, 1, s("/d") + attrs())), ("rename", two_paths(RENAME, 1, "/a", "/b")),
            ("symlink", two_paths(SYMLINK, 1, "/a", "/b")), ("readdir", req(READDIR, 1, H1)),
            ("stat", path_req(STAT, 1, "/file")),
            ("ext-copy-data", ext(1, "copy-data", H1 + u64(0) + u64(0) + H2 + u64(0))),
            ("ext-lsetstat", ext(1, "lsetstat@openssh.com", s("/link") + attrs(A_PERM, perm=0o644))),
            ("ext-users-groups", ext(1, "users-groups-by-id@openssh.com", s(u32(0)) + s(u32(0)))),
    ]:
        add("short-" + name, [open_(9, "/file"), short(packet), path_req(STAT, 2, "/")])
    add("string-past-end", [req(STAT, 1, u32(1000) + b"/file"), path_req(STAT, 2, "/")])
    add("nul-in-path", [path_req(STAT, 1, "/fi\0le"), path_req(STAT, 2, "/")])
    add("stale-handle", [open_(1, "/file"), close(2, H1), read(3, H1, 0, 10), open_(4, "/file"),
                         read(5, H1, 0, 10), read(6, H(0, 2), 0, 10)])
    add("wrong-handle-kind", [path_req(OPENDIR, 1, "/dir"), read(2, H1, 0, 10), open_(3, "/file"),
                              req(READDIR, 4, H2), req(FSTAT, 5, H1)])
    add("bad-handle", [read(1, s(b"\0\0\0\0"), 0, 1), read(2, H(0xFFFFFFFF, 1), 0, 1),
                       read(3, s(b"x" * 300), 0, 1)])
    add("attrs-extended", [req(SETSTAT, 1, s("/file") + attrs(A_PERM | A_EXT, perm=0o644,
                                                                ext=[("a@b", "c"), ("d", "")]))])
    add("attrs-too-many-ext", [req(SETSTAT, 1, s("/file") + u32(A_EXT) + u32(100000)),
                               path_req(STAT, 2, "/")])
    add("lsetstat-size", [ext(1, "lsetstat@openssh.com", s("/link") + attrs(A_SIZE, size=1))])
    # (inputs stay under 4 KiB: libFuzzer's -max_len is the largest seed)
    add("users-groups-odd", [ext(1, "users-groups-by-id@openssh.com", s(b"\0\0\0") + s(b"")),
                             ext(2, "users-groups-by-id@openssh.com", s(b"\0" * 4 * 700) + s(b""))])
    add("unknown-type", [req(99, 1, b"whatever"), req(2, 2), path_req(STAT, 3, "/")])
    add("unknown-extension", [ext(1, "no-such@example.com", b"args"), ext(2, ""), path_req(STAT, 3, "/")])
    add("ext-no-name", [req(EXTENDED, 1, b"\0\0"), path_req(STAT, 2, "/")])
    add("init-twice", [pkt(INIT, u32(3)), pkt(INIT, u32(2)), path_req(STAT, 1, "/nope"),
                       pkt(INIT, b"")])
    add("version-2", [pkt(INIT, u32(2)), path_req(STAT, 1, "/nope")])
    add("huge-read-len", [open_(1, "/sparse"), read(2, H1, 0, 0x7FFFFFFF), read(3, H1, 1 << 63, 1)])
    add("huge-offsets", [open_(1, "/file", F_READ | F_WRITE), write(2, H1, (1 << 63) - 2, b"x"),
                         write(3, H1, 1 << 63, b"x"),
                         req(FSETSTAT, 4, H1 + attrs(A_SIZE, size=1 << 63))])
    # session-ending framing
    add("end-zero-length", [path_req(STAT, 1, "/"), u32(0), path_req(STAT, 2, "/")])
    add("end-no-id", [path_req(STAT, 1, "/"), pkt(STAT, b"\0\0"), path_req(STAT, 2, "/")])
    add("end-too-long", [path_req(STAT, 1, "/"), u32(256 * 1024 + 1) + u8(STAT)])
    add("max-length-partial", [path_req(STAT, 1, "/"), u32(256 * 1024) + u8(STAT) + u32(2)])
    add("before-init", [path_req(STAT, 1, "/"), pkt(INIT, u32(3))], header=RAW)
    add("raw-init", [pkt(INIT, u32(3)), path_req(STAT, 1, "/")], header=RAW)

    # --- special files ------------------------------------------------
    add("fifo", [open_(1, "/fifo"), read(2, H1, 0, 10), open_(3, "/fifo", F_WRITE),
                 open_(4, "/fifo", F_READ | F_WRITE), write(5, H2, 0, b"x" * 1000),
                 read(6, H2, 0, 100000), read(7, H2, 0, 10), close(8, H1), close(9, H2)])
    add("noperm", [open_(1, "/noperm"), open_(2, "/ro", F_WRITE), path_req(OPENDIR, 3, "/file"),
                   path_req(OPENDIR, 4, "/nope")])
    add("dir-handle-ops", [path_req(OPENDIR, 1, "/dir"), req(FSTAT, 2, H1),
                           req(FSETSTAT, 3, H1 + attrs(A_PERM | A_SIZE, perm=0o755, size=0)),
                           ext(4, "fstatvfs@openssh.com", H1), ext(5, "fsync@openssh.com", H1),
                           close(6, H1)])

    # --- sessions and options -----------------------------------------
    session = [ext(1, "limits@openssh.com"), path_req(REALPATH, 2, "."),
               path_req(OPENDIR, 3, "/dir"), req(READDIR, 4, H1), req(READDIR, 5, H1), close(6, H1),
               open_(7, "/dir/new", F_WRITE | F_CREAT | F_TRUNC, attrs(A_PERM, perm=0o644)),
               write(8, H(0, 2), 0, b"hello"), close(9, H(0, 2)), path_req(STAT, 10, "/dir/new"),
               two_paths(RENAME, 11, "/dir/new", "/dir/newer"), path_req(REMOVE, 12, "/dir/newer")]
    add("session", session)
    add("session-pieces", session, header=PIECES)
    add("session-small-pieces", session, header=SMALL_PIECES)
    add("session-bytewise", session, header=BYTEWISE)
    add("readonly", [open_(1, "/file", F_WRITE), path_req(REMOVE, 2, "/file"), open_(3, "/file"),
                     ext(4, "copy-data", H1 + u64(0) + u64(0) + H1 + u64(0))], header=READONLY)
    add("denylist", [path_req(REMOVE, 1, "/file"), ext(2, "hardlink@openssh.com", s("/file") + s("/x")),
                     path_req(STAT, 3, "/file")], header=DENYLIST)
    add("allowlist", [path_req(STAT, 1, "/file"), path_req(MKDIR, 2, "/x"), ext(3, "limits@openssh.com")],
        header=ALLOWLIST)
    # fuzz-server sets RLIMIT_NOFILE to 128: the server allows 112 handles
    add("handles-full", [open_(i, "/file") for i in range(1, 116)] +
        [close(200, H(5, 6)), open_(201, "/file"), path_req(OPENDIR, 202, "/dir"),
         ext(203, "limits@openssh.com")])
    return c


def attrs_corpus():
    c = {
        "empty": attrs(),
        "size": attrs(A_SIZE, size=12345),
        "uidgid": attrs(A_UIDGID, uid=1000, gid=100),
        "perm": attrs(A_PERM, perm=0o100644),
        "times": attrs(A_TIME, atime=1700000000, mtime=1700000001),
        "all": attrs(A_SIZE | A_UIDGID | A_PERM | A_TIME, size=1 << 40, uid=1, gid=2, perm=0o40755,
                     atime=3, mtime=4),
        "extended": attrs(A_PERM | A_EXT, perm=0o644, ext=[("name@example.com", "value"), ("", "")]),
        "extended-64": attrs(A_EXT, ext=[("k", "v")] * 64),
        "extended-65": attrs(A_EXT, ext=[("k", "v")] * 65),
        "unknown-bits": u32(0x7FFFFFF0 | A_PERM) + u32(0o644),
        "trailing": attrs(A_SIZE, size=1) + b"trailing bytes",
        "short-size": attrs(A_SIZE, size=1)[:-1],
        "short-ext": attrs(A_EXT, ext=[("k", "v")])[:-1],
        "ext-len-past-end": u32(A_EXT) + u32(1) + u32(100) + b"k",
        "ext-huge-count": u32(A_EXT) + u32(0xFFFFFFFF),
        "flags-only-short": b"\0\0\0",
    }
    return c


def wire_corpus():
    """fuzz-wire programs: byte 0 = number of ops (low 6 bits) | queue limit
    (high 2 bits); then op bytes (low nibble op, high nibble argument); then
    the payload."""
    def prog(ops, payload, qlimit=0):
        return u8(len(ops) | (qlimit << 6)) + bytes(ops) + payload

    U8, U32, U64, STR, CSTR, SUB, POP, SKIP, PEEK, PUT, PUTV, CONSUME, BEGIN, END, TRUNC, RESET = range(16)
    c = {
        "ints": prog([U8, U32, U64, U32], b"\x01" + u32(7) + u64(1 << 40) + b"\0\0"),
        "strings": prog([STR, CSTR | 0xF0, CSTR | 0x10, STR], s("abc") + s("hello") + s("toolong") + s("")),
        "nul-cstring": prog([CSTR | 0xF0], s(b"a\0b")),
        "string-past-end": prog([STR, U8], u32(100) + b"abc"),
        "sub": prog([SUB, U32, STR, POP, U8], s(u32(5) + s("in")) + b"\x09"),
        "nested-sub": prog([SUB, SUB, SUB, U8, POP, POP, POP, U8], s(s(s(b"x"))) + b"y"),
        "skip": prog([SKIP | 0x30, SKIP | 0xF0, U8], b"123456789a"),
        "peek": prog([PEEK | 0x50, PEEK | 0x00, U32], u32(5) + b"12345"),
        "packet": prog([BEGIN | 0x10, PUTV | 0x20, PUTV | 0x70, PUTV | 0xB0, END, CONSUME | 0x10, RESET],
                       b""),
        "queue-limit": prog([PUT | 0xF0, PUT | 0xF0, CONSUME | 0x30, PUT | 0x50, BEGIN, TRUNC, PUT | 0x10],
                            b"payload", qlimit=1),
        "slide": prog([PUT | 0x30, CONSUME | 0x30, PUT | 0x80, CONSUME | 0x20, PUT | 0xF0, CONSUME | 0xF0],
                      b"xyz", qlimit=3),
    }
    return c


def write_dir(path, files):
    if os.path.isdir(path):
        shutil.rmtree(path)
    os.makedirs(path)
    for name, data in sorted(files.items()):
        with open(os.path.join(path, name), "wb") as f:
            f.write(data)


def write_dict(path):
    """A libFuzzer dictionary for fuzz-server: names it cannot guess."""
    words = ["posix-rename@openssh.com", "statvfs@openssh.com", "fstatvfs@openssh.com",
             "hardlink@openssh.com", "fsync@openssh.com", "lsetstat@openssh.com",
             "limits@openssh.com", "expand-path@openssh.com", "copy-data", "home-directory",
             "users-groups-by-id@openssh.com", "/file", "/big", "/sparse", "/empty", "/ro", "/noperm",
             "/script", "/dir", "/dir/a", "/dir/sub", "/emptydir", "/sticky", "/home/fuzz", "/link",
             "/dirlink", "/abslink", "/uplink", "/dangling", "/loop", "/hardlink", "/fifo", "/etc/passwd",
             "~", "~/", "~fuzz", "~root/", "..", ".", "fuzz", "root"]
    lines = ["# libFuzzer dictionary for fuzz-server (written by make-corpus.py)"]
    for i, w in enumerate(words):
        esc = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "\\x%02x" % ord(ch) for ch in w)
        lines.append('w%d="%s"' % (i, esc))
    # a string of each: the length prefix the server reads first
    for i, w in enumerate(words):
        b = u32(len(w)) + w.encode()
        lines.append('s%d="%s"' % (i, "".join("\\x%02x" % x for x in b)))
    lines.append('h1="\\x00\\x00\\x00\\x08\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x01"')
    lines.append('h2="\\x00\\x00\\x00\\x08\\x00\\x00\\x00\\x01\\x00\\x00\\x00\\x02"')
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(here, "corpus"), help="corpus root directory")
    args = ap.parse_args()
    corpora = {"fuzz-server": server_corpus(), "fuzz-attrs": attrs_corpus(), "fuzz-wire": wire_corpus()}
    for target, files in corpora.items():
        write_dir(os.path.join(args.out, target), files)
        print("%s: %d files" % (target, len(files)))
    write_dict(os.path.join(here, "fuzz-server.dict"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
