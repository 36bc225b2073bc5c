"""Child processes of the benchmark and what the kernel says about them.

CPU time and resident memory are read from /proc, never from inside the measured process,
so Daphne runs exactly as in production (no profiler, no extra thread).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var" / "bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen[Any], log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited early:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {seconds} s")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name may contain spaces: the numeric fields start after its ")".
    fields = stat.rsplit(")", 1)[1].split()
    # Fields 14 and 15 of proc(5); the list starts at field 3.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


class Server:
    """A long-running child listening on a port: the fake gateway or Daphne."""

    def __init__(self, name: str, args: list[str], port: int, env: dict[str, str]) -> None:
        self.name = name
        self.port = port
        self.log_path = VAR / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        wait_for_port(port, self.process, self.log_path, 60)

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()


def start_gateway(env: dict[str, str], token_delay: float) -> Server:
    port = free_port()
    args = [sys.executable, "manage.py", "fakegateway", "--port", str(port), "--stamp"]
    args += ["--token-delay", str(token_delay)]
    return Server("gateway", args, port, env)


def start_daphne(env: dict[str, str], application: str, name: str) -> Server:
    port = free_port()
    args = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), application]
    return Server(name, args, port, env)


class Worker:
    """A load-generating child that speaks one JSON line at a time.

    It prints `{"ready": ...}` once set up (imports done, sockets open), waits for "go" on
    stdin, prints its result, and exits when stdin closes. Set-up cost therefore stays out
    of the measured window.
    """

    def __init__(self, module: str, job: dict[str, Any], env: dict[str, str]) -> None:
        self.job_path = VAR / f"job-{module.rsplit('.', 1)[-1]}.json"
        self.job_path.write_text(json.dumps(job))
        self.log_path = VAR / f"{module.rsplit('.', 1)[-1]}.log"
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, str(self.job_path)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        assert self.process.stdout is not None
        threading.Thread(target=self._pump, args=(self.process.stdout,), daemon=True).start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def read(self, timeout: float) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"{self.process.args} said nothing for {timeout} s") from None
        if line is None:
            raise RuntimeError(f"worker exited: {self.log_path.read_text()[-3000:]}")
        return json.loads(line)

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self._log.close()
