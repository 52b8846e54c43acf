"""Start ``persona serve`` as a child process and wait until it is healthy (for tests,
benchmarks and supervisors that manage the process themselves)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ENTRY = "from persona_sdk.cli.main import run\nrun()\n"  # `persona`, by this interpreter


def persona_command(*args: str) -> list[str]:
    """The argv of ``persona ARGS…`` run by this interpreter."""
    return [sys.executable, "-c", ENTRY, *args]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn(data: str | Path, options: Sequence[str] = (), serve_options: Sequence[str] = (),
          timeout: float = 300) -> tuple[subprocess.Popen, str]:  # fmt: skip
    """Run ``persona --data DATA OPTIONS serve --port P SERVE_OPTIONS`` on 127.0.0.1;
    return the process (stdout and stderr piped together) and its base URL once
    ``/health`` answers 200."""
    import httpx

    port = free_port()
    argv = persona_command("--data", str(data), *options, "serve", "--port", str(port),
                           *serve_options)  # fmt: skip
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"persona serve exited: {proc.stdout.read().decode()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("persona serve did not become healthy in time")
