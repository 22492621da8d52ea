#!/usr/bin/python3
"""Write the seed corpora of the fuzz targets: tests/fuzz/corpus/<target>/.

    /usr/bin/python3 tests/fuzz/make-corpus.py [--out DIR]

Small hand-made inputs, valid and slightly broken: for fuzz-server one file
per core request and per extension (plus sessions, framing errors and the
playground's special files), for fuzz-attrs ATTRS encodings, for
fuzz-hattrs hashi's full-attributes blocks (PROTOCOL.hashi), for fuzz-wire
little reader/writer programs; for the client side (fuse/) fuzz-client
server streams (VERSION and replies: good, wrong, short, out of order),
fuzz-knownhosts known_hosts files (plain, hashed, wildcard, negated,
[host]:port, markers, broken base64), fuzz-sshconfig ssh_config files with
fuzz-sshconfig.c's directive lines (Host/Match/Include, tokens, every kind
of value). Dictionaries: fuzz-server.dict, fuzz-client.dict,
fuzz-knownhosts.dict, fuzz-sshconfig.dict. The outputs are committed;
re-running this rewrites them (removing files it no longer makes) and is
deterministic.

fuzz-server inputs are a header byte and then the client's packets (see
fuzz-server.c). The server sends INIT itself unless the header is 0xff, and
its handles are 8 bytes, index then generation: the first handle of a session
is H(0, 1), the second (the first still open) H(1, 2); opened after closing
the first instead, it is H(0, 2). Paths name fuzz-jail.c's playground: /file, /big, /sparse, /dir/...
"""
import argparse
import base64
import hashlib
import hmac
import os
import re
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
    # --- hashi's extensions (man/PROTOCOL.hashi) ---------------------------
    NONE = 0xFFFFFFFF
    add("hx-errno", [ext(1, "errno@hashi", u32(1)), path_req(RMDIR, 2, "/dir"), path_req(STAT, 3, "/loop"),
                     ext(4, "errno@hashi", u32(0)), path_req(RMDIR, 5, "/dir")])
    add("hx-stat", [ext(1, "stat@hashi", s("/link") + u32(0)), ext(2, "stat@hashi", s("/link") + u32(2)),
                    open_(3, "/file"), ext(4, "stat@hashi", H1 + u32(1)),
                    ext(5, "stat@hashi", s(b"\0\0\0\0\0\0\0\9") + u32(1)),
                    ext(6, "stat@hashi", s("/file") + u32(0x100))])
    add("hx-readdir", [path_req(OPENDIR, 1, "/dir"), ext(2, "readdir@hashi", H1),
                       ext(3, "readdir@hashi", H1), req(READDIR, 4, H1), close(5, H1)])
    add("hx-setstat", [ext(1, "setstat@hashi", s("/file") + u32(0) + hsetattr(0x3F, 0o640, 1, 2, 3,
                                                                            (5, 6), (-7, 999999999))),
                       ext(2, "setstat@hashi", s("/link") + u32(2) + hsetattr(0xD0, atime=(1, 2))),
                       ext(3, "setstat@hashi", s("/file") + u32(0) + hsetattr(0x20, mtime=(0, 10**9))),
                       ext(4, "setstat@hashi", s("/file") + u32(0) + hsetattr(0x100))])
    add("hx-open", [ext(1, "open@hashi", s("/dir/new") + u32(F_WRITE | F_CREAT | 0x100) + u32(0o6755)
                        + u32(NONE) + u32(0)),
                    ext(2, "open@hashi", s("/file") + u32(F_READ | 0x80000000) + u32(0) + u32(NONE) + u32(NONE)),
                    write(3, H1, 0, b"hello"), ext(4, "stat@hashi", H1 + u32(1)), close(5, H1)])
    add("hx-mknod", [ext(1, "mknod@hashi", s("/dir/p") + u32(0o10644) + u32(0) + u32(0) + u32(NONE)
                         + u32(NONE) + s("")),
                     ext(2, "mknod@hashi", s("/dir/l") + u32(0o120777) + u32(0) + u32(0) + u32(1) + u32(1)
                         + s("/file")),
                     ext(3, "mknod@hashi", s("/dir/d") + u32(0o42775) + u32(0) + u32(0) + u32(NONE)
                         + u32(NONE) + s("")),
                     ext(4, "mknod@hashi", s("/dir/c") + u32(0o20666) + u32(1) + u32(3) + u32(NONE)
                         + u32(NONE) + s(""))])
    add("hx-xattr", [ext(1, "setxattr@hashi", s("/file") + u32(0) + s("user.a") + s(b"v\0v") + u32(1)),
                     ext(2, "getxattr@hashi", s("/file") + u32(0) + s("user.a")),
                     ext(3, "listxattr@hashi", s("/file") + u32(0)),
                     ext(4, "removexattr@hashi", s("/file") + u32(0) + s("user.a")),
                     ext(5, "getxattr@hashi", s("/link") + u32(2) + s("user.a")),
                     ext(6, "setxattr@hashi", s("/file") + u32(0) + s("user.a") + s(b"") + u32(7))])
    add("hx-lock", [open_(1, "/file", F_READ | F_WRITE), open_(2, "/file", F_READ | F_WRITE),
                    ext(3, "lock@hashi", H1 + u32(1) + u32(0) + u32(1) + u64(0) + u64(0)),
                    ext(4, "lock@hashi", H2 + u32(0) + u32(0) + u32(1) + u64(0) + u64(10)),
                    ext(5, "lock@hashi", H2 + u32(1) + u32(1) + u32(1) + u64(0) + u64(10)),
                    ext(6, "lock@hashi", H2 + u32(2) + u32(1) + u32(0) + u64(0) + u64(0)),
                    ext(7, "lock@hashi", H2 + u32(3) + u32(0) + u32(0) + u64(0) + u64(0)),
                    ext(8, "lock@hashi", H1 + u32(1) + u32(0) + u32(2) + u64(0) + u64(0)),
                    close(9, H1), close(10, H2)])
    add("hx-fallocate-lseek", [open_(1, "/sparse", F_READ | F_WRITE),
                               ext(2, "fallocate@hashi", H1 + u32(0x03) + u64(0) + u64(4096)),
                               ext(3, "fallocate@hashi", H1 + u32(0x10) + u64(1 << 20) + u64(8192)),
                               ext(4, "lseek@hashi", H1 + u64(0) + u32(3)),
                               ext(5, "lseek@hashi", H1 + u64(0) + u32(4)),
                               ext(6, "lseek@hashi", H1 + u64(1 << 62) + u32(3)), close(7, H1)])
    add("hx-readonly", [ext(1, "setstat@hashi", s("/file") + u32(0) + hsetattr(1, 0o600)),
                        ext(2, "open@hashi", s("/file") + u32(F_WRITE) + u32(0) + u32(NONE) + u32(NONE)),
                        ext(3, "stat@hashi", s("/file") + u32(0))], header=READONLY)
    # fuzz-server sets RLIMIT_NOFILE to 128: the server allows 112 handles
    add("handles-full", [open_(i, "/file") for i in range(1, 116)] +
        [close(200, H(5, 6)), open_(201, "/file"), path_req(OPENDIR, 202, "/dir"),
         ext(203, "limits@openssh.com")])
    return c


