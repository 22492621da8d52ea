#!/usr/bin/python3
"""Side-by-side benchmark: hashi-sftp-server vs OpenSSH's sftp-server.

Both servers are driven by the real OpenSSH `sftp` client in `-D` mode (no
ssh, the client talks to the server over pipes), with the backing store and
the local side of every transfer on tmpfs (/dev/shm).  For each operation

  * get of a SIZE file                  (client defaults)
  * put of a SIZE file                  (client defaults)
  * `ls -l` of a directory of FILES files (client defaults, output to /dev/null)
  * get / put again with `-B 261120 -R 64` (unless --no-tuned)

it measures the server process's CPU time (user+sys, from wait4() rusage of
the server child, see rusage_wrap.py) and the wall time of the whole sftp
session.  Runs are interleaved (A B, then B A, ...) so drift hits both
servers.  Each figure is the MEDIAN over --repeat runs (CPU and wall are
medians taken independently).

Target (from the issue): hashi CPU <= 0.7 x OpenSSH CPU, hashi wall <= OpenSSH
wall.  The exit status is 0 whatever the figures are (benchmarks never fail
the suite) unless --check is given; it is 1 if a transfer fails or returns
wrong data, 77 (meson "skip") if a server binary is missing.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WRAP = os.path.join(HERE, "rusage_wrap.py")
PY = "/usr/bin/python3"
# -B 262144 cannot work: a 262144-byte WRITE packet exceeds the 256 KiB SFTP
# message limit and the client aborts ("Outbound message too long"); 261120 is
# the largest read/write OpenSSH's server advertises in limits@openssh.com.
TUNED = ["-B", "261120", "-R", "64"]
CHUNK = 8 << 20
STATS = {"median": statistics.median, "min": min}


class BenchError(Exception):
    pass


def parse_size(s):
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(i?B?)\s*", s, re.I)
    if not m:
        raise argparse.ArgumentTypeError("bad size %r (e.g. 1GiB, 64MiB, 4096)" % s)
    n = int(m.group(1))
    unit = m.group(2).upper()
    return n << {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[unit]


def human(n):
    for shift, name in ((30, "GiB"), (20, "MiB"), (10, "KiB")):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return "%d %s" % (n >> shift, name)
    return "%d B" % n


def make_data_file(path, size):
    """Incompressible, non-repeating content (so misplaced chunks are caught)."""
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(CHUNK, left)
            f.write(os.urandom(n))
            left -= n


def same_content(a, b):
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x = fa.read(CHUNK)
            if x != fb.read(CHUNK):
                return False
            if not x:
                return True


def remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class Bench:
    def __init__(self, args, work):
        self.args = args
        self.work = work
        self.remote = os.path.join(work, "remote")
        self.local = os.path.join(work, "local")
        os.mkdir(self.remote)
        os.mkdir(self.local)
        self.src = os.path.join(self.remote, "src.bin")      # get source
        self.lsdir = os.path.join(self.remote, "dir")        # ls -l target
        self.putdst = os.path.join(self.remote, "put.bin")   # put destination
        self.putsrc = os.path.join(self.local, "in.bin")     # put source
        self.getdst = os.path.join(self.local, "get.bin")    # get destination
        self.batch = os.path.join(work, "batch")
        self.rusage = os.path.join(work, "rusage.json")
        self.counter = 0

    def prepare(self):
        a = self.args
        make_data_file(self.src, a.size)
        shutil.copyfile(self.src, self.putsrc)
        os.mkdir(self.lsdir)
        width = len(str(a.files))
        for i in range(a.files):
            with open(os.path.join(self.lsdir, "f%0*d" % (width, i)), "wb") as f:
                f.write(b"x" * (i % 97))

    def run_sftp(self, server, command, client_opts, stdout=subprocess.DEVNULL):
        with open(self.batch, "w") as f:
            f.write(command + "\n")
        remove(self.rusage)
        dcmd = " ".join([PY, "-I", "-S", WRAP, self.rusage, server] + self.args.server_args)
        argv = [self.args.sftp, "-q", "-b", self.batch] + client_opts + ["-D", dcmd]
        t0 = time.monotonic()
        p = subprocess.run(argv, cwd=self.work, stdin=subprocess.DEVNULL,
                           stdout=stdout, stderr=subprocess.PIPE)
        wall = time.monotonic() - t0
        if p.returncode != 0:
            raise BenchError("%s: %r failed (exit %d): %s" % (
                server, command, p.returncode, p.stderr.decode(errors="replace").strip()))
        try:
            with open(self.rusage) as f:
                ru = json.load(f)
        except (OSError, ValueError) as e:
            raise BenchError("%s: no rusage record (%s)" % (server, e))
        ru["wall"] = wall
        return ru

    def one(self, op, server, client_opts):
        """One timed run of op against server; verifies the result."""
        if op == "get":
            remove(self.getdst)
            ru = self.run_sftp(server, "get %s %s" % (self.src, self.getdst), client_opts)
            ok = same_content(self.src, self.getdst)
            remove(self.getdst)
        elif op == "put":
            remove(self.putdst)
            ru = self.run_sftp(server, "put %s %s" % (self.putsrc, self.putdst), client_opts)
            ok = same_content(self.putsrc, self.putdst)
            remove(self.putdst)
        elif op == "ls":
            ru = self.run_sftp(server, "ls -l %s" % self.lsdir, client_opts)
            ok = True
        else:
            raise AssertionError(op)
        if not ok:
            raise BenchError("%s: %s transferred wrong data" % (server, op))
        return ru

    def verify_ls(self, server):
        """Untimed warm-up: `ls -l` must list every file with its size."""
        out = os.path.join(self.work, "ls.out")
        with open(out, "wb") as f:
            self.run_sftp(server, "ls -l %s" % self.lsdir, [], stdout=f)
        n = 0
        with open(out, errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 9 and fields[0].startswith("-"):
                    name = os.path.basename(fields[-1])
                    if name.startswith("f") and int(fields[4]) == int(name[1:]) % 97:
                        n += 1
        os.unlink(out)
        if n != self.args.files:
            raise BenchError("%s: ls -l listed %d of %d files correctly" % (server, n, self.args.files))

    def run(self):
        a = self.args
        servers = [("openssh", a.openssh), ("hashi", a.hashi)]
        ops = [(op, []) for op in ("get", "put", "ls") if op in a.ops]
        if not a.no_tuned:
            ops += [(op, TUNED) for op in ("get", "put") if op in a.ops]
        # Untimed warm-up: checks ls -l output, and one get and put per
        # server so first-touch effects (binary loading, tmpfs page
        # allocation) do not land on the first timed sample.
        for _, path in servers:
            self.verify_ls(path)
            for op in ("get", "put"):
                if op in a.ops:
                    self.one(op, path, [])
        samples = {}
        for rep in range(a.repeat):
            for op, opts in ops:
                order = servers if self.counter % 2 == 0 else servers[::-1]
                self.counter += 1
                for name, path in order:
                    ru = self.one(op, path, opts)
                    samples.setdefault((op, tuple(opts)), {}).setdefault(name, []).append(ru)
                    if a.verbose:
                        print("  rep %d %-4s %-22s %-7s cpu %.3f (u %.3f s %.3f) wall %.3f" % (
                            rep + 1, op, " ".join(opts) or "defaults", name,
                            ru["cpu"], ru["utime"], ru["stime"], ru["wall"]), flush=True)
        return ops, samples


def label(op, opts, args):
    what = {"get": "get " + human(args.size), "put": "put " + human(args.size),
            "ls": "ls -l %d files" % args.files}[op]
    return what + (" " + " ".join(opts) if opts else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default="./build",
                    help="meson build directory (default ./build)")
    ap.add_argument("--hashi", help="our server (default <build-dir>/sftp-server/hashi-sftp-server)")
    ap.add_argument("--openssh", default="/usr/lib/openssh/sftp-server",
                    help="reference server (default %(default)s)")
    ap.add_argument("--sftp", default="/usr/bin/sftp", help="sftp client (default %(default)s)")
    ap.add_argument("--size", type=parse_size, help="transfer size (default 1GiB)")
    ap.add_argument("--files", type=int, help="files in the ls -l directory (default 10000)")
    ap.add_argument("--repeat", type=int, help="runs per server and operation; the median is kept (default 3)")
    ap.add_argument("--stat", choices=sorted(STATS), default="median",
                    help="statistic over the repeats, per server and figure (default median)")
    ap.add_argument("--ops", default="get,put,ls",
                    help="comma-separated subset of get,put,ls (default all)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 64MiB, 1000 files, 1 repeat")
    ap.add_argument("--no-tuned", action="store_true", help="skip the -B 261120 -R 64 get/put runs")
    ap.add_argument("--server-args", default="", help="extra arguments for both servers (space separated)")
    ap.add_argument("--workdir", default="/dev/shm", help="tmpfs directory for the data (default %(default)s)")
    ap.add_argument("--json", metavar="FILE", help="write every sample to FILE")
    ap.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    ap.add_argument("--cpu-target", type=float, default=0.7, help="max CPU ratio hashi/OpenSSH (default 0.7)")
    ap.add_argument("--wall-slack", type=float, default=0.0,
                    help="allowed wall ratio above 1.0 for --check (default 0: no worse)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every sample")
    a = ap.parse_args()

    quick = {"size": 64 << 20, "files": 1000, "repeat": 1}
    full = {"size": 1 << 30, "files": 10000, "repeat": 3}
    for k, v in (quick if a.quick else full).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.repeat < 1 or a.files < 1 or a.size < 1:
        ap.error("--repeat, --files and --size must be positive")
    if a.hashi is None:
        a.hashi = os.path.join(a.build_dir, "sftp-server", "hashi-sftp-server")
    a.hashi = os.path.abspath(a.hashi)
    a.server_args = a.server_args.split()
    a.ops = set(a.ops.split(","))
    if not a.ops or not a.ops <= {"get", "put", "ls"}:
        ap.error("--ops takes a comma-separated subset of get,put,ls")
    for p in (a.hashi, a.openssh, a.sftp):
        if not os.access(p, os.X_OK):
            print("SKIP: %s is not an executable" % p, file=sys.stderr)
            return 77
    for p in [a.hashi, a.openssh, WRAP] + a.server_args:
        if re.search(r"[\s\"'\\]", p):
            print("error: %r: sftp -D splits on whitespace; use a path without spaces or quotes" % p,
                  file=sys.stderr)
            return 2

    work = tempfile.mkdtemp(prefix="hashi-bench-", dir=a.workdir)
    try:
        fs = subprocess.run(["stat", "-f", "-c", "%T", work], capture_output=True, text=True).stdout.strip()
        print("hashi-sftp-server vs OpenSSH sftp-server")
        print("  command : %s" % " ".join([PY] + sys.argv))
        print("  hashi   : %s" % a.hashi)
        print("  openssh : %s" % a.openssh)
        print("  data    : %s (%s); transfer %s, ls -l of %d files" % (work, fs, human(a.size), a.files))
        print("  method  : sftp -b BATCH [opts] -D server; server CPU = user+sys from wait4();")
        print("            wall = whole sftp session; %s of %d interleaved run(s) per server"
              % (a.stat, a.repeat), flush=True)
        b = Bench(a, work)
        t0 = time.monotonic()
        b.prepare()
        print("  prepared in %.1f s" % (time.monotonic() - t0), flush=True)
        try:
            ops, samples = b.run()
        except BenchError as e:
            print("ERROR: %s" % e, file=sys.stderr)
            return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows, missed = [], []
    for op, opts in ops:
        s = samples[(op, tuple(opts))]
        med = {n: {k: STATS[a.stat](r[k] for r in s[n]) for k in ("cpu", "utime", "stime", "wall")}
               for n in ("openssh", "hashi")}
        cr = med["hashi"]["cpu"] / med["openssh"]["cpu"] if med["openssh"]["cpu"] > 0 else float("inf")
        wr = med["hashi"]["wall"] / med["openssh"]["wall"]
        verdict = []
        if cr > a.cpu_target:
            verdict.append("CPU")
        if wr > 1.0 + a.wall_slack:
            verdict.append("wall")
        if verdict:
            missed.append(label(op, opts, a))
        rows.append((label(op, opts, a), med, cr, wr, "MISS " + "+".join(verdict) if verdict else "ok"))

    w = max(len(r[0]) for r in rows + [("operation",)])
    hdr = "%-*s  %11s %9s %9s  %11s %9s %9s  %s" % (
        w, "operation", "OpenSSH CPU", "hashi CPU", "CPU ratio",
        "OpenSSH wall", "hashi wall", "wall ratio", "target")
    print()
    print(hdr)
    print("-" * len(hdr))
    for name, med, cr, wr, verdict in rows:
        print("%-*s  %10.3fs %8.3fs %9.2f  %11.3fs %8.3fs %10.2f  %s" % (
            w, name, med["openssh"]["cpu"], med["hashi"]["cpu"], cr,
            med["openssh"]["wall"], med["hashi"]["wall"], wr, verdict))
    print()
    print("CPU split (median user / sys, s):")
    for name, med, _, _, _ in rows:
        print("  %-*s  openssh %7.3f / %7.3f   hashi %7.3f / %7.3f" % (
            w, name, med["openssh"]["utime"], med["openssh"]["stime"],
            med["hashi"]["utime"], med["hashi"]["stime"]))
    print()
    print("target: CPU ratio <= %.2f, wall ratio <= %.2f; %s" % (
        a.cpu_target, 1.0 + a.wall_slack,
        "all met" if not missed else "missed: " + "; ".join(missed)))

    if a.json:
        with open(a.json, "w") as f:
            json.dump({"stat": a.stat, "size": a.size, "files": a.files, "repeat": a.repeat,
                       "hashi": a.hashi, "openssh": a.openssh,
                       "samples": [{"op": op, "client_opts": list(opts), "server": n, **r}
                                   for (op, opts), d in samples.items()
                                   for n, rs in d.items() for r in rs]}, f, indent=1)
    return 1 if (a.check and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
