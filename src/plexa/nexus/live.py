"""Recording on a live run: ``record start|stop [LINKS]``, whether the run has a recorder or not.

A run started with ``record:`` (``--record``, improv's ``use_watcher``) has its recorder
from the start, linked to the outputs it records; ``record start LINKS`` reaches it, and it
reads any other output through a tap. A run without one gets one the first time recording
is started: the nexus adds the recorder actor to the live run (no links: it reads taps,
``drop_oldest``), so it is launched, supervised, shown, stopped last and cleaned up like
every actor. It stays after ``record stop``, not writing and reading nothing. See
``docs/recording.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from plexa.core.lifecycle import RunState
from plexa.core.paths import write_private
from plexa.core.spec import ActorSpec, PipelineSpec, RecordSpec, Restart
from plexa.data.tap import tappable, untappable
from plexa.errors import RecordingError, RemoteError
from plexa.nexus.recorder import _TARGET, record_path

if TYPE_CHECKING:
    from plexa.core import protocol as proto
    from plexa.nexus.nexus import Nexus

__all__ = ["handle", "live_recorder", "record", "recorder_of"]


def recorder_of(spec: PipelineSpec) -> str | None:
    """The name of the run's recorder actor, or None if it has none."""
    return next((n for n, a in spec.actors.items() if a.target == _TARGET), None)


def live_recorder(spec: PipelineSpec, run_id: str) -> ActorSpec:
    """The recorder actor added to a live run that has none: no links, not writing yet, and
    stopped after every output it may tap (the ``record:`` defaults for the rest)."""
    defaults = RecordSpec()
    name = "recorder"
    while name in spec.actors:
        name = "_" + name
    options: dict[str, Any] = {
        "path": str(record_path(defaults.path, spec.name, run_id)),
        "chunk_size": defaults.chunk_size,
        "compression": defaults.compression,
        "metadata": {"pipeline": spec.name, "run": run_id, "source": spec.source},
        "start": False,
        "capacity": defaults.capacity,
    }
    return ActorSpec(
        name=name,
        target=_TARGET,
        options=options,
        restart=Restart.ON_FAILURE,
        taps=tuple(tappable(spec)),
    )


def record(
    nexus: Nexus,
    action: str,
    links: Sequence[str] = (),
    path: str | None = None,
    timeout: float = 30.0,
) -> Any:
    """``record start [LINKS]`` / ``record stop`` on ``nexus``'s live run; the recorder's
    counters. A run without a recorder gets one at the first ``start``."""
    if action not in ("start", "stop"):
        raise RecordingError(f"record takes start or stop, not {action!r}")
    spec, run_id = nexus.spec, nexus.paths.run_id
    if path:
        path = str(record_path(path, nexus.name, run_id))
    name = recorder_of(spec)
    if name is None:
        if action == "stop":
            raise RecordingError("not recording: this run has no recorder (record start)")
        if nexus.run_state in (RunState.CREATED, RunState.SETTING_UP, RunState.QUIT):
            raise RecordingError(f"record start: the run is {nexus.run_state.value}, not set up")
        problems = [why for x in links if (why := untappable(spec, x)) is not None]
        if problems or not tappable(spec):
            why = "; ".join(problems) or "no output of this run can be tapped"
            raise RecordingError(f"cannot record live: {why}")
        name = _bring_up(nexus, live_recorder(spec, run_id), timeout)
    try:
        stats = nexus.invoke(name, "record", [action, path, list(links)], timeout)
    except RemoteError as exc:  # the recorder's own refusal says what is wrong: no traceback
        why = str(exc.args[0]) if exc.args else ""
        if why.startswith(f"{RecordingError.__name__}: "):
            raise RemoteError(why, kind=exc.kind) from None
        raise
    if nexus.paths.actor_spec_file(name).exists():  # a restart resumes what was asked last
        options = {"start": action == "start", "links": list(links)}
        _remember(nexus, name, options if path is None else {**options, "path": path})
    return stats


def _bring_up(nexus: Nexus, actor: ActorSpec, timeout: float) -> str:
    """Add ``actor`` to the live run and bring it where the others are; its name."""
    name = actor.name
    nexus.add_actor(actor)
    nexus.wait_until(lambda _: nexus.actors[name].connected, timeout)
    nexus.setup([name])
    if nexus.run_state in (RunState.RUNNING, RunState.PAUSED):
        nexus.run([name])
    if nexus.run_state is RunState.PAUSED:
        nexus.pause([name])
    return name


def _remember(nexus: Nexus, name: str, options: dict[str, Any]) -> None:
    """Set options of the live recorder in the spec its next process reads."""
    actor = nexus.spec.actors[name]
    actor = msgspec.structs.replace(actor, options={**actor.options, **options})
    spec = msgspec.structs.replace(nexus.spec, actors={**nexus.spec.actors, name: actor})
    nexus.spec = nexus.fleet.spec = spec
    write_private(nexus.paths.actor_spec_file(name), msgspec.json.encode(spec))


def handle(nexus: Nexus, req: proto.Request) -> Any:
    """The control server's ``record`` (args: ``action``, ``links``, ``path``, ``timeout_s``)."""
    links = req.args.get("links") or []
    if not isinstance(links, list) or not all(isinstance(x, str) for x in links):
        raise RecordingError("record: links must be a list of output names")
    path, timeout = req.args.get("path"), req.args.get("timeout_s", 30.0)
    if path is not None and not isinstance(path, str):
        raise RecordingError("record: path must be a file name")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise RecordingError(f"record: timeout_s must be a positive number, not {timeout!r}")
    return record(nexus, str(req.args.get("action", "")), links, path or None, float(timeout))
