"""A real WebSocket peer (PyPI `websockets`) for the tunnel tests.

  ws_peer.py server LOG   echo server on a free loopback port; prints
                          {"port": N}; appends each handshake's path and
                          Authorization/Origin headers to LOG as JSON lines;
                          refuses a handshake without Authorization (401).
  ws_peer.py client URL   echo of a text and a 4 MiB binary message, then
                          the close handshake; prints what it saw as JSON.
  ws_peer.py idle URL     connects and waits; prints how long until the
                          connection was closed.
"""
import asyncio
import json
import os
import sys
import time

from websockets.asyncio.server import serve
from websockets.sync.client import connect
from websockets.exceptions import ConnectionClosed


async def server(log_path):
    def check(connection, request):
        with open(log_path, "a") as log:
            log.write(json.dumps({
                "path": request.path,
                "authorization": request.headers.get("Authorization"),
                "origin": request.headers.get("Origin"),
            }) + "\n")
        if not request.headers.get("Authorization"):
            return connection.respond(401, "no credential\n")
        return None

    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    async with serve(echo, "127.0.0.1", 0, process_request=check, max_size=None) as s:
        port = s.sockets[0].getsockname()[1]
        print(json.dumps({"port": port}), flush=True)
        await asyncio.get_running_loop().create_future()


def client(url):
    out = {}
    # Without permessage-deflate, so the 4 MiB really cross the tunnel.
    with connect(url, max_size=None, compression=None, open_timeout=10, close_timeout=10) as ws:
        ws.send("hello through the proxy")
        out["text"] = ws.recv(timeout=10)
        big = os.urandom(4 * 1024 * 1024)
        ws.send(big)
        out["large_echoed"] = ws.recv(timeout=30) == big
        ws.close(code=1000, reason="done")
        out["close_code"] = ws.close_code
        out["close_rcvd"] = ws.protocol.close_rcvd is not None
    print(json.dumps(out), flush=True)


def idle(url):
    started = time.monotonic()
    with connect(url, open_timeout=10) as ws:
        try:
            ws.recv(timeout=30)
            print(json.dumps({"closed_after": None}), flush=True)
        except ConnectionClosed:
            print(json.dumps({"closed_after": time.monotonic() - started}), flush=True)
        except TimeoutError:
            print(json.dumps({"closed_after": None}), flush=True)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "server":
        asyncio.run(server(sys.argv[2]))
    elif mode == "client":
        client(sys.argv[2])
    else:
        idle(sys.argv[2])
