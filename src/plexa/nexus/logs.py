"""The run's merged log: records and captured output of every actor, in time order, in one file.

Actors send ``logging`` records over the control channel; what they print arrives on their
stdout/stderr pipes. Records from different processes arrive slightly out of order, so each
is held for :data:`REORDER_S` and written sorted by the time it was made. A log that cannot
be written (a full disk) loses lines, counted, never the run.
"""

from __future__ import annotations

import collections
import errno
import heapq
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from plexa.core import messages as msgs
from plexa.core.paths import open_private
from plexa.errors import UnsafePath

__all__ = ["LEVELS", "REORDER_S", "LogMerger", "format_log"]

REORDER_S = 0.1
"""How long records are held so that records from several processes merge in order."""
LEVELS = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}
"""Level numbers (``logging``'s) and the names every edge shows."""
STDOUT_LEVEL = 20
STDERR_LEVEL = 30

LogSink = Callable[[str, msgs.LogRecord], None]
Emit = Callable[[str, dict[str, Any]], None]


def format_log(entry: dict[str, Any]) -> str:
    """One log line: time, actor, level, logger, message."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry["t"]))
    millis = int((entry["t"] % 1) * 1000)
    level = LEVELS.get(entry["level"], str(entry["level"]))
    return f"{stamp}.{millis:03d} {entry['actor']} {level} {entry['logger']}: {entry['message']}"


class LogMerger:
    """Collects records and pipe output, writes them in time order, tells the listeners."""

    def __init__(self, path: Path, emit: Emit, sink: LogSink | None = None) -> None:
        self.path = path
        """The merged log file (created on the first line)."""
        self.recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=200)
        """The last lines, for late clients."""
        self.dropped = 0
        """Lines that could not be written (full disk); they still reach listeners."""
        self._emit = emit
        self._sink = sink
        self._file: IO[str] | None = None
        self._heap: list[tuple[float, int, str, msgs.LogRecord, dict[str, Any]]] = []
        self._seq = 0
        self._pipes: dict[int, tuple[str, int, str, bytearray]] = {}

    # ----- input ----------------------------------------------------------------------------
    def add(self, actor: str, rec: msgs.LogRecord) -> None:
        """Queue one record of ``actor``."""
        entry = {
            "actor": actor,
            "t": rec.t,
            "level": rec.level,
            "logger": rec.logger,
            "message": rec.message,
        }
        self._seq += 1
        heapq.heappush(self._heap, (rec.t, self._seq, actor, rec, entry))

    def watch(self, fd: int, actor: str, label: str) -> None:
        """Read ``actor``'s output pipe ``fd`` (non-blocking) when :meth:`read` is called."""
        level = STDOUT_LEVEL if label == "stdout" else STDERR_LEVEL
        self._pipes[fd] = (actor, level, label, bytearray())

    @property
    def pipes(self) -> list[int]:
        """The pipe descriptors still open (to poll for reading)."""
        return list(self._pipes)

    def read(self, fd: int) -> None:
        """Read what pipe ``fd`` has; one record per complete line; forget it at EOF."""
        actor, level, label, buf = self._pipes[fd]
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        now = time.time()
        if not chunk:
            if buf:
                self.add(actor, msgs.LogRecord(now, level, label, buf.decode(errors="replace")))
            del self._pipes[fd]
            return
        buf += chunk
        *lines, rest = bytes(buf).split(b"\n")
        buf[:] = rest
        for line in lines:
            self.add(actor, msgs.LogRecord(now, level, label, line.decode(errors="replace")))

    def forget(self, fd: int) -> None:
        """Stop reading pipe ``fd`` (its process is gone); keep what it left unterminated."""
        entry = self._pipes.pop(fd, None)
        if entry is not None and entry[3]:
            actor, level, label, buf = entry
            self.add(actor, msgs.LogRecord(time.time(), level, label, buf.decode(errors="replace")))

    # ----- output ---------------------------------------------------------------------------
    @property
    def pending(self) -> float | None:
        """When the oldest held record is due to be written (``time.time()``), or None."""
        return self._heap[0][0] + REORDER_S if self._heap else None

    def flush(self, everything: bool = False) -> None:
        """Write out records older than the reorder window (all of them with ``everything``)."""
        horizon = time.time() - REORDER_S
        heap = self._heap
        while heap and (everything or heap[0][0] <= horizon):
            _, _, actor, rec, entry = heapq.heappop(heap)
            self.recent.append(entry)
            self._write(format_log(entry) + "\n")
            if self._sink is not None:
                self._sink(actor, rec)
            self._emit("log", entry)

    def _write(self, line: str) -> None:
        try:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = open_private(self.path)  # never through a planted link
                self._file = open(fd, "a", buffering=1)  # noqa: SIM115
            self._file.write(line)
        except (OSError, UnsafePath) as exc:
            self.dropped += 1
            if self.dropped == 1:  # said once, in the live log and as a warning event
                nospace = isinstance(exc, OSError) and exc.errno == errno.ENOSPC
                reason = "no space left" if nospace else str(exc)
                error = f"log lines dropped: {reason} on {self.path} (counted, the run goes on)"
                entry = {"actor": "nexus", "t": time.time(), "level": 30}
                entry.update({"logger": "plexa.logs", "message": error})
                self.recent.append(entry)
                self._emit("log", entry)
                self._emit("warning", {"what": "log", "error": error})

    def close(self) -> None:
        """Read what the pipes still hold, write everything, close the file."""
        for fd in list(self._pipes):
            self.read(fd)
        self.flush(everything=True)
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                self.dropped += 1
            self._file = None
