"""The run's worker jobs: launched, fed their configuration, supervised, listed, stopped.

:class:`Jobs` shares the nexus's loop as an attachment: each turn it feeds configurations,
fails a job that has not read its configuration within its deadline, notices exits and
applies the restart policy (the actors' rules: ``never`` / ``on-failure`` / ``always``,
``max_restarts`` within ``restart_window``, a doubling ``backoff``). Jobs' output goes into
the run's merged log as ``job:NAME``; every change of state is a ``job`` event. When the run
quits, the jobs are stopped with the stop ladder. See ``docs/jobs.md``.
"""

from __future__ import annotations

import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from plexa.core.jobs import JobInfo, JobSpec, JobState, module_problem
from plexa.core.ladder import stop_ladder
from plexa.core.spec import Restart
from plexa.errors import InvalidTransition
from plexa.launch.jobs import JobProcess, JobRequest, free_port, spawn_job
from plexa.nexus.attach import Attachment

if TYPE_CHECKING:
    from plexa.core import protocol as proto
    from plexa.nexus.nexus import Nexus
    from plexa.nexus.server import ControlServer

__all__ = ["Job", "Jobs"]


@dataclass
class Job:
    """One job's row in the table."""

    spec: JobSpec
    guid: str
    port: int
    state: JobState = JobState.STARTING
    proc: JobProcess | None = None
    restarts: int = 0
    reason: str = ""
    deadline: float = 0.0
    """When the configuration must have been read by."""
    restart_at: float | None = None
    restart_times: list[float] = field(default_factory=list)