def hsetattr(valid, mode=0, uid=0, gid=0, size=0, atime=(0, 0), mtime=(0, 0)):
    """setstat@hashi's attribute block."""
    return (u32(valid) + u32(mode) + u32(uid) + u32(gid) + u64(size)
            + u64(atime[0]) + u32(atime[1]) + u64(mtime[0]) + u32(mtime[1]))


def hattrs(mask=0x3FFF, mode=0o100644, nlink=1, uid=0, gid=0, blksize=4096, ino=2, size=0, blocks=0,
           dev=(8, 1), rdev=(0, 0), times=((1, 2), (3, 4), (5, 6), (7, 8)), extra=b""):
    """hashi's full-attributes string (HATTRS_V1_LEN bytes, plus extra)."""
    b = u32(mask) + u32(mode) + u32(nlink) + u32(uid) + u32(gid) + u32(blksize)
    b += u64(ino) + u64(size) + u64(blocks) + u32(dev[0]) + u32(dev[1]) + u32(rdev[0]) + u32(rdev[1])
    for sec, nsec in times:
        b += u64(sec) + u32(nsec)
    return s(b + extra)


def hattrs_corpus():
    """fuzz-hattrs: readdir@hashi-like replies (count, then name and
    hattrs), which also serve as hsetattr blocks from their first bytes."""
    one = hattrs()
    return {
        "one": u32(1) + s("file") + one,
        "two": u32(2) + s(".") + hattrs(mode=0o40755, nlink=5) + s("dev") + hattrs(mode=0o20666,
                                                                               rdev=(1, 3)),
        "negative-times": u32(1) + s("old") + hattrs(times=((-1, 999999999), (-(1 << 63), 0),
                                                            ((1 << 63) - 1, 0), (0, 0))),
        "nsec-too-big": u32(1) + s("x") + hattrs(times=((0, 1000000000), (0, 0), (0, 0), (0, 0))),
        "longer-v2": u32(1) + s("x") + hattrs(extra=b"later fields"),
        "shorter": u32(1) + s("x") + s(b"\0" * 100),
        "past-end": u32(1) + s("x") + u32(112) + b"\0" * 50,
        "count-too-big": u32(0xFFFFFFFF) + s("x") + one,
        "hsetattr": hsetattr(0xFF, 0o644, 1, 2, 3, (4, 5), (6, 7)),
        "hsetattr-bad-nsec": hsetattr(0x10, atime=(0, 1 << 31)),
        "empty": b"",
    }


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


# --- the client side (fuse/) ----------------------------------------------

# Reply types
VERSION, STATUS, HANDLE, DATA, NAME, ATTRS, EXTENDED_REPLY = 2, 101, 102, 103, 104, 105, 201

# fuzz-client.c's request table (bit i of the mask submits request i)
(C_LSTAT, C_READLINK, C_REALPATH, C_OPENDIR, C_READDIR, C_FSTAT, C_READ, C_STATVFS, C_WRITE,
 C_RENAME, C_POSIX_RENAME, C_OPEN, C_READ1, C_CLOSE, C_FSTATVFS, C_EXPAND) = range(16)
ALL_REQS = 0xFFFF
# fuzz-client header bits
C_WHOLE, C_SMALL_PIECES, C_PIECES, C_BYTEWISE = 0, 1, 2, 3
C_WRITE_PIECES, C_WRITE_FAILS, C_THREAD, C_RECONNECT = 4, 8, 16, 32
RECONNECT_MARK = b"\xffRECONNECT\xff"

ALL_EXTS = ["posix-rename@openssh.com", "statvfs@openssh.com", "fstatvfs@openssh.com",
            "hardlink@openssh.com", "fsync@openssh.com", "lsetstat@openssh.com",
            "limits@openssh.com", "expand-path@openssh.com", "copy-data", "home-directory",
            "users-groups-by-id@openssh.com"]


def version(exts=ALL_EXTS, v=3):
    return pkt(VERSION, u32(v) + b"".join(s(n) + s(d) for n, d in
                                          [(e, "1") if isinstance(e, str) else e for e in exts]))


def status(rid, code=0, msg="", lang=""):
    return pkt(STATUS, u32(rid) + u32(code) + s(msg) + s(lang))


def handle_reply(rid, h=b"\0\0\0\0\0\0\0\1"):
    return pkt(HANDLE, u32(rid) + s(h))


def data_reply(rid, d):
    return pkt(DATA, u32(rid) + s(d))


def name_reply(rid, entries, count=None):
    body = u32(len(entries) if count is None else count)
    for n, ln, a in entries:
        body += s(n) + s(ln) + a
    return pkt(NAME, u32(rid) + body)


def attrs_reply(rid, a=None):
    if a is None:
        a = attrs(A_SIZE | A_UIDGID | A_PERM | A_TIME, size=1234, uid=1000, gid=1000,
                  perm=0o100644, atime=1700000000, mtime=1700000001)
    return pkt(ATTRS, u32(rid) + a)


def ext_reply(rid, body):
    return pkt(EXTENDED_REPLY, u32(rid) + body)


def limits_reply(rid, maxpkt=256 * 1024, maxr=255 * 1024, maxw=255 * 1024, maxh=1024):
    return ext_reply(rid, u64(maxpkt) + u64(maxr) + u64(maxw) + u64(maxh))


def statvfs_body(n=11):
    vals = [4096, 4096, 1 << 20, 1 << 19, 1 << 18, 1 << 16, 1 << 15, 1 << 15, 0x1234, 2, 255]
    return b"".join(u64(v) for v in vals[:n])


