#!/usr/bin/env python3
"""A modelled wide-area link in front of a loopback registry (issue 18, item 3).

    python3 bench/wan_proxy.py --rtt-ms 50 LISTEN_PORT TARGET_HOST:PORT [LISTEN_PORT TARGET ...]

A plain TCP forwarder (the bench's registries speak plain HTTP on loopback, so nothing needs to
be understood): every byte crossing it in either direction is delivered RTT/2 after it arrived,
in order, and every new connection is held one RTT before the first byte is accepted from the
client — the SYN/SYN-ACK of a real link. A request and its answer thus cost one RTT, a new
connection one more, which is what a client talking to a registry a continent away pays;
bandwidth is not limited (the cases it serves are request-bound). Prints "ready" once every
port listens, then "connect PORT" for each connection accepted; runs until killed. Pairs of LISTEN_PORT TARGET may repeat (one proxy for A and
B). Python stdlib only.
"""
import argparse
import asyncio
import sys
import time

CHUNK = 256 * 1024


async def pipe(reader, writer, delay):
    """Copies reader to writer, each chunk delivered `delay` seconds after it was read. A
    queue and a second task keep the stream moving while earlier chunks wait, so a burst is
    delayed, not serialised."""
    queue = asyncio.Queue()

    async def deliver():
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is None:
                break
            writer.write(data)
            await writer.drain()
        try:
            writer.write_eof()
        except (OSError, RuntimeError):
            pass

    task = asyncio.ensure_future(deliver())
    try:
        while True:
            data = await reader.read(CHUNK)
            queue.put_nowait((time.monotonic() + delay, data or None))
            if not data:
                break
        await task
    except (ConnectionError, OSError):
        task.cancel()


async def handle(client_r, client_w, listen, target, rtt):
    # One line per connection, so that the bench can count the connections a run opened.
    print("connect %s" % listen, flush=True)
    # The handshake of a real link: the client's first byte goes nowhere for one RTT.
    await asyncio.sleep(rtt)
    host, port = target
    try:
        up_r, up_w = await asyncio.open_connection(host, port)
    except OSError:
        client_w.close()
        return
    try:
        await asyncio.gather(pipe(client_r, up_w, rtt / 2), pipe(up_r, client_w, rtt / 2))
    finally:
        for w in (up_w, client_w):
            try:
                w.close()
            except OSError:
                pass


async def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rtt-ms", type=float, required=True, help="round-trip time to model, milliseconds")
    ap.add_argument("pairs", nargs="+", help="LISTEN_PORT HOST:PORT, repeated")
    args = ap.parse_args()
    if len(args.pairs) % 2:
        sys.exit("wan_proxy.py: give LISTEN_PORT TARGET pairs, e.g. 6000 127.0.0.1:5000")
    rtt = args.rtt_ms / 1000.0
    servers = []
    for listen, target in zip(args.pairs[::2], args.pairs[1::2]):
        host, _, port = target.rpartition(":")
        t = (host or "127.0.0.1", int(port))
        servers.append(await asyncio.start_server(
            lambda r, w, t=t, l=listen: handle(r, w, l, t, rtt), "127.0.0.1", int(listen)))
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
