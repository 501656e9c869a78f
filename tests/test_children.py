"""What an actor starts goes with it: plain children, double-forked orphans and children in
a new session, after a normal quit and after ``kill -9`` of the nexus."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import alive, plexa_shm, started, wait_for
from plexa import loads
from plexa.launch.local import marked_processes

ROOT = Path(__file__).resolve().parent.parent
PIPE = """
actors:
  spawner: {class: "actors:Spawner"}
"""




def test_every_process_an_actor_started_is_gone_after_quit() -> None:
    with started(loads(PIPE, "children")) as nexus:
        children = nexus.store.get("children")
        run_dir = str(nexus.paths.run_dir)
        assert all(alive(pid) for pid in children)
        wait_for(  # one of them may be between fork and exec for a moment
            lambda: set(children) <= set(marked_processes(run_dir)), 5, "children marked"
        )
    wait_for(lambda: not any(alive(p) for p in children), 5, "the actor's children to go")
    assert not list(marked_processes(run_dir))


def test_kill_9_of_the_nexus_then_cleanup_leaves_no_child_behind(tmp_path: Path) -> None:
    cfg = tmp_path / "children.yaml"
    cfg.write_text(PIPE)
    before = plexa_shm()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    nexus = subprocess.Popen(
        [sys.executable, "-m", "plexa", "run", str(cfg)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    root = Path(os.environ["PLEXA_RUNTIME_DIR"])
    found: list[str] = []

    def running() -> bool:
        for record in root.glob("*/run.json"):
            found[:] = [str(record.parent)]
        return bool(found) and len(list(marked_processes(found[0]))) >= 4

    wait_for(running, 30, "the actor and its three children")
    run_dir = found[0]
    marked = list(marked_processes(run_dir))
    os.kill(nexus.pid, signal.SIGKILL)
    nexus.wait()
    wait_for(lambda: not any(alive(p) for p in marked), 10, "everything the run started to go")
    result = subprocess.run(
        [sys.executable, "-m", "plexa", "cleanup"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    assert not list(marked_processes(run_dir))
    wait_for(lambda: plexa_shm() <= before, 5, "the run's shared memory to be removed")
