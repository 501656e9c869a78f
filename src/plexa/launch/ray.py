"""Actor processes on a Ray cluster: one Ray actor per plexa actor (``launch: ray``).

Each plexa actor gets a small Ray actor, a *host*, placed by the actor's ``resources:``
(CPUs, GPUs, memory, custom resources, a node, node labels). The host starts the very same
actor process the local launcher starts (``python -c BOOT``, :mod:`plexa.runtime.process`),
as its own child in a session of its own, and relays its output, its exit code and the
signals the nexus sends. So the runtime, its links (iceoryx2 between actors on one node),
its control channel and its checkpoints are exactly plexa's; Ray only places processes.

Fate: the runtime takes the host as its parent (it exits when the host dies), and the host
is a Ray actor owned by the nexus, which Ray ends when the nexus's process ends. Ray never
restarts a host (``max_restarts=0``): a host that dies is a plexa failure, ``host_lost``
when its node left the cluster, ``crashed`` otherwise, and the actor's restart policy
brings it back (on any node that fits) with its last checkpoint.

Without an address the launcher starts a local Ray instance for the run, its files in a
temporary folder named after the run, and stops it (and removes that folder) at
:meth:`RayLauncher.close`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from plexa.core.lifecycle import FailureKind
from plexa.core.paths import ENV_ACTOR, RAY_ADDRESS_ENV, RUN_DIR_ENV, SYS_PATH_ENV, RunPaths
from plexa.core.spec import PipelineSpec, RaySettings, Resources
from plexa.errors import PlexaError
from plexa.launch.base import ActorProcess, LaunchRequest
from plexa.launch.local import BOOT
from plexa.launch.ray_fate import Inquest
from plexa.launch.ray_host import OUTPUT_POLL_S, ActorHost
from plexa.launch.ray_local import (
    AUTH_MODE_ENV,
    TEMP_PREFIX,
    mark_instance,
    private_token,
    restore_env,
    sweep_ray,
)

__all__ = ["RayLauncher", "RayProcess", "actor_options", "on_ray"]


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - the extra is part of the test install
        raise PlexaError("launch: ray needs Ray: pip install 'plexa[ray]'") from exc
    return ray


def on_ray(spec: PipelineSpec, address: str | None) -> PipelineSpec:
    """``spec`` with every actor on the Ray cluster at ``address`` (``plexa run --ray``);
    ``local`` starts a local instance; None leaves ``spec`` as it is."""
    if address is None:
        return spec
    ray = msgspec.structs.replace(spec.settings.ray, address="" if address == "local" else address)
    settings = msgspec.structs.replace(spec.settings, launch="ray", ray=ray)
    return msgspec.structs.replace(spec, settings=settings)


# ----- the nexus's side ------------------------------------------------------------------------
def actor_options(resources: Resources, node_ids: dict[str, str] | None = None) -> dict[str, Any]:
    """The Ray actor options that place a host by ``resources``. ``node_ids`` maps the live
    nodes' addresses and ids to their ids: ``node: IP`` is accepted, and a ``soft`` node
    that is not in the cluster (any more) places the host anywhere. While that node is
    there the host goes nowhere else (Ray's own soft affinity may spill to another node
    even then)."""
    options: dict[str, Any] = {
        "num_cpus": resources.num_cpus,
        "max_restarts": 0,
        "max_task_retries": 0,
        "max_concurrency": 8,
    }
    if resources.num_gpus:
        options["num_gpus"] = resources.num_gpus
    if resources.memory:
        options["memory"] = resources.memory
    if resources.custom:
        options["resources"] = dict(resources.custom)
    if resources.labels:
        options["label_selector"] = dict(resources.labels)
    live = node_ids or {}
    if resources.node and (resources.node in live or not resources.soft):
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        node = live.get(resources.node, resources.node)
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
    return options


def wanted(resources: Resources) -> str:
    """``resources`` in words, for messages (``num_cpus 1, camera 1, node 10.0.0.7``)."""
    parts = [f"{k} {getattr(resources, k):g}" for k in ("num_cpus", "num_gpus")]
    parts = [p for p in parts if not p.endswith(" 0")]
    if resources.memory:
        parts.append(f"memory {resources.memory / 2**30:.3g} GiB")
    parts += [f"{k} {v:g}" for k, v in resources.custom.items()]
    parts += [f"label {k}={v}" for k, v in resources.labels.items()]
    if resources.node:
        parts.append(f"node {resources.node}")
    return ", ".join(parts) or "nothing in particular"


class RayProcess:
    """A plexa actor process run by a Ray actor (a :class:`plexa.launch.base.ActorProcess`)."""

    def __init__(self, label: str, launcher: RayLauncher, host: Any, start_ref: Any) -> None:
        self._label = label
        self._launcher = launcher
        self.host = host
        """The Ray actor handle."""
        self._start_ref = start_ref
        self._wait_ref = host.wait.remote()
        self._started: tuple[int, str, str] | None = None
        self._code: int | None = None
        self._failure: tuple[FailureKind, str] | None = None
        self._inquest: Inquest | None = None
        self._killed = False
        self._sent: set[int] = set()
        self.wants = "what it asks for"
        """The resources it asked for, in words."""
        read_out, self._write_out = os.pipe()
        read_err, self._write_err = os.pipe()
        for fd in (read_out, read_err):
            os.set_blocking(fd, False)
        self._fds = [(read_out, "stdout"), (read_err, "stderr")]

    @property
    def label(self) -> str:
        """The actor's name."""
        return self._label

    def _start_info(self) -> tuple[int, str, str] | None:
        if self._started is None:
            ray = _ray()
            ready, _ = ray.wait([self._start_ref], timeout=0)
            if ready:
                with contextlib.suppress(Exception):  # its failure shows in exit_code()
                    pid, node_id, ip = ray.get(self._start_ref)
                    self._started = (int(pid), str(node_id), str(ip))
        return self._started

    @property
    def pid(self) -> int:
        """The actor process's pid on its node (0 until Ray has placed and started it)."""
        info = self._start_info()
        return info[0] if info is not None else 0

    @property
    def node(self) -> str | None:
        """The Ray node it runs on, ``IP (id prefix)``; None until it is placed."""
        info = self._start_info()
        return f"{info[2]} ({info[1][:8]})" if info is not None else None

    @property
    def node_id(self) -> str | None:
        """The hex id of the Ray node it runs on; None until it is placed."""
        info = self._start_info()
        return info[1] if info is not None else None

    @property
    def waiting_for(self) -> str | None:
        """What the actor waits for before its process can start (None once it started)."""
        if self._start_info() is not None or self._code is not None:
            return None
        return f"waiting for a Ray node that offers {self.wants}"

    def alive(self) -> bool:
        """True until the actor process (or its Ray actor) is gone."""
        return self.exit_code() is None

    def exit_code(self) -> int | None:
        """The process's exit code once it ended (negative: a signal); a Ray actor that died
        with it reads as SIGKILL, and :meth:`failure` says why. An exit that may be its
        node's loss is reported once that is settled (:mod:`plexa.launch.ray_fate`)."""
        if self._code is not None:
            return self._code
        ray = _ray()
        if self._inquest is None:
            ready, _ = ray.wait([self._wait_ref], timeout=0)
            if not ready:
                return None
            try:
                code = int(ray.get(self._wait_ref))
            except Exception as exc:
                if self._killed:
                    return self._end(-signal.SIGKILL)
                self._inquest = Inquest(-signal.SIGKILL, self.node_id, self.node or "", error=exc)
            else:
                if code >= 0 or self._killed or -code in self._sent:
                    return self._end(code)
                probe = self.host.node_up.remote()  # a signal nobody here sent: node lost?
                self._inquest = Inquest(code, self.node_id, self.node or "", probe=probe)
        if not self._inquest.settle(ray, self._launcher.node_alive):
            return None
        self._failure = self._inquest.failure
        if self._failure is not None and self._failure[0] is FailureKind.HOST_LOST:
            self._launcher.lost.add(self._inquest.node_id or "")
        return self._end(self._inquest.code)

    def _end(self, code: int) -> int:
        self._code = code
        self._inquest = None
        return code

    def failure(self) -> tuple[FailureKind, str] | None:
        """Why it is gone when its exit code cannot say (its Ray actor or node died)."""
        return self._failure

    def send(self, sig: signal.Signals) -> None:
        """Signal the actor process's group, through its host (a host that has not started
        it yet is ended instead)."""
        if self._code is not None:
            return
        if self._start_info() is None:
            self._killed = True
            with contextlib.suppress(Exception):
                _ray().kill(self.host, no_restart=True)
            return
        self._sent.add(int(sig))
        self.host.signal.remote(int(sig))

    def output_fds(self) -> Sequence[tuple[int, str]]:
        """Pipes carrying what the actor writes (relayed from its host)."""
        return self._fds

    def write(self, label: str, data: bytes) -> None:
        """Relay output to the pipe the nexus reads (the relay thread's)."""
        fd = self._write_out if label == "stdout" else self._write_err
        with contextlib.suppress(OSError):
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]

    def end_output(self) -> None:
        """No more output: the nexus reads end of file."""
        for fd in (self._write_out, self._write_err):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._write_out = self._write_err = -1

    def close(self) -> None:
        """Release the Ray actor and the pipes (after the process is gone)."""
        self._killed = True
        self._launcher.forget(self)
        with contextlib.suppress(Exception):
            _ray().kill(self.host, no_restart=True)
        self.end_output()
        for fd, _ in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)


