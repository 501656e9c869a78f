"""Full disks and full memory are reported, never fatal: a failed checkpoint leaves the
previous one valid and the actor running, a full store refuses with ``StoreFull``, a full
/dev/shm refuses a link's message with ``OutOfSharedMemory``, and nothing ever gets SIGBUS.

The tests mount small tmpfs filesystems (CI runs as root) and skip, saying why, where that
is not possible. Tests that need /dev/shm itself to be small run their pipeline in a
private mount namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import plexa
from conftest import started, wait_for
from plexa.data.store import Store
from plexa.errors import OutOfSharedMemory, StoreFull

HERE = Path(__file__).resolve().parent


def _mount(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if result.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip() or result.returncode}")


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Any]:
    """``small_fs(size)`` mounts a tmpfs of ``size`` (``"4m"``) and returns its path."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        path = tmp_path / f"fs{len(mounted)}"
        _mount(path, size)
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _in_namespace(script: str, shm_size: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run Python ``script`` with a /dev/shm of ``shm_size`` of its own (a private mount
    namespace: nothing outside it sees the small /dev/shm, and it vanishes with it)."""
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(script))
    runtime = tempfile.mkdtemp(prefix="plx-", dir="/tmp")  # short: socket paths are limited
    env = {**os.environ, "PLEXA_RUNTIME_DIR": runtime, "PYTHONPATH": str(HERE)}
    code = f"mount -t tmpfs -o size={shm_size} tmpfs /dev/shm && exec {sys.executable} {path}"
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    shutil.rmtree(runtime, ignore_errors=True)
    if result.returncode and ("mount:" in result.stderr or "unshare:" in result.stderr):
        pytest.skip(f"cannot give a process a small /dev/shm here: {result.stderr.strip()}")
    return result


needs_unshare = pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")


# ----- checkpoints -------------------------------------------------------------------------------
class Hoarder(plexa.Actor):
    """A checkpointed actor whose state grows by ``grow`` bytes per step."""

    def setup(self, grow: int = 256 * 1024) -> None:
        self.grow = grow
        self.steps = 0

    def run_step(self) -> None:
        self.steps += 1
        self.store.put(self.steps, key="steps:h")
        time.sleep(0.02)

    def get_state(self) -> dict[str, Any]:
        size = self.grow * self.steps
        return {"steps": self.steps, "blob": np.full(size, 7, np.uint8)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.steps = state["steps"]


def _logged(nexus: plexa.Nexus, text: str) -> bool:
    nexus.poll(0.05)
    return any(text in rec["message"] for rec in nexus.recent_logs)


@pytest.mark.slow
def test_a_full_checkpoint_filesystem_is_reported_and_the_actor_keeps_running(
    small_fs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = small_fs("4m")
    monkeypatch.setenv("PLEXA_DATA_DIR", str(data))
    spec = plexa.loads(
        textwrap.dedent("""
            name: hoard
            actors:
              h: {class: "test_full_disk:Hoarder", checkpoint_delta: 0.1}
        """),
        source="test.yaml",
    )
    store_dir = data / "hoard" / "checkpoints"
    with started(spec) as nexus:
        warning = f"checkpoint failed: no space left on {store_dir}"
        wait_for(lambda: _logged(nexus, warning), 60, "the checkpoint failure to be reported")
        steps_then = _steps(nexus)
        wait_for(lambda: _steps(nexus) > steps_then + 5, 30, "the actor to keep running")
        status = nexus.status()["actors"]["h"]
        assert status["state"] == "running", status
        assert not nexus.failures
        levels = {rec["level"] for rec in nexus.recent_logs if warning in rec["message"]}
        assert levels == {30}  # a warning, not an error or a failure
        nexus.stop()
        report = nexus.quit()
    assert not report.failures
    with Store(store_dir, 1 << 30) as store:  # the last good checkpoint is intact
        saved = store.get("h")
    assert saved["state"]["steps"] >= 1
    assert len(saved["state"]["blob"]) == 256 * 1024 * saved["state"]["steps"]
    assert (saved["state"]["blob"] == 7).all()


def _steps(nexus: plexa.Nexus) -> int:
    """How many steps actor h has taken."""
    nexus.poll(0.05)
    return int(nexus.store.get("steps:h")) if "steps:h" in nexus.store else 0


# ----- the store ---------------------------------------------------------------------------------
def test_a_store_on_a_full_filesystem_refuses_with_store_full_and_keeps_what_it_has(
    small_fs: Any,
) -> None:
    fs = small_fs("3m")
    script = f"""
        import numpy as np
        from plexa.data.store import Store
        from plexa.errors import StoreFull
        store = Store({str(fs / "store")!r}, 64 << 20, create=True)
        kept = []
        try:
            for i in range(100):
                kept.append(store.put(np.full(200_000, i, np.uint8)))
        except StoreFull as exc:
            print("refused:", exc)
        ok = all((store.get(k) == i).all() for i, k in enumerate(kept))
        print("kept", len(kept), ok)
        store.close()
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, (result.returncode, result.stderr)  # -7 would be SIGBUS
    refused, kept = result.stdout.splitlines()
    assert refused == f"refused: no room left for the object store in {fs / 'store'}"
    count, ok = kept.split()[1:]
    assert int(count) >= 5 and ok == "True"


@needs_unshare
@pytest.mark.slow
def test_the_run_store_on_a_full_dev_shm_refuses_puts_and_the_run_goes_on(tmp_path: Path) -> None:
    script = """
        import json, textwrap, plexa
        spec = plexa.loads(textwrap.dedent('''
            settings: {store_size: 256MB}
            actors:
              p: {class: "test_full_disk:Putter"}
        '''), source="test.yaml")
        with plexa.Nexus(spec) as nexus:
            nexus.start(); nexus.setup(); nexus.run()
            nexus.wait_until(lambda st: "result:p" in nexus.store, 60)
            nexus.stop()
            result = nexus.store.get("result:p")
            report = nexus.quit()
        print(json.dumps({"result": result, "failures": [str(f) for f in report.failures]}))
    """
    result = _in_namespace(script, "48m", tmp_path)
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    out = json.loads(result.stdout.splitlines()[-1])
    assert out["failures"] == []
    assert out["result"]["refused"].startswith("no room left for the object store in /dev/shm/")
    assert out["result"]["puts"] >= 3


class Putter(plexa.Actor):
    """Puts 4 MB arrays into the run's store until it is refused, then reports."""

    def setup(self) -> None:
        self.done = False

    def run_step(self) -> None:
        if self.done:
            time.sleep(0.01)
            return
        puts = 0
        refused = ""
        try:
            for i in range(100):
                self.store.put(np.full(4 << 20, i, np.uint8))
                puts += 1
        except StoreFull as exc:
            refused = str(exc)
        self.done = True
        self.store.put({"puts": puts, "refused": refused}, key="result:p")


# ----- links -------------------------------------------------------------------------------------
class Grower(plexa.Actor):
    """Sends arrays of 1, 2, 4, ... 64 MB, noting each refusal, then small ones."""

    outputs = plexa.ports("out")

    def setup(self) -> None:
        self.sizes = [1 << 20 << k for k in range(7)]
        self.refused: list[str] = []
        self.small = 0

    def run_step(self) -> None:
        if self.sizes:
            size = self.sizes.pop(0)
            try:
                if size >= 16 << 20:
                    with self.outputs.out.loan(size, np.uint8) as frame:
                        frame[:] = 1
                else:
                    self.outputs.out.put(np.ones(size, np.uint8))
            except OutOfSharedMemory as exc:
                self.refused.append(str(exc))
            return
        if self.small < 20:
            self.outputs.out.put(self.small)
            self.small += 1
            if self.small == 20:
                self.store.put({"refused": self.refused}, key="result:src")
        time.sleep(0.01)


class Taker(plexa.Actor):
    """Counts what arrives and how big it was."""

    def setup(self) -> None:
        self.sizes: list[int] = []

    @plexa.on("inp")
    def got(self, msg: Any) -> None:
        self.sizes.append(int(msg.nbytes) if isinstance(msg, np.ndarray) else -1)
        time.sleep(0.2 if isinstance(msg, np.ndarray) else 0)  # hold big samples a while

    def stop(self) -> None:
        self.store.put(self.sizes, key="result:dst")


@needs_unshare
@pytest.mark.slow
def test_a_link_on_a_full_dev_shm_refuses_a_message_by_name_and_never_sigbus(
    tmp_path: Path,
) -> None:
    script = """
        import json, textwrap, plexa
        spec = plexa.loads(textwrap.dedent('''
            settings: {store_size: 4MB}
            actors:
              src: {class: "test_full_disk:Grower"}
              dst: {class: "test_full_disk:Taker"}
            connections:
              src.out: {to: [dst.inp], policy: block, capacity: 2}
        '''), source="test.yaml")
        with plexa.Nexus(spec) as nexus:
            nexus.start(); nexus.setup(); nexus.run()
            nexus.wait_until(lambda st: "result:src" in nexus.store, 90)
            nexus.wait_until(
                lambda st: st["links"]["src.out->dst.inp"]["received"]
                == st["links"]["src.out->dst.inp"]["sent"], 30)
            nexus.stop()
            out = {"src": nexus.store.get("result:src"), "dst": nexus.store.get("result:dst"),
                   "link": nexus.status()["links"]["src.out->dst.inp"]}
            report = nexus.quit()
        out["failures"] = [str(f) for f in report.failures]
        print(json.dumps(out))
    """
    result = _in_namespace(script, "40m", tmp_path)
    assert result.returncode == 0, (result.returncode, result.stderr[-3000:])
    out = json.loads(result.stdout.splitlines()[-1])
    assert out["failures"] == []
    refused = out["src"]["refused"]
    assert refused, "nothing was refused: the test's /dev/shm was not small enough"
    assert all(r.startswith("output src.out: no room in /dev/shm for ") for r in refused), refused
    link = out["link"]
    sizes = out["dst"]
    assert link["sent"] == link["received"] == len(sizes)
    assert (link["dropped"], link["lost"]) == (0, 0)
    assert sizes[-20:] == [-1] * 20  # the small messages after the refusals all arrived


# ----- logs --------------------------------------------------------------------------------------
def test_a_full_log_filesystem_drops_lines_and_the_run_goes_on(
    small_fs: Any, tmp_path: Path
) -> None:
    logs = small_fs("64k")
    script = """
        import json, os, time, plexa
        spec = plexa.loads("actors: {a: {class: 'actors:Chatty', options: {every: 0.001}}}")
        with plexa.Nexus(spec) as nexus:
            nexus.start(); nexus.setup(); nexus.run()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                nexus.poll(0.05)  # must not raise OSError: [Errno 28]
            state = nexus.status()["actors"]["a"]["state"]
            nexus.stop()
            report = nexus.quit()
        dropped = nexus.logs.dropped > 0  # counted (and said once, as a warning event)
        print(json.dumps({"state": state, "failures": len(report.failures), "dropped": dropped}))
    """
    # in a process and a runtime directory of its own: whatever a failing run leaves there
    # is removed below, and no other test sees it
    runtime = tempfile.mkdtemp(prefix="plx-", dir="/tmp")
    env = {**os.environ, "PLEXA_RUNTIME_DIR": runtime, "PLEXA_LOG_DIR": str(logs)}
    env["PYTHONPATH"] = str(HERE)
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(script))
    try:
        result = subprocess.run(
            [sys.executable, str(path)], capture_output=True, text=True, timeout=60, env=env
        )
    finally:
        subprocess.run([sys.executable, "-m", "plexa", "cleanup"], env=env, timeout=60)
        shutil.rmtree(runtime, ignore_errors=True)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.splitlines()[-1])
    assert out == {"state": "running", "failures": 0, "dropped": True}
    assert os.statvfs(logs).f_bavail == 0  # the log filesystem did fill up