class Ids:
    """The request ids fuzz-client's engine uses: 1 for the limits request
    (when VERSION names the extension), then the masked requests in table
    order, then (inline mode) the first synchronous STAT; follow-ups take
    the next ids as the replies that cause them are read."""

    def __init__(self, mask=ALL_REQS, limits=True, sync=True):
        n = 1
        self.limits = None
        if limits:
            self.limits = n
            n += 1
        self.req = {}
        for i in range(16):
            if mask >> i & 1:
                self.req[i] = n
                n += 1
        self.sync = None
        if sync:
            self.sync = n
            n += 1
        self.next = n

    def follow(self):
        n = self.next
        self.next += 1
        return n


def dirent(n, perm=0o100644, size=1):
    ln = "-rw-r--r--    1 fuzz     fuzz     %8d Jan  1 00:00 %s" % (size, n)
    return (n, ln, attrs(A_SIZE | A_UIDGID | A_PERM | A_TIME, size=size, uid=1000, gid=1000,
                         perm=perm, atime=1, mtime=2))


def good_replies(ids):
    """A well-behaved answer to each request, and to the follow-ups they
    cause: the OPENDIR handle is read (READDIR: EOF), the OPEN handle gets
    READ, FSTAT and CLOSE, the READDIR with two names is asked again (EOF)."""
    r = ids.req
    out, later = [], []
    a = attrs_reply
    if C_LSTAT in r:
        out.append(a(r[C_LSTAT]))
    if C_READLINK in r:
        out.append(name_reply(r[C_READLINK], [("target", "target", attrs())]))
    if C_REALPATH in r:
        out.append(name_reply(r[C_REALPATH], [("/home/fuzz", "/home/fuzz", attrs())]))
    if C_OPENDIR in r:
        out.append(handle_reply(r[C_OPENDIR], b"dir-handle-1"))
        later.append(status(ids.follow(), 1, "End of file"))
    if C_READDIR in r:
        out.append(name_reply(r[C_READDIR], [dirent("a"), dirent("sub", perm=0o40755, size=4096)]))
        later.append(status(ids.follow(), 1, "End of file"))
    if C_FSTAT in r:
        out.append(a(r[C_FSTAT]))
    if C_READ in r:
        out.append(data_reply(r[C_READ], bytes(range(256)) * 3 + b"x" * 232))
    if C_STATVFS in r:
        out.append(ext_reply(r[C_STATVFS], statvfs_body()))
    for i in (C_WRITE, C_RENAME, C_POSIX_RENAME, C_CLOSE):
        if i in r:
            out.append(status(r[i], 0, "Success", "en"))
    if C_OPEN in r:
        out.append(handle_reply(r[C_OPEN], b"\0\0\0\1\0\0\0\2"))
        later.append(data_reply(ids.follow(), b"d" * 100))
        later.append(a(ids.follow()))
        later.append(status(ids.follow(), 0))
    if C_READ1 in r:
        out.append(data_reply(r[C_READ1], b"z"))
    if C_FSTATVFS in r:
        out.append(ext_reply(r[C_FSTATVFS], statvfs_body()))
    if C_EXPAND in r:
        out.append(name_reply(r[C_EXPAND], [("/home/fuzz/x", "", attrs())]))
    out += later
    if ids.sync is not None:
        out.append(a(ids.sync))
    return out


def client_in(header, mask, stream):
    return u8(header) + u8(mask & 0xFF) + u8(mask >> 8) + b"".join(stream)


