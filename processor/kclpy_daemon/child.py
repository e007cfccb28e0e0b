"""One MultiLang child process: started, spoken to line by line, drained, stopped.

``executableName`` is split on spaces (no shell), as the Java daemon does. Its stdout is read
by a thread into a queue (blank and non-JSON lines skipped); its stderr is drained by another
thread into the structured log, with the shard bound, so a chatty child never blocks on a
full pipe.
"""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

import structlog

from processor.errors import ChildDied, ChildTimedOut
from processor.kclpy_daemon.protocol import encode, parse_line

__all__ = ["Child", "ChildDied", "ChildTimedOut"]

log = structlog.get_logger()

_EOF = object()
#: the longest piece of newline-less stderr output logged as one event
STDERR_PIECE = 4000


class Child:
    def __init__(
        self,
        command: Sequence[str],
        *,
        shard_id: str,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        self.shard_id = shard_id
        self.command = list(command)
        self._process = subprocess.Popen(  # noqa: S603 - the operator's executableName
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
        )
        self._lines: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._readers = [
            threading.Thread(target=self._read_stdout, name=f"kcl-out-{shard_id}", daemon=True),
            threading.Thread(target=self._drain_stderr, name=f"kcl-err-{shard_id}", daemon=True),
        ]
        for thread in self._readers:
            thread.start()
        log.info("multilang_child_started", shard_id=shard_id, pid=self._process.pid)

    @property
    def pid(self) -> int:
        return self._process.pid

    def alive(self) -> bool:
        return self._process.poll() is None

    def _read_stdout(self) -> None:
        stdout: IO[bytes] | None = self._process.stdout
        assert stdout is not None
        for line in stdout:
            message = parse_line(line)
            if message is not None:
                self._lines.put(message)
            elif line.strip():
                log.info(
                    "multilang_child_stdout_skipped",
                    shard_id=self.shard_id,
                    line=line.decode(errors="replace").rstrip()[:500],
                )
        self._lines.put(_EOF)

    def _drain_stderr(self) -> None:
        """Log the child's stderr line by line; output without newlines (AWS's sample writes
        none) goes out in pieces of at most STDERR_PIECE characters, never dropped."""
        stderr: IO[bytes] | None = self._process.stderr
        assert stderr is not None
        pending = b""
        while chunk := os.read(stderr.fileno(), 65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            while len(pending) >= STDERR_PIECE:
                lines.append(pending[:STDERR_PIECE])
                pending = pending[STDERR_PIECE:]
            for line in lines:
                self._log_stderr(line)
        self._log_stderr(pending)

    def _log_stderr(self, line: bytes) -> None:
        text = line.decode(errors="replace").rstrip()
        if text:
            log.warning("multilang_child_stderr", shard_id=self.shard_id, line=text)

    def send(self, message: dict[str, Any]) -> None:
        stdin = self._process.stdin
        assert stdin is not None
        try:
            stdin.write(encode(message))
            stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as exc:
            raise ChildDied(f"cannot write to the child: {exc}") from exc

    def receive(
        self, timeout_s: float | None, stop: threading.Event | None = None
    ) -> dict[str, Any]:
        """The child's next message; ChildDied at EOF, ChildTimedOut after ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
            try:
                item = self._lines.get(timeout=wait)
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise ChildTimedOut(
                        f"no answer from the child within {timeout_s:g} s"
                    ) from None
                continue
            if item is _EOF:
                code = self._process.wait()
                raise ChildDied(f"the child exited with status {code}")
            return item  # type: ignore[no-any-return]

    def close(self, grace_s: float = 5.0) -> int | None:
        """Close stdin (the child's ``run()`` ends at EOF), wait ``grace_s``, then kill."""
        stdin = self._process.stdin
        if stdin is not None and not stdin.closed:
            with contextlib.suppress(OSError):
                stdin.close()
        try:
            code = self._process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            code = self._process.wait()
        for thread in self._readers:
            thread.join(timeout=2)
        log.info("multilang_child_ended", shard_id=self.shard_id, status=code)
        return code

    def kill(self) -> None:
        if self.alive():
            self._process.kill()
        self.close(grace_s=2)


#: how a child is started (tests can substitute a function that records the command)
ChildFactory = Callable[[Sequence[str], str], Child]
