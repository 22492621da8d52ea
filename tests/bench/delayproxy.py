#!/usr/bin/python3
"""A TCP proxy that adds a fixed one-way delay in both directions.

    delayproxy.py --target HOST:PORT [--listen HOST:PORT] [--delay-ms 10]

Every chunk read from one side is stamped with the time it arrived and is
written to the other side when that time plus the delay has come, so a
10 ms one-way delay gives a 20 ms round trip.  Throughput is not limited:
any number of chunks are in flight at once (up to --max-buffer bytes per
direction, after which the proxy stops reading that side until the queue
drains, so memory stays bounded).  This stands in for netem, which the
kernels here lack.

Once it listens it prints "PORT" (the port it listens on) on a line of its
own on standard output, so `--listen 127.0.0.1:0` picks a free port.  It
runs until killed (SIGTERM or SIGINT).
"""
import argparse
import asyncio
import collections
import signal
import socket
import sys

CHUNK = 256 * 1024


def hostport(s):
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT, got %r" % s)
    return host or "127.0.0.1", int(port)


class Pipe:
    """One direction: read chunks from reader, write each when it is due."""

    def __init__(self, reader, writer, delay, max_buffer):
        self.reader = reader
        self.writer = writer
        self.delay = delay
        self.max_buffer = max_buffer
        self.queue = collections.deque()  # (due, bytes); b"" = end of stream
        self.queued = 0
        self.have_data = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()

    async def pump_in(self):
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self.room.wait()
                data = await self.reader.read(CHUNK)
                self.queue.append((loop.time() + self.delay, data))
                self.have_data.set()
                if not data:
                    return
                self.queued += len(data)
                if self.queued >= self.max_buffer:
                    self.room.clear()
        except (ConnectionError, OSError):
            self.queue.append((loop.time(), None))  # reset: close at once
            self.have_data.set()

    async def pump_out(self):
        loop = asyncio.get_running_loop()
        try:
            while True:
                while not self.queue:
                    self.have_data.clear()
                    await self.have_data.wait()
                due, data = self.queue[0]
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                self.queue.popleft()
                if data is None:
                    break
                if not data:
                    if self.writer.can_write_eof():
                        self.writer.write_eof()
                    return
                self.writer.write(data)
                self.queued -= len(data)
                if self.queued < self.max_buffer:
                    self.room.set()
                await self.writer.drain()
        except (ConnectionError, OSError):
            pass
        # the other side is gone or reset: stop everything on this connection
        self.writer.transport.abort()


async def handle(client_r, client_w, args):
    try:
        server_r, server_w = await asyncio.open_connection(*args.target)
    except OSError as e:
        print("delayproxy: connect to %s:%d: %s" % (args.target[0], args.target[1], e),
              file=sys.stderr)
        client_w.transport.abort()
        return
    for w in (client_w, server_w):
        sock = w.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    delay = args.delay_ms / 1000.0
    up = Pipe(client_r, server_w, delay, args.max_buffer)
    down = Pipe(server_r, client_w, delay, args.max_buffer)
    tasks = [asyncio.create_task(c) for c in (up.pump_in(), up.pump_out(),
                                              down.pump_in(), down.pump_out())]
    await asyncio.gather(*tasks, return_exceptions=True)
    for w in (client_w, server_w):
        w.close()


async def main_async(args):
    server = await asyncio.start_server(lambda r, w: handle(r, w, args), *args.listen,
                                        limit=CHUNK * 4)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", type=hostport, required=True, help="where to forward (HOST:PORT)")
    ap.add_argument("--listen", type=hostport, default=("127.0.0.1", 0),
                    help="where to listen (default 127.0.0.1:0, a free port)")
    ap.add_argument("--delay-ms", type=float, default=10.0,
                    help="one-way delay in each direction (default 10: a 20 ms round trip)")
    ap.add_argument("--max-buffer", type=int, default=64 << 20,
                    help="bytes queued per direction before reading pauses (default 64 MiB)")
    args = ap.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