def client_corpus():
    """fuzz-client inputs: header byte, request mask (2 bytes, low first),
    then what the server sends (see fuzz-client.c)."""
    c = {}

    def session(name, header=C_WHOLE, mask=ALL_REQS, exts=ALL_EXTS, limits=None, replies=None):
        has_limits = any((e if isinstance(e, str) else e[0]) == "limits@openssh.com" for e in exts)
        ids = Ids(mask, limits=has_limits, sync=not header & C_THREAD)
        stream = [version(exts)]
        if has_limits:
            stream.append(limits_reply(ids.limits) if limits is None else limits(ids.limits))
        stream += (replies or good_replies)(ids)
        c[name] = client_in(header, mask, stream)

    session("all-ok")
    session("all-ok-small-pieces", header=C_SMALL_PIECES)
    session("all-ok-pieces", header=C_PIECES | 0x40)
    session("all-ok-bytewise", header=C_BYTEWISE)
    session("all-ok-thread", header=C_THREAD)
    session("all-ok-thread-pieces", header=C_THREAD | C_PIECES | 0x80)
    session("write-pieces", header=C_WRITE_PIECES | C_SMALL_PIECES)
    session("write-fails", header=C_WRITE_FAILS | 0x40)
    session("write-fails-thread", header=C_WRITE_FAILS | C_THREAD | 0xC0)
    session("no-extensions", exts=[])
    session("no-requests", mask=0)
    session("only-readdir", mask=1 << C_READDIR)
    session("only-read", mask=1 << C_READ, header=C_PIECES)

    # limits@openssh.com: odd values, short, or refused
    session("limits-tiny", mask=1 << C_LSTAT, limits=lambda i: limits_reply(i, 2000, 10, 10, 1))
    session("limits-huge", mask=1 << C_LSTAT,
            limits=lambda i: limits_reply(i, 1 << 63, 1 << 40, (1 << 64) - 1, 1 << 32))
    session("limits-small-packet", mask=1 << C_LSTAT,
            limits=lambda i: limits_reply(i, 1500, 64 * 1024, 64 * 1024, 0))
    session("limits-short", mask=1 << C_LSTAT, limits=lambda i: ext_reply(i, u64(1) + u64(2)))
    session("limits-status", mask=1 << C_LSTAT, limits=lambda i: status(i, 8))
    session("limits-attrs", mask=1 << C_LSTAT, limits=lambda i: attrs_reply(i))

    # short reads: the rest is asked for (twice at most)
    def short_reads(ids):
        r = ids.req
        f1 = ids.follow()
        f2 = ids.follow()
        return [data_reply(r[C_READ], b"a" * 400), data_reply(f1, b"b" * 300),
                data_reply(f2, b"c" * 100), status(ids.sync, 2)]
    session("short-reads", mask=1 << C_READ, replies=short_reads)

    def read_eof(ids):
        return [status(ids.req[C_READ], 1, "EOF"), data_reply(ids.req[C_READ1], b""),
                status(ids.sync, 0)]
    session("read-eof", mask=(1 << C_READ) | (1 << C_READ1), replies=read_eof)

    def data_too_long(ids):
        return [data_reply(ids.req[C_READ1], b"zz"), data_reply(ids.req[C_READ], b"y" * 1001),
                attrs_reply(ids.sync)]
    session("data-too-long", mask=(1 << C_READ) | (1 << C_READ1), replies=data_too_long)

    def data_past_end(ids):
        return [pkt(DATA, u32(ids.req[C_READ]) + u32(5000) + b"short")]
    session("data-string-past-end", mask=1 << C_READ, replies=data_past_end)

    # READDIR: odd names, a count larger than the names, follow-ups
    def readdir_odd(ids):
        rid = ids.req[C_READDIR]
        odd = [dirent("."), dirent(".."), dirent("a/b"), dirent(""), dirent("n" * 300),
               ("nul\0name", "x", attrs()), ("ext", "ext", attrs(A_EXT, ext=[("k", "v")] * 3))]
        f1 = ids.follow()
        f2 = ids.follow()
        return [name_reply(rid, odd), name_reply(f1, [dirent("x")], count=1000),
                name_reply(f2, [], count=0), attrs_reply(ids.sync)]
    session("readdir-odd", mask=1 << C_READDIR, replies=readdir_odd)

    def readdir_bad_attrs(ids):
        rid = ids.req[C_READDIR]
        f1 = ids.follow()
        return [name_reply(rid, [("a", "a", u32(A_EXT) + u32(100000))]),
                name_reply(f1, [("b", "b", attrs(A_SIZE)[:-3])]), status(ids.sync, 4)]
    session("readdir-bad-attrs", mask=1 << C_READDIR, replies=readdir_bad_attrs)

    # every request answered with each status code (and unknown ones)
    def statuses(ids):
        out = []
        for k, (i, rid) in enumerate(sorted(ids.req.items())):
            out.append(status(rid, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0xFFFFFFFF][k % 11], "m" * k))
        out.append(status(ids.sync, 2))
        return out
    session("statuses", replies=statuses)

    def statuses_no_message(ids):
        out = [pkt(STATUS, u32(rid) + u32(3)) for rid in ids.req.values()]
        return out + [pkt(STATUS, u32(ids.sync) + u32(0))]
    session("statuses-no-message", replies=statuses_no_message)

    # wrong reply types for each request
    def wrong_types(ids):
        out = []
        kinds = [lambda i: handle_reply(i), lambda i: data_reply(i, b"d"),
                 lambda i: name_reply(i, [("n", "n", attrs())]), lambda i: attrs_reply(i),
                 lambda i: ext_reply(i, b"")]
        for k, rid in enumerate(ids.req.values()):
            out.append(kinds[k % 5](rid))
        return out + [name_reply(ids.sync, [])]
    session("wrong-types", replies=wrong_types)

    # malformed single replies
    def name1_bad(ids):
        r = ids.req
        return [name_reply(r[C_READLINK], [], count=0),
                name_reply(r[C_REALPATH], [("a\0b", "", attrs())]),
                pkt(NAME, u32(r[C_EXPAND]) + u32(1) + u32(70000) + b"x" * 100),
                attrs_reply(ids.sync, u32(A_SIZE) + b"\0\0\0")]
    session("name1-bad", mask=(1 << C_READLINK) | (1 << C_REALPATH) | (1 << C_EXPAND),
            replies=name1_bad)

    def attrs_bad(ids):
        r = ids.req
        return [attrs_reply(r[C_LSTAT], u32(A_EXT) + u32(65) + (s("k") + s("v")) * 65),
                attrs_reply(r[C_FSTAT], u32(0xFFFFFFFF) + b"\0" * 40), attrs_reply(ids.sync, b"")]
    session("attrs-bad", mask=(1 << C_LSTAT) | (1 << C_FSTAT), replies=attrs_bad)

    def handles_bad(ids):
        r = ids.req
        return [handle_reply(r[C_OPENDIR], b""), handle_reply(r[C_OPEN], b"h" * 300),
                attrs_reply(ids.sync)]
    session("handles-bad", mask=(1 << C_OPENDIR) | (1 << C_OPEN), replies=handles_bad)

    def statvfs_bad(ids):
        r = ids.req
        return [ext_reply(r[C_STATVFS], statvfs_body(10)), ext_reply(r[C_FSTATVFS], b""),
                attrs_reply(ids.sync)]
    session("statvfs-bad", mask=(1 << C_STATVFS) | (1 << C_FSTATVFS), replies=statvfs_bad)

    # order, duplicates, ids never sent
    def reversed_order(ids):
        return list(reversed(good_replies(ids)))
    session("reversed", replies=reversed_order, header=C_SMALL_PIECES)
    session("reversed-thread", replies=reversed_order, header=C_THREAD)

    def duplicate(ids):
        rid = ids.req[C_LSTAT]
        return [attrs_reply(rid), attrs_reply(rid), attrs_reply(ids.sync)]
    session("duplicate-reply", mask=(1 << C_LSTAT) | (1 << C_FSTAT), replies=duplicate)

    def unknown_id(ids):
        return [status(999, 0), attrs_reply(ids.sync)]
    session("unknown-id", mask=1 << C_LSTAT, replies=unknown_id)

    def unknown_type(ids):
        return [pkt(150, u32(ids.req[C_LSTAT]) + b"whatever"), attrs_reply(ids.sync)]
    session("unknown-type", mask=(1 << C_LSTAT) | (1 << C_FSTAT), replies=unknown_type)

    def status_short(ids):
        return [pkt(STATUS, u32(ids.req[C_RENAME]) + b"\0\0"), attrs_reply(ids.sync)]
    session("status-short", mask=(1 << C_RENAME) | (1 << C_CLOSE), replies=status_short)

    def no_id(ids):
        return [pkt(STATUS, b"\0\0"), attrs_reply(ids.sync)]
    session("reply-without-id", mask=1 << C_LSTAT, replies=no_id)

    def zero_length(ids):
        return [u32(0), attrs_reply(ids.sync)]
    session("zero-length-packet", mask=1 << C_LSTAT, replies=zero_length)

    def too_long(ids):
        return [u32(2 * 1024 * 1024) + u8(ATTRS) + u32(ids.req[C_LSTAT])]
    session("too-long-packet", mask=1 << C_LSTAT, replies=too_long)

    def cut_short(ids):
        return good_replies(ids)[:3] + [attrs_reply(ids.sync or 99)[:-2]]
    session("cut-short", replies=cut_short, header=C_PIECES)
    session("cut-short-thread", replies=cut_short, header=C_THREAD | C_BYTEWISE)

    def version_again(ids):
        return [version(), attrs_reply(ids.sync)]
    session("version-twice", mask=1 << C_LSTAT, replies=version_again)

    # more than one synchronous call: after the first, input is left
    def syncs(ids):
        first = ids.sync
        return [attrs_reply(first), attrs_reply(first + 1), status(first + 2, 2),
                attrs_reply(first + 3)]
    c["sync-chain"] = client_in(C_SMALL_PIECES, 0, [version([])] + syncs(Ids(0, limits=False)))

    # reconnecting (thread mode): one stream per connection, cut at
    # RECONNECT_MARK; after the last, fuzz-client's own server answers
    # everything with FAILURE
    R = C_THREAD | C_RECONNECT
    mark = [RECONNECT_MARK]
    v = version()

    # LSTAT answered, READLINK (id 3) sent again on the new connection
    c["reconnect-replay"] = client_in(R, (1 << C_LSTAT) | (1 << C_READLINK), [
        v, limits_reply(1), attrs_reply(2)] + mark + [
        version([]), name_reply(3, [("target", "target", attrs())])])

    # handles: OPENDIR (id 2) and OPEN (id 3); their follow-ups READDIR (4),
    # READ (5), FSTAT (6), CLOSE (7); READDIR with two names asks again (8).
    # On the new connection the engine reopens the directory (OPENDIR 9) and
    # skips the two names listed (READDIR 10, three names: one left over),
    # reopens the file (OPEN 11); then FSTAT (6) goes again, CLOSE (7) is
    # done already, READDIR (8) gets the name left over and asks again (12).
    first = [v, limits_reply(1), handle_reply(2, b"D1"), handle_reply(3, b"F1"),
             name_reply(4, [dirent("a"), dirent("b")]), data_reply(5, b"x" * 100)]
    second = [version(), handle_reply(9, b"D2"),
              name_reply(10, [dirent("a"), dirent("b"), dirent("c")]), handle_reply(11, b"F2"),
              attrs_reply(6), status(12, 1, "End of file")]
    hmask = (1 << C_OPENDIR) | (1 << C_OPEN)
    c["reconnect-handles"] = client_in(R, hmask, first + mark + second)
    c["reconnect-handles-pieces"] = client_in(R | C_SMALL_PIECES | C_WRITE_PIECES, hmask,
                                              first + mark + second)
    # reopening fails: what uses the handles fails (ESTALE)
    c["reconnect-reopen-fails"] = client_in(R, hmask, first + mark + [
        version(), status(9, 2), status(10, 3)])
    # the directory shrank: READDIR finds fewer names than were listed
    c["reconnect-dir-shrank"] = client_in(R, hmask, first + mark + [
        version(), handle_reply(9, b"D2"), name_reply(10, [dirent("a")]),
        status(11, 1), handle_reply(12, b"F2"), attrs_reply(6)])
    # a reply cut in the middle, then a new connection
    c["reconnect-mid-packet"] = client_in(R, hmask, first[:3] + [handle_reply(3, b"F1")[:7]] +
                                          mark + [version(), handle_reply(4, b"D2")])
    # replayed changes whose first attempt was done: forgiven
    c["reconnect-forgive"] = client_in(R, (1 << C_RENAME) | (1 << C_POSIX_RENAME), [
        v, limits_reply(1), status(99, 0)] + mark + [version(), status(2, 2), status(3, 2)])
    # new connections that fail at once, or say nonsense
    c["reconnect-failing"] = client_in(R, (1 << C_LSTAT) | (1 << C_READ), [
        v, limits_reply(1), attrs_reply(2)] + mark + [b""] + mark + [status(1, 0)] + mark + [b"\xff" * 9] + mark +
        [version([]), data_reply(3, b"y" * 10)])
    c["reconnect-write-fails"] = client_in(R | C_WRITE_FAILS | 0x40, ALL_REQS, [
        v, limits_reply(1)] + mark + [version()] + mark + [version()])
    # all requests: LSTAT .. FSTAT (2-7) answered, the OPENDIR handle's READDIR
    # (18) and the READDIR follow-up (19) sent; then a new connection: the
    # directory reopened (OPENDIR 20), the rest sent again and answered
    # (8-17; not the CLOSE, 15, which the reconnect made moot), the OPEN
    # handle's READ, FSTAT, CLOSE (21-23)
    ids = Ids(ALL_REQS, sync=False)
    good = good_replies(ids)
    c["reconnect-all"] = client_in(R, ALL_REQS, [v, limits_reply(1)] + good[:6] + mark + [
        version(), handle_reply(20, b"D2")] + [g for g in good[6:16] if g[5:9] != u32(15)] + [
        status(18, 1), status(19, 1), data_reply(21, b"r" * 100), attrs_reply(22), status(23, 0)])

    # VERSION itself
    c["empty"] = client_in(C_WHOLE, ALL_REQS, [])
    c["status-before-version"] = client_in(C_WHOLE, 0, [status(1, 0), version()])
    c["version-2"] = client_in(C_WHOLE, 1, [version([], v=2), attrs_reply(1), attrs_reply(2)])
    c["version-bad-ext"] = client_in(C_WHOLE, 1, [pkt(VERSION, u32(3) + s("statvfs@openssh.com")),
                                                  attrs_reply(1)])
    c["version-short"] = client_in(C_WHOLE, 1, [pkt(VERSION, b"\0\0")])
    c["version-odd-exts"] = client_in(C_WHOLE, 1, [version([("limits@openssh.com", ""), ("", ""),
                                                            ("statvfs@openssh.com", "2"),
                                                            ("x" * 200, "y" * 200)]),
                                                   limits_reply(1), attrs_reply(2), attrs_reply(3)])
    c["version-truncated"] = client_in(C_BYTEWISE, 1, [version()[:-5]])
    c["garbage"] = client_in(C_WHOLE, ALL_REQS, [b"\xff" * 64])
    return c


