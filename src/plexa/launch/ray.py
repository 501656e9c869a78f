"""Actor processes on a Ray cluster: one Ray actor per plexa actor (``launch: ray``).

Each plexa actor gets a small Ray actor, a *host*, pinned to the node plexa chose for it
from its ``resources:`` (CPUs, GPUs, memory, custom resources, a node, node labels; see
:mod:`plexa.launch.ray_place`). The host starts the very same actor process the local
launcher starts (``python -c BOOT``, :mod:`plexa.runtime.process`), as its own child in a
session of its own, and relays its output, its exit code and the signals the nexus sends.
So the runtime, its links, its control channel and its checkpoints are exactly plexa's.
Actors planned on one node form a group, their ``host:`` in the run's spec: links inside a
group are iceoryx2, links between groups run on Zenoh through the nexus's router
(:mod:`plexa.launch.ray_routers`). On the nexus's node alone there is one group and no Zenoh.

Every node other than the nexus's own is taken to be another machine: it gets a plexa agent
for the run (:mod:`plexa.nexus.ray_agent`), with the run's directory, counters, store and
Zenoh router of its own, and the actor processes there start against it, as on a host's
agent (``docs/hosts.md``); checkpoints reach them through the nexus.

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

import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import msgspec

from plexa.core.paths import (
    ENV_ACTOR,
    RAY_ADDRESS_ENV,
    RUN_DIR_ENV,
    SYS_PATH_ENV,
    RunPaths,
    runtime_root,
)
from plexa.core.spec import PipelineSpec, RaySettings, Resources
from plexa.errors import PlexaError
from plexa.launch.base import ActorProcess, LaunchRequest
from plexa.launch.local import BOOT
from plexa.launch.ray_host import OUTPUT_POLL_S, ActorHost
from plexa.launch.ray_local import (
    AUTH_MODE_ENV,
    TEMP_PREFIX,
    mark_instance,
    mark_root,
    private_token,
    restore_env,
    sweep_ray,
)
from plexa.launch.ray_place import NodeView, Plan, choose_node, demand, plan
from plexa.launch.ray_process import RayProcess
from plexa.launch.ray_routers import Hub

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


def _crosses(spec: PipelineSpec, actor: str) -> bool:
    """Whether a link of ``actor`` runs on Zenoh (its process needs its node's router)."""
    links = (*spec.links_from(actor), *spec.links_to(actor))
    return any(spec.crosses_hosts(link) for link in links)


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


class RayLauncher:
    """Starts each actor process in a Ray actor placed by its ``resources:`` (a
    :class:`plexa.launch.base.Launcher`). Connects to Ray (or starts a local instance) at
    the first spawn; :meth:`close` disconnects (and stops the instance it started)."""

    def __init__(
        self,
        settings: RaySettings | None = None,
        *,
        renice: bool | None = None,
        node_agent: Any = None,
    ) -> None:
        self.settings = settings or RaySettings()
        self.node_agent = node_agent
        """The class of the agent started on each node other than the nexus's
        (:class:`plexa.nexus.ray_agent.NodeAgent`; the nexus passes it)."""
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
        self.plan: Plan | None = None
        """Where the run's actors started (:meth:`place`)."""
        self.where: dict[str, str | None] = {}
        """Group -> the node it runs on now (None: waiting for one with room for it)."""
        self._live: dict[str, RayProcess] = {}
        """Actor -> its current process."""
        self._waiting: dict[str, tuple[RayProcess, list[str], dict[str, str]]] = {}
        """Actor -> its process waiting for a node, its command and environment."""
        self._next_try = 0.0
        self._hub: Hub | None = None
        self.home = ""
        """The id of the nexus's own Ray node; every other node is another machine."""
        self._agent_env = {k: v for k, v in os.environ.items() if k.startswith("PLEXA_")}

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
                mark_root(self.temp_dir, runtime_root())
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
        self.home = ray.get_runtime_context().get_node_id()
        self._host_class = ray.remote(ActorHost)
        self._connected = True
        self._relay = threading.Thread(target=self._relay_output, name="plexa-ray-output")
        self._relay.daemon = True
        self._relay.start()

    def _spec(self, request: LaunchRequest) -> PipelineSpec:
        spec = self._specs.get(request.run_dir)
        if spec is None:
            data = RunPaths(Path(request.run_dir).name, Path(request.run_dir).parent).spec_file
            spec = msgspec.json.decode(data.read_bytes(), type=PipelineSpec)
            self._specs[request.run_dir] = spec
        return spec

    # ----- placement ---------------------------------------------------------------------------
    def nodes(self) -> list[NodeView]:
        """The live nodes (not those its hosts were lost with), for placement."""
        found = []
        for node in _ray().nodes():
            if node.get("Alive") and node["NodeID"] not in self.lost:
                labels = {str(k): str(v) for k, v in (node.get("Labels") or {}).items()}
                total = {str(k): float(v) for k, v in (node.get("Resources") or {}).items()}
                found.append(NodeView(node["NodeID"], node["NodeManagerAddress"], total, labels))
        return found

    def place(self, spec: PipelineSpec, run_id: str = "") -> PipelineSpec:
        """Choose each actor's node before any starts (:func:`plexa.launch.ray_place.plan`);
        returns ``spec`` with each actor's group as its ``host:`` (unchanged when all fit on
        one node). The nexus calls this before it writes the run's spec."""
        self.connect(run_id)
        self.plan = plan(spec, self.nodes(), self.home)
        self.where = dict(self.plan.nodes)
        if set(self.plan.groups.values()) == {""}:
            return spec
        actors = {
            name: msgspec.structs.replace(a, host=self.plan.groups[name])
            for name, a in spec.actors.items()
        }
        return msgspec.structs.replace(spec, actors=actors)

    def _node_for(self, spec: PipelineSpec, group: str) -> str | None:
        """The node ``group`` runs on: where it is, while that node lives; else one with room
        for every member of the group (chosen now), or None."""
        nodes = self.nodes()
        node = self.where.get(group)
        if node is not None and any(n.node_id == node for n in nodes):
            return node
        if node is not None and self._hub is not None:
            self._hub.forget(node)
        members = [a for a in spec.actors.values() if a.host == group]
        used: dict[str, dict[str, float]] = {}
        for proc in self._live.values():
            if proc.group != group and proc.target is not None:
                into = used.setdefault(proc.target, {})
                for k, v in demand(spec.actors[proc.label].resources).items():
                    into[k] = into.get(k, 0.0) + v
        self.where[group] = choose_node([a.resources for a in members], nodes, used)
        return self.where[group]

    def place_waiting(self) -> None:
        """Start the hosts of actors that wait for a node, if their group has one now (asks
        the cluster at most every half second)."""
        now = time.monotonic()
        if not self._waiting or now < self._next_try:
            return
        self._next_try = now + 0.5
        for name, (proc, argv, env) in list(self._waiting.items()):
            spec = self._specs_by_actor(name)
            if spec is not None and self._start_host(spec, proc, argv, env):
                del self._waiting[name]

    def _specs_by_actor(self, name: str) -> PipelineSpec | None:
        return next((s for s in self._specs.values() if name in s.actors), None)

    def _start_host(
        self, spec: PipelineSpec, proc: RayProcess, argv: list[str], env: dict[str, str]
    ) -> bool:
        """Create ``proc``'s host on its group's node and start the actor there; False when
        no node can take the group yet."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        node = self._node_for(spec, proc.group)
        if node is None:
            return False
        resources = spec.actors[proc.label].resources
        options = actor_options(resources)
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
        options.pop("label_selector", None)  # the node was chosen by its labels already
        if self.renice is not False:
            options["runtime_env"] = {"env_vars": {"RAY_worker_niceness": "0"}}
        after: list[Any] = []
        agent: tuple[Any, str, str] | None = None
        if node != self.home:  # another machine: the actor runs against the node's agent
            hub = self._hub_for(spec, env[RUN_DIR_ENV])
            name = proc.label
            handle = hub.agent(node, self._agent_env)
            rows, state = hub.hosts.rows(name), hub.hosts.state(name)
            after.append(handle.prepare.remote(hub.run_id, name, rows, state))
            agent = (handle, hub.run_id, name)
            hub.hosts.inbox(("dealer", name))  # its control frames come through the agent
        elif _crosses(spec, proc.label):
            from plexa.runtime.hostlinks import ENV as ZENOH_ENV

            env = {**env, ZENOH_ENV: self._hub_for(spec, env[RUN_DIR_ENV]).zenv}
        host = self._host_class.options(name=None, **options).remote()
        proc.bind(host, host.start.remote(argv, env, after, agent), node)
        with self._lock:
            self._procs[host.output.remote()] = proc
        return True

    def _hub_for(self, spec: PipelineSpec, run_dir: str) -> Hub:
        if self._hub is None:
            ray = _ray()
            ip = ray.util.get_node_ip_address()
            paths = RunPaths(Path(run_dir).name, Path(run_dir).parent)
            if self.node_agent is None:
                raise PlexaError("a Ray node other than the nexus's needs RayLauncher(node_agent=)")
            self._hub = Hub(paths, spec, ip, ray.remote(self.node_agent))
        return self._hub

    def usage(self, actor: str) -> tuple[float | None, int | None] | None:
        """CPU % and resident bytes of ``actor``'s process, as its node's agent reported them
        (None in the pair: not reported); None when it runs on the nexus's node (its pid is
        measured there)."""
        proc = self._live.get(actor)
        if proc is not None and proc.node_id == self.home:
            return None
        return self._hub.hosts.usage(actor) if self._hub is not None else (None, None)

    # ----- the launcher interface -----------------------------------------------------------
    def spawn(self, request: LaunchRequest) -> ActorProcess:
        """Create the actor's Ray actor on its group's node and ask it to start the actor
        process; returns at once (the start goes on in Ray; the nexus waits for the
        handshake). When no node has room for its group, the handle waits for one."""
        self.connect(request.run_id)
        spec = self._spec(request)
        if self.plan is None:  # no place() before: the spec's hosts are the groups
            self.plan = Plan({n: a.host for n, a in spec.actors.items()}, {})
        resources = spec.actors[request.actor].resources
        env = {k: v for k, v in os.environ.items() if k.startswith("PLEXA_")}  # plexa's own
        env.update(request.env)
        env[RUN_DIR_ENV] = request.run_dir
        env[ENV_ACTOR] = request.actor
        env[SYS_PATH_ENV] = os.pathsep.join(request.import_path)
        env[RAY_ADDRESS_ENV] = self.address
        argv = [sys.executable, "-c", BOOT, request.run_dir, request.actor, "0"]
        proc = RayProcess(request.actor, self)
        proc.wants = wanted(resources)
        proc.group = spec.actors[request.actor].host
        proc.company = sum(1 for a in spec.actors.values() if a.host == proc.group) - 1
        self._live[request.actor] = proc
        if not self._start_host(spec, proc, argv, env):
            self._waiting[request.actor] = (proc, argv, env)
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
        if self._hub is not None:
            self._hub.close(_ray())
            self._hub = None
        if self._connected and self._owns_connection:
            _ray().shutdown()
        self._connected = False
        restore_env(self._saved_env)
        self._saved_env = {}
        if self.temp_dir is not None:
            sweep_ray(self.temp_dir)
            self.temp_dir = None

    def forget(self, proc: RayProcess) -> None:
        """Stop relaying ``proc``'s output; it no longer holds room on its node."""
        if self._live.get(proc.label) is proc:
            del self._live[proc.label]
        waiting = self._waiting.get(proc.label)
        if waiting is not None and waiting[0] is proc:
            del self._waiting[proc.label]
        with self._lock:
            for ref in [r for r, p in self._procs.items() if p is proc]:
                del self._procs[ref]

    # ----- nodes -------------------------------------------------------------------------
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
