"""Inside an actor process: the lifecycle, the run loop, safe points, teardown.

Started by the nexus as ``python -m plexa.runtime.process RUN_DIR ACTOR``. The main thread runs
user code; a control thread talks to the nexus over zmq, queues commands, sends heartbeats,
and watches for the nexus's death. Commands take effect only at safe points: between
messages or steps, inside ``put``/``get`` waits, or where user code calls ``safe_point()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import msgspec
import zmq

from plexa.core import messages as msgs
from plexa.core.actor import Actor, AsyncActor, Ports
from plexa.core.lifecycle import (
    ACTOR_EVENTS,
    ACTOR_SIGNALS,
    ActorEvent,
    ActorState,
    FailureKind,
    Phase,
    Signal,
    refusal,
)
from plexa.core.paths import RunPaths, import_path_from_env, store_dir
from plexa.core.spec import PipelineSpec
from plexa.data.counters import Counters, timed
from plexa.data.domain import Domain, Wake
from plexa.data.inputs import EMPTY
from plexa.data.links import SAMPLE_MASK
from plexa.errors import Aborted, InvalidTransition
from plexa.runtime.boot import die_with_parent, end_descendants, exit_now, on_sigterm
from plexa.runtime.control import ControlThread, NexusLogHandler, Outbox
from plexa.runtime.hostlinks import HostLinks, attach_ports
from plexa.runtime.services import ServiceHooks, apply_set, call_command

__all__ = ["main"]

NEVER = float("inf")
SPIN_S = 50e-6
"""How long an idle loop polls before it blocks (a blocking wake-up costs ~65 us here)."""
FAILURE_FLUSH_S = 2.0
"""How long a failing actor waits for its failure report to leave (see ``Outbox.flush``)."""


class _Unwind(BaseException):
    """Raised at a safe point to leave user code when the actor must stop or quit."""

    def __init__(self, signal: Signal) -> None:
        super().__init__(signal.value)
        self.signal = signal


class ActorProcess:
    """One actor's process: owns the user object, its ports and its lifecycle."""

    def __init__(self, paths: RunPaths, spec: PipelineSpec, name: str, nexus_pid: int) -> None:
        self.nexus_pid = nexus_pid
        self.paths = paths
        self.spec = spec
        self.name = name
        self.aspec = spec.actors[name]
        self.state = ActorState.CREATED
        self.commands: queue.SimpleQueue[msgs.Command] = queue.SimpleQueue()
        self.args: dict[str, Any] = {}
        """The arguments of the signal accepted last (``setup``: ``restore``)."""
        self.pending = False
        self.loops = 0
        """Safe points passed (sent with every heartbeat: a stuck actor stops counting)."""
        self.stopping = False
        """While draining and in ``stop()``, commands wait for the actor to be stopped."""
        self.unwind: Signal | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ctx: zmq.Context[Any] = zmq.Context()
        self.outbox = Outbox(self.ctx, f"inproc://{name}-out")
        self.counters = Counters(spec, paths.counters_file)
        self.row = self.counters.actor_row(name)
        self.actor: Actor | None = None
        self.domain: Domain | None = None
        self.run_ending = False
        """Told to quit: the nexus removes the iceoryx2 domain, so this process's nodes are
        kept (:attr:`kept`) until it exits; each drop would scan every node (O(n²) per run)."""
        self.kept: list[Any] = []
        """What is left to the process's exit (see :attr:`run_ending`)."""
        self.wake: Wake | None = None
        self.inputs: dict[str, Any] = {}
        self.outputs: dict[str, Any] = {}
        self.store: Any = None
        self.hostlinks: HostLinks | None = None
        self.hooks = ServiceHooks(spec, self.aspec, self.outbox.send, self.safe_point)
        self._ctl_ready = threading.Event()
        self._done = threading.Event()

    # ----- lifecycle --------------------------------------------------------------------
    def set_state(self, state: ActorState) -> None:
        self.state = state
        self.outbox.send(msgs.StateChanged(state))

    def happen(self, event: ActorEvent) -> None:
        """Move on as the lifecycle table says ``event`` does from the current state."""
        self.set_state(ACTOR_EVENTS[self.state, event])

    def reply(self, cmd: msgs.Command, ok: bool = True, error: str = "", value: Any = None) -> None:
        if cmd.id >= 0:
            self.outbox.send(msgs.Reply(cmd.id, ok, error, value))

    def fail(self, phase: Phase, exc: BaseException) -> None:
        if self.hostlinks is not None:  # what was sent before the failure goes out now
            with contextlib.suppress(Exception):
                self.hostlinks.flush()
        tb = "".join(traceback.format_exception(exc))
        self.outbox.send(
            msgs.Failure(FailureKind.EXCEPTION, phase, f"{type(exc).__name__}: {exc}", tb)
        )
        self.outbox.flush(FAILURE_FLUSH_S)
        self.state = ActorState.FAILED

    def accept(self, cmd: msgs.Command) -> Signal | None:
        """Answer ``cmd``: refused as the lifecycle table says, or accepted (its signal)."""
        signal_ = self.signal_of(cmd)
        if signal_ is None:
            return None
        why = refusal(self.state, signal_)
        if why is not None:
            self.reply(cmd, False, why)
            return None
        self.reply(cmd)
        self.args = cmd.args
        return signal_

    def serve(self) -> int:
        """Answer commands until quit; returns the exit code."""
        while True:
            signal_ = self.accept(self.next_command())
            self.pending = not self.commands.empty()
            if signal_ is None:
                continue
            if signal_ is Signal.QUIT:
                self.run_ending = True
                return 0
            if signal_ is Signal.SETUP:
                self.set_state(ACTOR_SIGNALS[self.state, signal_].enters)
                if not self.do_setup(bool(self.args.get("restore"))):
                    return 1
                self.happen(ActorEvent.SET_UP)
            elif signal_ is Signal.RUN:
                code = self.do_run()
                if code is not None:
                    return code
            else:  # stop while ready: nothing runs, nothing to drain
                self.set_state(ACTOR_SIGNALS[self.state, signal_].settles)

    def do_setup(self, restore: bool) -> bool:
        try:
            self.attach()
            assert self.actor is not None
            self.actor.setup(**self.setup_options)
            if restore and self.hooks.restore():
                self.actor.log.info("restored from the last checkpoint")
        except Exception as exc:
            self.fail(Phase.SETUP, exc)
            return False
        return True

    def attach(self) -> None:
        """Create the user object, the store handle and every port."""
        from plexa.core.config import resolve_class
        from plexa.data.store import Store

        cls: type[Actor] = resolve_class(self.aspec.target)
        actor, self.setup_options = cls._plexa_create(self.name, dict(self.aspec.options))
        self.actor = actor
        actor.name = self.name
        actor.log = logging.getLogger(f"plexa.actor.{self.name}")
        where = store_dir(self.spec.settings, self.spec.name, self.paths)
        self.store = Store(where, self.spec.settings.store_size)
        actor.store = self.store
        self.domain = Domain(self.paths, self.name)
        self.wake = Wake(self.domain, self.spec, self.name)
        self.hostlinks, self.inputs, self.outputs = attach_ports(
            self.spec, self.name, self.domain, self.counters, self.wake, self.idle_wait,
            batch=not isinstance(actor, AsyncActor),
        )  # fmt: skip
        actor.inputs = Ports(dict(self.inputs))
        actor.outputs = Ports(dict(self.outputs))
        self.hooks.actor = actor
        actor.__dict__["_plexa_hooks"] = self.hooks
        actor.__dict__["_plexa_safe_point"] = self.safe_point
        actor.__dict__["_plexa_async_safe_point"] = self.async_safe_point
        actor._plexa_attached(self)

    # ----- safe points --------------------------------------------------------------------
    def safe_point(self) -> None:
        """Apply pending commands; pause blocks here; stop and quit unwind user code."""
        self.loops += 1
        if self.hostlinks is not None:  # small messages held for a batch go out now
            self.hostlinks.flush()
        if self.unwind is not None:  # user code swallowed the first one
            raise Aborted() if self.unwind is Signal.ABORT else _Unwind(self.unwind)
        if self.pending and not self.stopping:
            self.control()
        due = self.hooks.next_due
        if due != NEVER and time.monotonic() >= due:  # no clock read for plain actors
            self.hooks.at_safe_point()

    def idle_wait(self, timeout: float) -> None:
        """Wait for a wake-up (a safe point before and after)."""
        self.safe_point()
        assert self.wake is not None
        self.wake.wait(timeout)
        self.safe_point()

    def control(self) -> None:
        """Apply every queued command (we are at a safe point, running or paused)."""
        while True:
            try:
                cmd = self.commands.get_nowait()
            except queue.Empty:
                self.pending = False
                return
            self.apply_running(self.accept(cmd))

    def apply_running(self, signal_: Signal | None) -> None:
        """Carry out an accepted signal inside ``run``: pause blocks, the others unwind."""
        if signal_ is None:
            return
        if signal_ in (Signal.STOP, Signal.QUIT, Signal.ABORT):
            self.pending = not self.commands.empty()
            self.unwind = signal_
            raise Aborted() if signal_ is Signal.ABORT else _Unwind(signal_)
        self.set_state(ACTOR_SIGNALS[self.state, signal_].enters)
        if signal_ is Signal.PAUSE:
            self.paused()

    def next_command(self) -> msgs.Command:
        """Wait for the next command (in slices, so that signal handlers get to run)."""
        while True:
            try:
                return self.commands.get(timeout=0.2)
            except queue.Empty:
                continue

    def paused(self) -> None:
        """Block until resume (returns) or stop/quit/abort (unwinds)."""
        while self.state is ActorState.PAUSED:
            self.apply_running(self.accept(self.next_command()))

    async def async_safe_point(self) -> None:
        """The async actor's safe point: pause awaits resume without blocking the loop."""
        self.loops += 1
        while self.pending:
            # paused() blocks the thread, which is what pause means for the actor.
            await asyncio.sleep(0)
            self.control()

    # ----- running --------------------------------------------------------------------------
    def do_run(self) -> int | None:
        """Run until stop (returns None) or quit (returns the exit code)."""
        assert self.actor is not None
        self.unwind = None
        self.hooks.start_checkpoints()
        self.set_state(ActorState.RUNNING)
        how = Signal.STOP
        try:
            if isinstance(self.actor, AsyncActor):
                self.run_async(self.actor)
            else:
                self.run_loop(self.actor)
        except _Unwind as unwind:
            how = unwind.signal
        except Aborted:
            how = Signal.ABORT
        except Exception as exc:
            self.fail(Phase.RUN, exc)
            return 1
        self.set_state(ActorState.STOPPING)
        self.unwind = None
        self.stopping = True
        try:
            if how is Signal.ABORT:
                best = self.hooks.best
                self.outbox.send(
                    msgs.Aborted(best.result if best else None, best.score if best else None)
                )
                for port in self.inputs.values():
                    port.discard()
            else:
                self.drain()
            self.actor.stop()
            if self.hostlinks is not None:  # what drain and stop sent
                self.hostlinks.flush()
            self.hooks.flush()
            self.hooks.checkpoint()
        except Exception as exc:
            self.fail(Phase.STOP, exc)
            return 1
        finally:
            self.stopping = False
        self.happen(ActorEvent.DRAINED)
        return 0 if how is Signal.QUIT else None

    def run_loop(self, actor: Actor) -> None:
        """Call ``run_step`` and the handlers, a safe point between turns, until a signal
        unwinds; idle when neither had anything to do."""
        handled = [
            (self.inputs[port], getattr(actor, method))
            for port, method in type(actor).handlers().items()
            if port in self.inputs
        ]
        handlers = [(port.take, handler) for port, handler in handled]
        pending = [port.has_pending for port, _ in handled]
        stepper = actor.run_step if type(actor).has_run_step() else None
        metrics = self.spec.settings.metrics
        safe_point = self.safe_point
        calls = 0
        while True:
            safe_point()
            busy = stepper is not None
            if stepper is not None:
                calls += 1
                if metrics and not calls & SAMPLE_MASK:
                    timed(self.row, stepper)
                else:
                    stepper()
            for take, handler in handlers:
                obj = take()
                if obj is EMPTY:
                    continue
                busy = True
                calls += 1
                if metrics and not calls & SAMPLE_MASK:
                    timed(self.row, handler, obj)
                else:
                    handler(obj)
                del obj  # the message's sample goes back to its link now
            if not busy:
                self.idle(pending)

    def idle(self, pending: list[Any]) -> None:
        """Nothing to do: spin briefly (cheap wake-up), then block on the wake listener."""
        end = time.perf_counter() + SPIN_S
        while time.perf_counter() < end:
            if self.pending or any(has() for has in pending):
                return
        assert self.wake is not None
        self.wake.wait(0.5)

    def run_async(self, actor: AsyncActor) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            task = asyncio.ensure_future(actor.run())
            try:
                while not task.done():
                    await asyncio.wait({task}, timeout=0.05)
                    self.loops += 1  # the loop turns: not hung
                    if self.pending and not task.done():
                        try:
                            self.control()
                        except (_Unwind, Aborted):
                            task.cancel()
                            with contextlib.suppress(asyncio.CancelledError):
                                await task
                            raise
                task.result()
            finally:
                self.loop = None

        asyncio.run(main())

    def drain(self) -> None:
        """Handle what is still queued on handled inputs (producers have stopped first)."""
        assert self.actor is not None
        handlers = [
            (self.inputs[port], getattr(self.actor, method))
            for port, method in type(self.actor).handlers().items()
            if port in self.inputs
        ]
        deadline = time.monotonic() + self.spec.settings.drain_timeout
        progressed = True
        while progressed and time.monotonic() < deadline:
            progressed = False
            for port, handler in handlers:
                obj = port.take()
                if obj is not EMPTY:
                    handler(obj)
                    del obj
                    progressed = True
        if type(self.actor).has_run_step() and self.inputs:
            while time.monotonic() < deadline and any(
                p.has_pending() for p in self.inputs.values()
            ):
                self.actor.run_step()

    # ----- teardown -------------------------------------------------------------------------
    def signal_of(self, cmd: msgs.Command) -> Signal | None:
        """The lifecycle signal ``cmd`` carries, or None once it has been answered here
        (a ``set``/``invoke`` request, carried out now; or an unknown command, refused)."""
        if cmd.signal in ("set", "invoke"):
            self.service_request(cmd)
            return None
        try:
            return Signal(cmd.signal)
        except ValueError:
            self.reply(cmd, False, f"unknown command {cmd.signal!r}")
            return None

    def service_request(self, cmd: msgs.Command) -> None:
        """Carry out a ``set`` or ``invoke`` request (at a safe point) and answer it."""
        if self.actor is None:
            self.reply(cmd, False, f"{cmd.signal} is not allowed while {self.state.value}")
        elif cmd.signal == "set":
            why = apply_set(self.actor, str(cmd.args.get("key")), cmd.args.get("value"))
            self.reply(cmd, not why, why)
        else:
            ok, value, error, tb = call_command(
                self.actor, str(cmd.args.get("method")), cmd.args.get("args", [])
            )
            if cmd.id >= 0:
                self.outbox.send(msgs.Reply(cmd.id, ok, error, value, tb))

    def teardown(self) -> None:
        self.hooks.close()
        for port in self.inputs.values():
            port.close()
        for out in self.outputs.values():
            out.close()
        if self.hostlinks is not None:
            self.hostlinks.close()
        if self.wake is not None:
            self.wake.close()
        if self.domain is not None and self.run_ending:
            self.kept.append(self.domain.node)
        elif self.domain is not None:
            self.domain.close()
        if self.store is not None:
            self.store.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of an actor process."""
    args = sys.argv[1:] if argv is None else argv
    run_dir, name, nexus_pid = args[0], args[1], int(args[2])
    die_with_parent()
    if os.getppid() != nexus_pid:
        return 3  # the nexus died before we could ask to die with it
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the nexus's to handle
    paths = RunPaths(Path(run_dir).name, Path(run_dir).parent)
    sys.path[:0] = [p for p in import_path_from_env() if p not in sys.path]
    spec = msgspec.json.decode(paths.spec_of(name).read_bytes(), type=PipelineSpec)
    proc = ActorProcess(paths, spec, name, nexus_pid)
    control = ControlThread(proc)
    thread = threading.Thread(target=control.run, name="plexa-control", daemon=True)
    thread.start()
    proc._ctl_ready.wait(10)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(NexusLogHandler(proc.outbox))
    proc.outbox.send(msgs.Hello(name, os.getpid()))
    code = 1
    try:
        code = proc.serve()
    except InvalidTransition:
        code = 1
    finally:
        with contextlib.suppress(Exception):
            proc.teardown()
        proc._done.set()
        # Wakes the control thread, so that it sees _done at once. Never waits: once that
        # thread has seen _done by itself and closed its end, a blocking send would hang here.
        with contextlib.suppress(Exception):
            proc.outbox.send(msgs.Heartbeat(proc.loops), zmq.NOBLOCK)
        thread.join(timeout=2)
        proc.outbox.close()
        proc.counters.close()
        proc.ctx.destroy(linger=0)
        end_descendants()
    return code


if __name__ == "__main__":
    try:
        code = main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    exit_now(code)