def client_dict():
    words = ALL_EXTS + ["End of file", "Success"]
    lines = ["# libFuzzer dictionary for fuzz-client (written by make-corpus.py)",
             'mark="%s"' % "".join("\\x%02x" % x for x in RECONNECT_MARK)]
    for i, w in enumerate(words):
        lines.append('w%d="%s"' % (i, w))
    for i, w in enumerate(words):
        b = u32(len(w)) + w.encode()
        lines.append('s%d="%s"' % (i, "".join("\\x%02x" % x for x in b)))
    return lines


# --- fuzz-knownhosts ------------------------------------------------------

def kh_keys():
    """The key blobs fuzz-knownhosts.c makes (make_keys)."""
    raw = bytearray((i * 37 + 11) & 0xFF for i in range(65))
    ed = s("ssh-ed25519") + s(bytes(raw[:32]))
    rsa = s("ssh-rsa") + s(b"\x01\x00\x01") + s(bytes(raw))
    raw[0] = 4
    ecdsa = s("ecdsa-sha2-nistp256") + s("nistp256") + s(bytes(raw))
    return ed, rsa, ecdsa


KH_NAMES = ["host.example.com", "[host.example.com]:2222", "192.0.2.7", "HOST.Example.COM"]
KH_ED, KH_RSA, KH_ECDSA, KH_BAD = 0, 1, 2, 3