class RayLauncher:
    """Starts each actor process in a Ray actor placed by its ``resources:`` (a
    :class:`plexa.launch.base.Launcher`). Connects to Ray (or starts a local instance) at
    the first spawn; :meth:`close` disconnects (and stops the instance it started)."""

    def __init__(self, settings: RaySettings | None = None, *, renice: bool | None = None) -> None:
        self.settings = settings or RaySettings()
        self.renice = renice
        """Run hosts at niceness 0 through a runtime environment (Ray starts workers at 15,
        which halves an actor's share of a busy machine). None: only on a cluster this
        launcher did not start (the instance it starts is configured so); False: never
        (the cluster runs with ``RAY_worker_niceness=0``; saves ~2 s per actor start)."""
        self.address = ""
        """The cluster's GCS address once connected."""
        self.temp_dir: Path | None = None
        """The local instance's folder, when this launcher started one."""
        self._connected = False
        self._owns_connection = False
        self._host_class: Any = None
        self._specs: dict[str, PipelineSpec] = {}
        self._procs: dict[Any, RayProcess] = {}
        """Output requests in flight -> their process."""
        self._lock = threading.Lock()
        self._relay: threading.Thread | None = None
        self._closing = threading.Event()
        self._saved_env: dict[str, str | None] = {}
        self.lost: set[str] = set()
        """Ids of the nodes its hosts were lost with: not placed on again, even while the
        GCS still counts them alive (it learns of a dead node seconds after a host may)."""

    # ----- connecting ----------------------------------------------------------------------
    def connect(self, run_id: str = "") -> None:
        """Join the cluster of ``settings.address``, or start a local instance (its files in
        ``$TMPDIR/plexa-ray-RUN_ID``); a process already connected to Ray stays on it."""
        if self._connected:
            return
        ray = _ray()
        if not ray.is_initialized():
            quiet: dict[str, Any] = {
                "log_to_driver": False,
                "configure_logging": False,
                "include_dashboard": False,
            }
            if self.settings.address:
                ray.init(address=self.settings.address, **quiet)
            else:
                if AUTH_MODE_ENV not in os.environ:  # a user's own RAY_AUTH_MODE is kept
                    self._saved_env = private_token()
                name = f"{TEMP_PREFIX}{run_id or os.getpid()}"
                self.temp_dir = Path(tempfile.gettempdir()) / name
                self.temp_dir.mkdir(mode=0o700, exist_ok=True)
                self._saved_env.update(mark_instance(self.temp_dir))
                ray.init(
                    num_cpus=self.settings.num_cpus,
                    object_store_memory=self.settings.object_store_memory,
                    _temp_dir=str(self.temp_dir / "r"),  # Ray makes it 0777: ours stays 0700
                    _system_config={"worker_niceness": 0},  # actors compete as local ones do
                    **quiet,
                )
                self.renice = False if self.renice is None else self.renice
            self._owns_connection = True
        self.address = ray.get_runtime_context().gcs_address
        self._host_class = ray.remote(ActorHost)
        self._connected = True
        self._relay = threading.Thread(target=self._relay_output, name="plexa-ray-output")
        self._relay.daemon = True
        self._relay.start()

    def _resources(self, request: LaunchRequest) -> Resources:
        spec = self._specs.get(request.run_dir)
        if spec is None:
            data = RunPaths(Path(request.run_dir).name, Path(request.run_dir).parent).spec_file
            spec = msgspec.json.decode(data.read_bytes(), type=PipelineSpec)
            self._specs[request.run_dir] = spec
        actor = spec.actors.get(request.actor)
        return actor.resources if actor is not None else Resources()

    # ----- the launcher interface -----------------------------------------------------------
    def spawn(self, request: LaunchRequest) -> ActorProcess:
        """Create the actor's Ray actor and ask it to start the actor process; returns at once
        (placement and start go on in Ray; the nexus waits for the handshake)."""
        self.connect(request.run_id)
        resources = self._resources(request)
        node_ids = self.node_ids() if resources.node else None
        options = actor_options(resources, node_ids)
        env = {k: v for k, v in os.environ.items() if k.startswith("PLEXA_")}  # plexa's own
        env.update(request.env)
        env[RUN_DIR_ENV] = request.run_dir
        env[ENV_ACTOR] = request.actor
        env[SYS_PATH_ENV] = os.pathsep.join(request.import_path)
        env[RAY_ADDRESS_ENV] = self.address
        argv = [sys.executable, "-c", BOOT, request.run_dir, request.actor, "0"]
        if self.renice is not False:
            options["runtime_env"] = {"env_vars": {"RAY_worker_niceness": "0"}}
        host = self._host_class.options(name=None, **options).remote()
        proc = RayProcess(request.actor, self, host, host.start.remote(argv, env))
        proc.wants = wanted(resources)
        with self._lock:
            self._procs[host.output.remote()] = proc
        return proc

    def close(self) -> None:
        """Stop relaying output; disconnect from Ray, and stop the local instance this
        launcher started (leaving no process and no file of it behind)."""
        self._closing.set()
        if self._relay is not None:
            self._relay.join(timeout=OUTPUT_POLL_S + 1)
            self._relay = None
        with self._lock:
            procs, self._procs = list(self._procs.values()), {}
        for proc in procs:
            proc.end_output()
        if self._connected and self._owns_connection:
            _ray().shutdown()
        self._connected = False
        restore_env(self._saved_env)
        self._saved_env = {}
        if self.temp_dir is not None:
            sweep_ray(self.temp_dir)
            self.temp_dir = None

    def forget(self, proc: RayProcess) -> None:
        """Stop relaying ``proc``'s output."""
        with self._lock:
            for ref in [r for r, p in self._procs.items() if p is proc]:
                del self._procs[ref]

    # ----- nodes -------------------------------------------------------------------------
    def node_ids(self) -> dict[str, str]:
        """Node address -> node id, for every live node (a node id maps to itself)."""
        found: dict[str, str] = {}
        for node in _ray().nodes():
            if node.get("Alive") and node["NodeID"] not in self.lost:
                found[node["NodeManagerAddress"]] = node["NodeID"]
                found[node["NodeID"]] = node["NodeID"]
        return found

    def node_alive(self, node_id: str) -> bool:
        """Whether the cluster still counts node ``node_id`` as alive (asks the GCS)."""
        for node in _ray().nodes():
            if node["NodeID"] == node_id:
                return bool(node.get("Alive"))
        return False

    # ----- output relay ------------------------------------------------------------------
    def _relay_output(self) -> None:
        """Move what the hosts' actors write into the pipes the nexus reads."""
        ray = _ray()
        while not self._closing.is_set():
            with self._lock:
                refs = list(self._procs)
            if not refs:
                self._closing.wait(0.05)
                continue
            try:
                ready, _ = ray.wait(refs, num_returns=1, timeout=0.2)
            except Exception:  # Ray is shutting down
                return
            for ref in ready:
                with self._lock:
                    proc = self._procs.pop(ref, None)
                if proc is None:
                    continue
                try:
                    chunks = ray.get(ref)
                except Exception:
                    chunks = None
                if chunks is None:
                    proc.end_output()
                    continue
                for label, data in chunks:
                    proc.write(label, data)
                with self._lock:
                    if not self._closing.is_set():
                        self._procs[proc.host.output.remote()] = proc
