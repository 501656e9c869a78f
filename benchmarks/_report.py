"""What every benchmark shares: the machine line, the git revision, its section of BENCHMARKS.md."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = REPO / "BENCHMARKS.md"


def revision() -> str:
    """`` (git abc1234)`` for the checked-out commit (``+`` if src/plexa has changes), or ""."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src/plexa"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return ""
    return f" (git {head}{'+' if dirty else ''})" if head else ""


def machine(packages: tuple[str, ...] = ("iceoryx2", "numpy", "plexa")) -> str:
    """One line describing the machine and the versions measured."""
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = ", ".join(f"{pkg} {importlib.metadata.version(pkg)}" for pkg in packages)
    return (
        f"nproc {os.cpu_count()}{f' ({cpu})' if cpu else ''}, Linux {platform.release()}, "
        f"Python {platform.python_version()}, {versions}{revision()}"
    )


def write_section(text: str, begin: str, end: str) -> None:
    """Replace (or append) one section of BENCHMARKS.md, leaving the others alone."""
    current = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# plexa benchmarks\n"
    start, stop = current.find(begin), current.find(end)
    if start >= 0 and stop > start:
        updated = current[:start] + text + current[stop + len(end) :]
    else:
        updated = current.rstrip("\n") + "\n\n" + text + "\n"
    BENCHMARKS_MD.write_text(updated)
