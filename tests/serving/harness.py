"""A real server on 127.0.0.1 for tests: uvicorn in a thread on an ephemeral port."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass

import httpx
import uvicorn


@contextlib.contextmanager
def running(app):
    """Serve ``app`` on a free loopback port until the block ends; yields the base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(60)
        sock.close()


@dataclass
class Served:
    url: str
    keys: dict[str, str]
    app: object
    persona: object

    @property
    def engine(self):
        return self.app.state.serve.engine

    def client(self, key: str | None = "app", **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[key]}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)