def kh_hashed(name, salt):
    mac = hmac.new(salt, name.lower().encode(), hashlib.sha1).digest()
    return "|1|%s|%s" % (base64.b64encode(salt).decode(), base64.b64encode(mac).decode())


def knownhosts_corpus():
    """fuzz-knownhosts inputs: a header byte (key, name) and the file."""
    ed, rsa, ecdsa = kh_keys()
    b64 = lambda b: base64.b64encode(b).decode()
    ED, RSA, EC = b64(ed), b64(rsa), b64(ecdsa)
    other_ed = b64(s("ssh-ed25519") + s(b"\x42" * 32))
    salt = bytes(range(20))
    c = {}

    def add(name, text, key=KH_ED, host=0):
        c[name] = u8(key | host << 2) + (text.encode() if isinstance(text, str) else text)

    add("ok", "host.example.com ssh-ed25519 %s\n" % ED)
    add("ok-list", "a.example.com,host.example.com,10.0.0.1 ssh-ed25519 %s a comment\n" % ED)
    add("ok-wildcard", "*.example.com ssh-ed25519 %s\nhost.example.co? ssh-rsa %s\n" % (ED, RSA))
    add("negated", "*.example.com,!host.example.com ssh-ed25519 %s\n" % ED)
    add("negated-first", "!host.*,host.example.com ssh-ed25519 %s\n" % ED)
    add("port", "[host.example.com]:2222 ssh-ed25519 %s\nhost.example.com ssh-rsa %s\n"
        % (ED, RSA), host=1)
    add("port-wildcard", "[host.example.com]:* ssh-ed25519 %s\n" % ED, host=1)
    add("brackets-literal", "[host.example.com] ssh-ed25519 %s\n\\[x\\] ssh-ed25519 %s\n"
        % (ED, ED), host=1)
    for i, n in enumerate(KH_NAMES):
        add("hashed-%d" % i, "%s ssh-ed25519 %s\n" % (kh_hashed(n, salt), ED), host=i)
    add("hashed-other-key", "%s ssh-ed25519 %s\n" % (kh_hashed(KH_NAMES[0], salt), other_ed))
    add("hashed-wrong", "%s ssh-ed25519 %s\n" % (kh_hashed("other.example.com", salt), ED))
    add("hashed-malformed", "|1|abc ssh-ed25519 %s\n|1||| ssh-ed25519 %s\n|1|AAAA|AAAA ssh-ed25519 %s\n"
        "|2|%s|%s ssh-ed25519 %s\n|1|%s ssh-ed25519 %s\n"
        % (ED, ED, ED, b64(salt), b64(salt), ED, b64(salt), ED))
    add("hashed-list", "%s,host.example.com ssh-ed25519 %s\n" % (kh_hashed(KH_NAMES[0], salt), ED))
    add("changed", "host.example.com ssh-ed25519 %s\n" % other_ed)
    add("changed-then-ok", "host.example.com ssh-ed25519 %s\nhost.example.com ssh-ed25519 %s\n"
        % (other_ed, ED))
    add("other-type", "host.example.com ssh-rsa %s\nhost.example.com ecdsa-sha2-nistp256 %s\n"
        % (RSA, EC))
    add("revoked", "host.example.com ssh-ed25519 %s\n@revoked * ssh-ed25519 %s\n" % (ED, ED))
    add("revoked-rsa", "@revoked nothing.example ssh-rsa %s\n" % RSA, key=KH_RSA)
    add("cert-authority", "@cert-authority *.example.com ssh-ed25519 %s\n" % ED)
    add("unknown-marker", "@foo host.example.com ssh-ed25519 %s\n@revokedx * ssh-ed25519 %s\n"
        % (ED, ED))
    add("marker-only", "@revoked\n@cert-authority host\n")
    add("comments-blank", "# comment\n\n   \n\t# indented\nhost.example.com ssh-ed25519 %s\n" % ED)
    add("crlf-tabs", "host.example.com\tssh-ed25519\t%s\r\n  host.example.com  ssh-rsa  %s  x\r\n"
        % (ED, RSA))
    add("no-newline", "host.example.com ssh-ed25519 %s" % ED)
    add("bad-base64", "host.example.com ssh-ed25519 AAAA!!!\nhost.example.com ssh-ed25519 A\n"
        "host.example.com ssh-ed25519 %s=\nhost.example.com ssh-ed25519 %s==\n"
        "host.example.com ssh-ed25519 =\n" % (ED.rstrip("="), ED.rstrip("=")))
    add("type-mismatch", "host.example.com ssh-rsa %s\n" % ED)
    add("short-fields", "host.example.com\nhost.example.com ssh-ed25519\nhost.example.com  \n")
    add("blob-bad-type", "host.example.com ssh-ed25519 %s\nhost.example.com x %s\n"
        % (b64(b"\0\0\0\x05ab\x01cd" + b"\0" * 8), b64(b"\0\0\0\0"), ))
    add("nul-byte", b"host.example.com\0 ssh-ed25519 " + ED.encode() + b"\nhost\0.example.com ssh-rsa "
        + RSA.encode() + b"\n")
    add("long-patterns", "%s ssh-ed25519 %s\n" % (",".join("h%d.example.com" % i for i in range(150)), ED))
    add("long-single-pattern", "%s ssh-ed25519 %s\n" % ("*" + "x" * 1200, ED))
    add("stars", "*,*.*,?ost.example.com,h*t.*.c*m ssh-ed25519 %s\n" % ED)
    add("ipv4", "192.0.2.* ssh-rsa %s\n192.0.2.7 ssh-ed25519 %s\n" % (RSA, ED), key=KH_RSA, host=2)
    add("uppercase", "HOST.EXAMPLE.COM ecdsa-sha2-nistp256 %s\n" % EC, key=KH_ECDSA, host=3)
    add("bad-key", "host.example.com ssh-ed25519 %s\n" % ED, key=KH_BAD)
    add("many-types", "".join("host.example.com t%d %s\n" % (i, b64(s("type-%d" % i) + s("k")))
                              for i in range(20)))
    add("empty", "")
    add("mixed", "# real-looking file\n"
        "%s ssh-ed25519 %s\n"
        "[host.example.com]:2222,[192.0.2.7]:2222 ssh-rsa %s\n"
        "@cert-authority *.example.com ssh-ed25519 %s\n"
        "@revoked * ssh-rsa %s\n"
        "192.0.2.7 ecdsa-sha2-nistp256 %s\n"
        % (kh_hashed("host.example.com", bytes(20)), other_ed, RSA, ED, RSA, EC), host=2,
        key=KH_ECDSA)
    return c


