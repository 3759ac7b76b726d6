"""Start and stop a real OpenAI-compatible server on loopback: `python -m llama_cpp.server`.

`llama_cpp_server(model)` runs llama-cpp-python's server (the `server` extra: fastapi,
uvicorn, sse-starlette, starlette-context, pydantic-settings) on 127.0.0.1 with a free
port, waits until `/v1/models` answers, and always stops it (terminate, then kill).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

STARTUP_TIMEOUT = 90.0


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_available() -> bool:
    """Whether llama-cpp-python's server extra is installed."""
    import importlib.util

    return all(
        importlib.util.find_spec(m) is not None for m in ("fastapi", "uvicorn", "sse_starlette")
    )


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    model_id: str
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def ref(self) -> str:
        return f"openai:{self.base_url}#{self.model_id}"

    def kill(self) -> None:
        """SIGKILL the server (a crash, as far as clients can tell) and reap it."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def start_server(
    model: Path,
    log_dir: Path,
    *,
    port: int | None = None,
    api_key: str | None = None,
    n_ctx: int = 512,
    interrupt_requests: bool = True,
) -> ServerProcess:
    """Start `python -m llama_cpp.server` for `model`; return once it serves requests."""
    port = port or free_port()
    log = log_dir / f"llama-server-{port}.log"
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        "1",
        "--n_threads_batch",
        "1",
        "--verbose",
        "False",
        # True (its default): a waiting request makes the server end the running stream.
        "--interrupt_requests",
        str(interrupt_requests),
    ]
    if api_key:
        command += ["--api_key", api_key]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = ServerProcess(process, port, str(model), log)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited at start:\n{log.read_text()[-3000:]}")
        try:
            request = urllib.request.Request(f"{server.base_url}/models", headers=headers)
            with urllib.request.urlopen(request, timeout=2) as response:
                listing = json.load(response)
            server.model_id = str(listing["data"][0]["id"])
            return server
        except (OSError, urllib.error.URLError, ValueError, KeyError) as error:
            if time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(
                    f"llama_cpp.server did not start:\n{log.read_text()[-3000:]}"
                ) from error
            time.sleep(0.2)


@contextlib.contextmanager
def llama_cpp_server(model: Path, log_dir: Path, **options: object) -> Iterator[ServerProcess]:
    """A running server for the duration of the block."""
    server = start_server(model, log_dir, **options)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()
