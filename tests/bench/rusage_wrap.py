#!/usr/bin/python3 -IS
"""Run an SFTP server as a child and record the child's exact resource usage.

Usage (as the command given to `sftp -D`):
    /usr/bin/python3 -I -S rusage_wrap.py OUTFILE SERVER [ARGS...]

The server is fork+exec'd with this process's stdin/stdout (the pipes from
the sftp client), so it talks to the client directly; this wrapper only waits.
When the server exits, os.wait4() gives the rusage of that child alone (user
and system CPU of the server plus any children *it* reaped, never this
wrapper's own CPU), which is written to OUTFILE as one JSON object.  The
wrapper exits with the server's exit status so the client sees the same thing.
"""
import json
import os
import sys
import time


def main():
    if len(sys.argv) < 3:
        sys.stderr.write("usage: rusage_wrap.py OUTFILE SERVER [ARGS...]\n")
        return 2
    outfile, argv = sys.argv[1], sys.argv[2:]
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(argv[0], argv)
        except OSError as e:
            os.write(2, ("rusage_wrap: exec %s: %s\n" % (argv[0], e)).encode())
        os._exit(127)
    # The server holds the client pipes now; drop our copies so the client
    # sees EOF as soon as the server closes its end.
    fd = os.open(os.devnull, os.O_RDWR)
    os.dup2(fd, 0)
    os.dup2(fd, 1)
    os.close(fd)
    while True:
        try:
            _, status, ru = os.wait4(pid, 0)
            break
        except InterruptedError:
            continue
    elapsed = time.monotonic() - start
    rec = {
        "utime": ru.ru_utime,
        "stime": ru.ru_stime,
        "cpu": ru.ru_utime + ru.ru_stime,
        "maxrss_kib": ru.ru_maxrss,
        "minflt": ru.ru_minflt,
        "majflt": ru.ru_majflt,
        "nvcsw": ru.ru_nvcsw,
        "nivcsw": ru.ru_nivcsw,
        "server_elapsed": elapsed,
        "status": status,
    }
    tmp = outfile + ".tmp"
    with open(tmp, "w") as f:
        json.dump(rec, f)
    os.rename(tmp, outfile)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 128 + os.WTERMSIG(status)


if __name__ == "__main__":
    sys.exit(main())