def knownhosts_dict():
    words = ["@revoked", "@cert-authority", "|1|", "ssh-ed25519", "ssh-rsa", "ssh-dss",
             "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "sk-ssh-ed25519@openssh.com",
             "host.example.com", "[host.example.com]:2222", "192.0.2.7", "*", "?", "!", ",",
             "AAAAC3NzaC1lZDI1NTE5AAAAI", "AAAAB3NzaC1yc2EAAAADAQABAAAA", "=="]
    lines = ["# libFuzzer dictionary for fuzz-knownhosts (written by make-corpus.py)"]
    for i, w in enumerate(words):
        lines.append('w%d="%s"' % (i, w))
    return lines


# --- fuzz-sshconfig -------------------------------------------------------

def sshconfig_keywords(here):
    """ssh_config keywords, from fuse/target.c's table."""
    with open(os.path.join(here, "..", "..", "fuse", "target.c")) as f:
        src = f.read()
    table = src[src.index("} keywords[] = {"):]
    table = table[:table.index("};")]
    return re.findall(r'\{ "(\w+)", OP_', table)


def sshconfig_corpus():
    """fuzz-sshconfig inputs: directive lines (-h host, -u user, -d dir,
    -o option, -F file, -s spec), then the config file (fuzz-sshconfig.c)."""
    c = {
        "empty": "",
        "host-block": "Host fuzzhost\n    HostName real.example.com\n    User alice\n    Port 2222\n",
        "host-patterns": "Host *.example.com !bad.example.com fuzz?ost\n  User u1\nHost *\n  User u2\n",
        "host-negated": "-h bad.example.com\nHost *.example.com !bad.example.com\n  Port 1\n",
        "equals": "Port=2022\nUser = bob\nHostName\t=\treal.example.com\nIdentityFile=~/.ssh/k\n",
        "quotes": 'IdentityFile "~/.ssh/my key" \'/tmp/other key\'\nUser "a\\"b"\n'
                  'UserKnownHostsFile "a b" c\\ d\n',
        "bad-quotes": 'IdentityFile "unterminated\n',
        "comments": "# comment\n   # indented\n\nPort 23 # trailing\n\r\n\t\n",
        "crlf": "Host fuzzhost\r\n  User crlf\r\n  Port 24\r\n",
        "match-host": "Match host fuzzhost,other user root\n  Port 25\nMatch all\n  User x\n",
        "match-originalhost": "-h alias\nHost alias\n  HostName real.example.com\n"
                              "Match originalhost alias host real.example.com\n  Port 26\n",
        "match-negated": "Match !host nothing !localuser nobody\n  Port 27\n",
        "match-final": "Host fuzzhost\n  HostName final.example.com\nMatch final host final.example.com\n"
                       "  Port 28\nMatch canonical\n  User c\n",
        "match-exec": "Match exec \"test %h = fuzzhost\"\n  Port 29\nMatch host x exec false\n  Port 30\n",
        "match-errors": "Match\nMatch all host x\nMatch bogus x\nMatch host\n",
        "match-localuser": "Match localuser root,fuzz user u*\n  Port 31\n",
        "include-system": "Include /etc/ssh/ssh_config\n",
        "include-glob": "Include /etc/ssh/ssh_config.d/*.conf ~/.ssh/config.d/*\n",
        "include-relative": "-h nested\nInclude nested config.d/a\n",
        "include-tilde": "Include ~/.ssh/nested ~fuzz/.ssh/config ~root/x ~nosuch/y\n",
        "include-badperm": "Include ~/.ssh/badperm\n",
        "include-self": "Include /fuzz/config\n",
        "include-in-host": "Host nomatch\n  Include ~/.ssh/config.d/b\nHost *\n  Include /etc/ssh/ssh_config.d/10-fuzz.conf\n",
        "include-dir": "Include /etc/ssh /home\n",
        "include-missing": "Include /nonexistent/* /etc/ssh/nothing\nPort 32\n",
        "proxycommand": "ProxyCommand ssh -W %h:%p %r@bastion # not a comment\n",
        "proxycommand-tokens": "ProxyCommand nc %h %p %n %k %% %r\nHostKeyAlias alias.example\n",
        "proxycommand-bad-token": "ProxyCommand nc %h %z\n",
        "proxyjump": "ProxyJump alice@jump1:2200,ssh://bob@jump2/,[2001:db8::1]:22\n",
        "proxyjump-bad": "ProxyJump @x,:22\n",
        "proxyjump-none": "ProxyJump none\nProxyCommand nc %h %p\n",
        "identity": "IdentityFile ~/.ssh/id_%h_%r_%u_%l_%L_%C_%d_%i_%k_%n_%p\nIdentitiesOnly yes\n"
                    "IdentityFile ${FUZZVAR}/k\nIdentityFile ${NOPE}/k\n",
        "identity-agent": "IdentityAgent ${SSH_AUTH_SOCK}\nIdentityAgent none\n",
        "identity-agent-env": "IdentityAgent $FUZZVAR\n",
        "identity-agent-bad": "IdentityAgent ${\n",
        "known-hosts": "UserKnownHostsFile ~/.ssh/kh1 %d/kh2 /etc/kh_%h\n"
                       "GlobalKnownHostsFile /etc/ssh/ssh_known_hosts none\n"
                       "StrictHostKeyChecking accept-new\nCheckHostIP yes\nHostKeyAlias Mixed.Case\n",
        "known-hosts-none": "UserKnownHostsFile none\nStrictHostKeyChecking off\n",
        "algorithms": "Ciphers aes128-ctr,aes256-gcm@openssh.com\nMACs +hmac-sha1\n"
                      "KexAlgorithms -diffie-hellman*\nHostKeyAlgorithms ^ssh-ed25519,rsa-sha2-*\n",
        "algorithms-bad": "Ciphers nope\n",
        "algorithms-empty": "Ciphers -*\n",
        "kex-bad": "KexAlgorithms +curve25519-sha256,bogus\n",
        "numbers": "ConnectTimeout 1h30m\nServerAliveInterval 15s\nServerAliveCountMax 5\n"
                   "NumberOfPasswordPrompts 0\nPort ssh\n",
        "numbers-bad": "ConnectTimeout 99999999999w\nPort 70000\nServerAliveCountMax -1\n",
        "flags": "BatchMode yes\nCompression yes\nPubkeyAuthentication host-bound\n"
                 "PasswordAuthentication no\nKbdInteractiveAuthentication no\nAddressFamily inet6\n",
        "flags-bad": "BatchMode maybe\n",
        "control": "ControlPath ~/.ssh/cm-%r@%h:%p\nControlPersist 10m\nControlMaster auto\n",
        "control-persist": "ControlPersist yes\nControlPath none\n",
        "ignore-unknown": "IgnoreUnknown Foo*,bar\nFooBar 1\nbar 2\nbaz 3\n",
        "unknown": "NoSuchKeyword yes\n",
        "no-argument": "User\n",
        "extra-args": "Port 22 23\n",
        "deprecated": "Protocol 2\nCipher blowfish\nUseRoaming no\nRSAAuthentication yes\n",
        "other-keywords": "ForwardAgent yes\nSendEnv LANG LC_*\nSetEnv A=b\nLocalForward 80 x:80\n"
                          "RemoteCommand echo hi\nTag t\n",
        "hostname-token": "HostName %h.example.com\nMatch host fuzzhost.example.com\n  Port 33\n",
        "hostname-numeric": "HostName 0:0::1\n",
        "options": "-o Port=2000\n-o User=optuser\n-o sftp_server=/usr/lib/sftp-server\n"
                   "-o password_stdin\n-o Host=x\n-o Include=/etc/ssh/ssh_config\nPort 1\n",
        "options-bad": "-o Port=notaport\n",
        "user-arg": "-u cliuser\n-d /remote/dir\nUser fileuser\n",
        "config-none": "-F none\nPort 34\n",
        "config-system": "-F /etc/ssh/ssh_config\n-h www.example.com\n",
        "config-missing": "-F /nonexistent\n",
        "config-default": "-F -\n-h www.example.com\n",
        "host-arg-odd": "-h Fuzz.Host.\nHost fuzz.host.\n  Port 35\n",
        "host-arg-dash": "-h -oProxyCommand=x\n",
        "host-arg-v6": "-h ::1\nHost ::1\n  Port 36\n",
        "split-simple": "-s user@host:dir\n",
        "split-v6": "-s alice@[2001:db8::1]:/srv\n",
        "split-odd": "-s @host:\n",
        "split-brackets": "-s [a]b]:x\n",
        "split-no-colon": "-s host\n",
        "split-many-at": "-s a@b@c:d:e\n",
        "long-line": "IdentityFile " + "x" * 3000 + "\n",
        "many-identities": "".join("IdentityFile ~/.ssh/k%d\n" % i for i in range(40)),
        "many-known-hosts": "UserKnownHostsFile " + " ".join("/k%d" % i for i in range(40)) + "\n",
    }
    return {k: v.encode() for k, v in c.items()}