class Jobs(Attachment):
    """The jobs of one run; ``jobs.serve(server)`` adds ``launch`` and ``jobs`` commands."""

    def __init__(self, nexus: Nexus, specs: tuple[JobSpec, ...] = ()) -> None:
        self.nexus = nexus
        self.table: dict[str, Job] = {}
        self._closed = False
        self._pending = list(specs)
        source = nexus.spec.source
        self._path = (str(Path(source).resolve().parent),) if source else ()

    def serve(self, server: ControlServer) -> None:
        """Attach to the nexus and answer ``launch`` (args: module, config, name, restart,
        args) and ``jobs`` on ``server``."""
        self.nexus.attach(self)
        server.register("launch", self._launch_request)
        server.register("jobs", lambda req: self.rows(), quick=True)

    # ----- commands -------------------------------------------------------------------------
    def launch(self, spec: JobSpec) -> JobInfo:
        """Start ``spec`` now; its row. Raises :class:`InvalidTransition` with the reason if
        the module name is malformed, the name is taken, or the run is quitting."""
        problem = module_problem(spec.module)
        if problem:
            raise InvalidTransition(f"launch: {problem}")
        if self._closed:
            raise InvalidTransition("launch: the run is quitting")
        if spec.name in self.table and self.table[spec.name].state in _LIVE:
            raise InvalidTransition(f"launch: a job named {spec.name!r} is running")
        job = Job(spec, secrets.token_hex(8), free_port(self._held()))
        self.table[spec.name] = job
        self._spawn(job)
        return self.info(job)

    def rows(self) -> list[dict[str, Any]]:
        """Every job, as :class:`JobInfo` documents (JSON-ready)."""
        return [msgspec.to_builtins(self.info(j)) for j in self.table.values()]

    def info(self, job: Job) -> JobInfo:
        """The row of ``job``."""
        return JobInfo(
            guid=job.guid, name=job.spec.name, module=job.spec.module, port=job.port,
            state=job.state, pid=job.proc.pid if job.proc and job.proc.alive() else None,
            restarts=job.restarts, session=self.nexus.paths.run_id, reason=job.reason,
        )  # fmt: skip

    def _launch_request(self, req: proto.Request) -> Any:
        args = dict(req.args)
        module = str(args.pop("module", ""))
        name = str(args.pop("name", "") or self._name_for(module))
        try:
            spec = msgspec.convert({"name": name, "module": module, **args}, JobSpec)
        except msgspec.ValidationError as exc:
            raise InvalidTransition(f"launch: {exc}") from None
        return msgspec.to_builtins(self.launch(spec))

    def _name_for(self, module: str) -> str:
        base = module.rpartition(".")[2] or "job"
        n = 1
        while f"{base}-{n}" in self.table:
            n += 1
        return f"{base}-{n}"

    def _held(self) -> list[int]:
        return [j.port for j in self.table.values() if j.state in _LIVE]

    # ----- the loop -------------------------------------------------------------------------
    def tick(self) -> None:
        """Feed, time out, reap and restart (once per turn of the nexus's loop)."""
        if self._pending and self.nexus.resources is not None:
            for spec in self._pending:
                self.launch(spec)
            self._pending = []
        now = time.monotonic()
        for job in list(self.table.values()):
            proc = job.proc
            if job.state is JobState.STARTING and proc is not None:
                if proc.feed.pump():
                    self._set(job, JobState.RUNNING)
                elif now > job.deadline and proc.alive():
                    why = (f"did not read its configuration from standard input within "
                           f"{job.spec.config_timeout:g} s")  # fmt: skip
                    proc.send(signal.SIGKILL)
                    proc.popen.wait()
                    self._ended(job, why, failure=True)
                    continue
            if proc is not None and job.state in _LIVE and not proc.alive():
                code = proc.exit_code()
                why = "exited with status 0" if code == 0 else _exit_reason(code)
                self._ended(job, why, failure=code != 0)
            due = job.restart_at is not None and now >= job.restart_at
            if job.state is JobState.RESTARTING and due:
                job.restart_at = None
                job.restarts += 1
                job.restart_times.append(now)
                self._spawn(job)

    def closing(self) -> None:
        """The run quits: stop every job with the stop ladder (SIGTERM, wait, SIGKILL)."""
        self._closed = True
        live = [j for j in self.table.values() if j.proc is not None and j.proc.alive()]
        grace = self.nexus.spec.settings.stop_timeout
        stop_ladder([j.proc for j in live if j.proc is not None], grace=grace)
        for job in self.table.values():
            if job.state in _LIVE or job.state is JobState.RESTARTING:
                job.reason = "stopped when the run quit"
                self._set(job, JobState.STOPPED)
            if job.proc is not None:
                self._release(job.proc)

    # ----- helpers --------------------------------------------------------------------------
    def _spawn(self, job: Job) -> None:
        run_dir = str(self.nexus.paths.run_dir)
        request = JobRequest(run_dir, job.spec.name, job.spec.module, job.guid, job.port,
                             job.spec.args, self._path)  # fmt: skip
        if job.proc is not None:
            self._release(job.proc)
        job.proc = spawn_job(request, job.spec.config)
        for fd, label in job.proc.output_fds():
            self.nexus.logs.watch(fd, f"job:{job.spec.name}", label)
        job.deadline = time.monotonic() + job.spec.config_timeout
        job.reason = ""
        self._set(job, JobState.STARTING)

    def _ended(self, job: Job, why: str, *, failure: bool) -> None:
        job.reason = why
        delay = self._restart_delay(job, failure)
        if delay is None:
            self._set(job, JobState.FAILED if failure else JobState.EXITED)
        else:
            job.restart_at = time.monotonic() + delay
            self._set(job, JobState.RESTARTING)

    def _restart_delay(self, job: Job, failure: bool) -> float | None:
        """The actors' policy (:meth:`plexa.nexus.supervisor.Supervisor.restart_delay`)."""
        spec = job.spec
        policy = Restart(spec.restart)
        if self._closed or policy is Restart.NEVER:
            return None
        if not failure and policy is not Restart.ALWAYS:
            return None
        now = time.monotonic()
        job.restart_times = [t for t in job.restart_times if now - t < spec.restart_window]
        if len(job.restart_times) >= spec.max_restarts:
            return None
        return float(spec.backoff * 2 ** len(job.restart_times))

    def _set(self, job: Job, state: JobState) -> None:
        job.state = state
        self.nexus.emit("job", msgspec.to_builtins(self.info(job)))

    def _release(self, proc: JobProcess) -> None:
        for fd, _ in proc.output_fds():
            if fd in self.nexus.logs.pipes:
                self.nexus.logs.read(fd)
                self.nexus.logs.forget(fd)
        proc.close()


_LIVE = (JobState.STARTING, JobState.RUNNING)


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"
