"""The real server as a child process on 127.0.0.1, for `bench serve` and the tests.

`ServerProcess` starts `python -m recsys_pref.service` on a free local port with the given
keys in its environment, waits (bounded) until /healthz answers, and stops it either politely
(SIGTERM, then SIGKILL after a grace period) or at once with `kill()` (SIGKILL, what the
durability test does mid-burst).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import httpx

from recsys_pref.service.auth import API_KEYS_ENV

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


class ServerProcess:
    """model_dir, store_url: the server's --model and --store; keys: API keys (none: the server
    runs with --insecure-no-auth); extra: more command-line options; log: file for its output."""

    def __init__(self, model_dir: Path, store_url: str, keys: Sequence[str] = (), extra: Sequence[str] = (),
                 log: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        command = [sys.executable, "-m", "recsys_pref.service", "--model", str(model_dir), "--store", store_url,
                   "--host", HOST, "--port", str(self.port), *extra]
        if not keys:
            command.append("--insecure-no-auth")
        environment = os.environ | {API_KEYS_ENV: ",".join(keys), "PYTHONUNBUFFERED": "1"}
        self.log = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed in stop()/kill()
        self.process = subprocess.Popen(command, env=environment, stdout=self.log, stderr=self.log)

    def wait_healthy(self, timeout_s: float = 120.0) -> None:
        """Poll /healthz until it answers 200; RuntimeError if the process exits or time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with status {self.process.returncode} before it was healthy")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the server did not answer /healthz within {timeout_s:.0f} s")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self._close_log()

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it is still running after `grace_s`."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self._close_log()

    def _close_log(self) -> None:
        if self.log is not subprocess.DEVNULL:
            self.log.close()
            self.log = subprocess.DEVNULL

    def __enter__(self) -> "ServerProcess":
        self.wait_healthy()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