def sshconfig_dict(here):
    words = sshconfig_keywords(here) + [
        "Match", "host", "originalhost", "user", "localuser", "exec", "canonical", "final", "all",
        "Include", "/etc/ssh/ssh_config", "/etc/ssh/ssh_config.d/*.conf", "~/.ssh/config",
        "~/.ssh/nested", "~/.ssh/config.d/*", "~/.ssh/badperm", "/fuzz/config", "none", "yes",
        "no", "ask", "accept-new", "inet", "inet6", "any", "host-bound", "%h", "%p", "%r",
        "%C", "%d", "%%", "${FUZZVAR}", "${SSH_AUTH_SOCK}", "ssh://", "fuzzhost",
        "real.example.com", "-h ", "-u ", "-o ", "-F ", "-F -", "-s ", "-d "]
    lines = ["# libFuzzer dictionary for fuzz-sshconfig (written by make-corpus.py)"]
    for i, w in enumerate(words):
        lines.append('w%d="%s"' % (i, w))
    return lines


def write_lines(path, lines):
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


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
             "users-groups-by-id@openssh.com", "errno@hashi", "stat@hashi", "readdir@hashi",
             "setstat@hashi", "open@hashi", "mknod@hashi", "getxattr@hashi", "setxattr@hashi",
             "listxattr@hashi", "removexattr@hashi", "lock@hashi", "fallocate@hashi", "lseek@hashi",
             "user.a", "/file", "/big", "/sparse", "/empty", "/ro", "/noperm",
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
    corpora = {"fuzz-server": server_corpus(), "fuzz-attrs": attrs_corpus(), "fuzz-hattrs": hattrs_corpus(),
               "fuzz-wire": wire_corpus(),
               "fuzz-client": client_corpus(), "fuzz-knownhosts": knownhosts_corpus(),
               "fuzz-sshconfig": sshconfig_corpus()}
    for target, files in corpora.items():
        write_dir(os.path.join(args.out, target), files)
        print("%s: %d files" % (target, len(files)))
    write_dict(os.path.join(here, "fuzz-server.dict"))
    write_lines(os.path.join(here, "fuzz-client.dict"), client_dict())
    write_lines(os.path.join(here, "fuzz-knownhosts.dict"), knownhosts_dict())
    write_lines(os.path.join(here, "fuzz-sshconfig.dict"), sshconfig_dict(here))
    return 0


if __name__ == "__main__":
    sys.exit(main())
