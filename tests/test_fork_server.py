"""Local actors are forked from a warm per-run fork server (plexa.launch.zygote): they start
from its imports, die with it and with the nexus, leave nothing behind, and draw their own
random numbers; without it (killed, or turned off) actors start as fresh interpreters."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import psutil
import pytest

from conftest import alive, started, wait_for
from plexa import loads
from plexa.core.lifecycle import ActorState
from plexa.launch.local import FORK_SERVER_ENV, marked_processes

PIPE = """
actors:
  one: {class: "actors:Dice", restart: on-failure, backoff: 0.05, options: {key: one}}
  two: {class: "actors:Dice", restart: on-failure, backoff: 0.05, options: {key: two}}
"""


def _parents(nexus: object) -> set[int]:
    return {psutil.Process(a.proc.pid).ppid() for a in nexus.actors.values()}  # type: ignore[attr-defined]


@pytest.fixture
def exec_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(FORK_SERVER_ENV, "0")
    yield


def test_actors_are_forked_from_one_server_and_draw_their_own_random_numbers() -> None:
    with started(loads(PIPE, "forked")) as nexus:
        (server,) = _parents(nexus)
        assert server != os.getpid()
        assert psutil.Process(server).ppid() == os.getpid()  # the nexus's child
        run_dir = str(nexus.paths.run_dir)
        assert server in set(marked_processes(run_dir))  # plexa cleanup would find it
        one, two = nexus.store.get("one"), nexus.store.get("two")
        assert one["py"] != two["py"] and one["np"] != two["np"]
    wait_for(lambda: not psutil.pid_exists(server), 5, "the fork server to end with the run")


def test_without_the_fork_server_actors_are_the_nexus_s_children(exec_only: None) -> None:
    with started(loads(PIPE, "execd")) as nexus:
        assert _parents(nexus) == {os.getpid()}


def test_kill_9_of_the_fork_server_fails_its_actors_and_they_come_back_without_it() -> None:
    with started(loads(PIPE, "serverless")) as nexus:
        (server,) = _parents(nexus)
        os.kill(server, signal.SIGKILL)

        def back() -> bool:
            nexus.poll(0.02)
            return all(
                a.restarts >= 1 and a.state is ActorState.RUNNING for a in nexus.actors.values()
            )

        wait_for(back, 20, "both actors to fail and come back")
        assert {f.actor for f in nexus.failures} == {"one", "two"}
        assert _parents(nexus) == {os.getpid()}  # started as fresh interpreters now
        report = nexus.quit()
    assert report.exit_code == 3  # every failure recovered
    assert not report.killed


def test_kill_9_of_an_actor_takes_what_it_left_behind_with_it() -> None:
    pipe = 'actors:\n  spawner: {class: "actors:Spawner", restart: never}\n'
    with started(loads(pipe, "orphans")) as nexus:
        children = nexus.store.get("children")
        actor = nexus.actors["spawner"].proc
        assert actor is not None
        os.kill(actor.pid, signal.SIGKILL)
        wait_for(
            lambda: not any(psutil.pid_exists(p) and alive(p) for p in children),
            10,
            "the killed actor's children to go",
            step=lambda: nexus.poll(0.02),
        )


def test_a_killed_actor_s_forked_child_without_a_mark_of_its_own_goes_too() -> None:
    pipe = 'actors:\n  forker: {class: "actors:Forker", restart: never}\n'
    with started(loads(pipe, "forker")) as nexus:
        child = nexus.store.get("forked")
        actor = nexus.actors["forker"].proc
        assert actor is not None and alive(child)
        os.kill(actor.pid, signal.SIGKILL)  # the child is orphaned: the fork server ends it
        wait_for(lambda: not alive(child), 5, "the orphan to go", step=lambda: nexus.poll(0.02))




def test_a_fork_server_that_cannot_start_leaves_actors_to_start_as_fresh_interpreters(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from plexa.launch import zygote

    monkeypatch.setattr(zygote, "BOOT", "import sys; sys.exit(5)")  # it dies at once
    with caplog.at_level("WARNING", logger="plexa.nexus"), started(loads(PIPE, "nozygote")) as n:
        assert _parents(n) == {os.getpid()}
        assert all(a.state is ActorState.RUNNING for a in n.actors.values())
    assert any("fork server ended" in r.getMessage() for r in caplog.records), caplog.text


def test_a_full_disk_where_the_fork_server_writes_its_errors_is_no_failure(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import builtins
    import errno

    real_open = builtins.open

    def full(path: object, *args: object, **kw: object) -> object:
        if str(path).endswith("fork-server.err"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_open(path, *args, **kw)  # type: ignore[call-overload]

    monkeypatch.setattr(builtins, "open", full)
    with caplog.at_level("WARNING", logger="plexa.nexus"), started(loads(PIPE, "fulldisk")) as n:
        assert _parents(n) == {os.getpid()}  # started without it
    assert any("No space left" in r.getMessage() for r in caplog.records), caplog.text
