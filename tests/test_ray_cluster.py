"""plexa on a Ray cluster of two nodes, the second one as another machine would be:
placement by resources, a lost node, pools on Ray tasks, ``plexa run --ray ADDRESS``.

The head node is this machine, started here (``ray.cluster_utils``); the nexus runs beside
it. Node ``b`` is ``ray start`` in a mount namespace of its own, with its own ``/tmp`` and
``/dev/shm``: it cannot see the nexus's run directory, counters, object store or
checkpoints, as a node on another machine could not (it shares the network and the pids,
which plexa does not rely on). So links between actors plexa placed on the two nodes run on
Zenoh, and the actors on ``b`` run against b's plexa agent. One cluster serves the whole
module (nodes take seconds to start); each test gets it with both nodes up and idle,
whatever the test before it left (the test that kills node ``b`` adds a new one itself, but
may fail before it does).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import ray
from ray.cluster_utils import Cluster

import plexa
from conftest import HERE, plexa_server, started, wait_for
from plexa.core.lifecycle import ActorState, FailureKind
from plexa.data.checkpoints import checkpoint_path
from plexa.data.store import Store
from plexa.launch.ray_local import mark_instance, private_token, restore_env, sweep_ray

pytestmark = pytest.mark.slow

FAST_HEALTH = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 1000,
    "health_check_failure_threshold": 5,
}
"""A node that is gone is declared dead within about 3 s (Ray: ~30 s); a live node that
answers slowly for a few seconds (this machine under load) is not."""
IDLE = {"CPU": 3, "a": 1, "b": 1}
"""The cluster's resources, all free between tests."""
OWN_MOUNTS = (
    'mount -t tmpfs tmpfs /dev/shm'
    ' && { [ -z "$KEEP" ] || { mkdir /dev/shm/.keep && mount --bind "$KEEP" /dev/shm/.keep; }; }'
    ' && mount -t tmpfs tmpfs /tmp'
    ' && { [ -z "$KEEP" ] || { mkdir -p "$KEEP" && mount --move /dev/shm/.keep "$KEEP"'
    ' && rmdir /dev/shm/.keep; }; }'
    ' && exec "$0" "$@"'
)
"""Run in node b's new mount namespace before ``ray start``: a /tmp and /dev/shm of its own,
and the checkout (``$KEEP``, when it is under /tmp) kept in view through a bind mount made
before /tmp is covered, as another machine would have the code installed."""
KEEP = str(HERE.parent) if HERE.parent.is_relative_to("/tmp") else ""
"""The checkout, with its virtual environment, if node b's own /tmp would hide it."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _can_unshare() -> str:
    """Why node b cannot have mounts of its own here ("" if it can)."""
    if shutil.which("unshare") is None:
        return "no unshare command"
    try:
        done = subprocess.run(
            ["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /tmp"],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare failed: {exc}"
    return "" if done.returncode == 0 else f"no mount namespace: {done.stderr.strip()}"


class OtherMachine:
    """Node ``b``: ``ray start --block`` in a mount namespace of its own."""

    def __init__(self, address: str, known: set[str]) -> None:
        ray_bin = str(Path(sys.executable).with_name("ray"))
        ports = {
            f"--{name}": str(_free_port())
            for name in (
                "node-manager-port", "object-manager-port", "dashboard-agent-listen-port",
                "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port",
            )
        }  # fmt: skip
        argv = [
            "unshare", "-m", "--propagation", "private", "sh", "-c", OWN_MOUNTS,
            ray_bin, "start", f"--address={address}", "--block", "--num-cpus=1",
            '--resources={"b": 1}', f"--object-store-memory={80 * 2**20}",
            "--disable-usage-stats", *(f"{k}={v}" for k, v in ports.items()),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "KEEP": KEEP},
        )
        self.node_id = ""

        def joined() -> bool:
            assert self.proc.poll() is None, f"node b's ray start ended: {self.proc.stderr}"
            for node in ray.nodes():
                fresh = node.get("Alive") and node["NodeID"] not in known
                if fresh and node.get("Resources", {}).get("b"):
                    self.node_id = node["NodeID"]
                    return True
            return False

        wait_for(joined, 60, "node b to join the cluster", lambda: time.sleep(0.1))
        self.mnt = os.readlink(f"/proc/{self.proc.pid}/ns/mnt")

    def pids(self) -> list[int]:
        """Every process in the node's mount namespace."""
        found = []
        for pid in psutil.pids():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/ns/mnt") == self.mnt:
                    found.append(pid)
        return found

    def root(self) -> Path:
        """The node's file system as its processes see it (through /proc)."""
        return Path(f"/proc/{self.proc.pid}/root")

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run a command on the node (in its mount namespace)."""
        cmd = ["nsenter", "-t", str(self.proc.pid), "-m", *argv]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)

    def kill(self) -> None:
        """The machine is gone: every process of it killed at once; its /tmp and /dev/shm
        go with the last one."""
        for _ in range(3):  # a process forked meanwhile
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.proc.wait(10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


class TwoNodes:
    """The module's cluster: ``head`` offers ``{a: 1}``, ``b`` (another machine) ``{b: 1}``."""

    def __init__(self, temp: Path) -> None:
        self.temp = temp
        self.cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 2,
                "resources": {"a": 1},
                "object_store_memory": 80 * 2**20,
                "include_dashboard": False,
                "temp_dir": str(temp),
                "_system_config": FAST_HEALTH,
            },
        )
        ray.init(address=self.cluster.address, log_to_driver=False, configure_logging=False)
        self.head_id = self.cluster.head_node.node_id
        self.b: OtherMachine | None = None
        try:
            self.b = self.add_b()
        except BaseException:  # a driver left connected to a swept cluster aborts the worker
            self.close()
            raise

    def restore(self) -> None:
        """Both nodes up and idle: a lost ``b`` replaced, every other node counted dead by
        the GCS (else Ray may still place hosts there), every resource free again."""
        alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
        assert self.head_id in alive, "the head node died: the module's cluster is lost"
        if self.b is not None and (not self.b.alive or self.b.node_id not in alive):
            self.b.kill()
            self.b = None
        if self.b is None:
            self.b = self.add_b()
        wanted = {self.head_id, self.b_id}

        def healthy() -> bool:
            alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
            free, total = ray.available_resources(), ray.cluster_resources()
            idle = all(free.get(k) == total.get(k) == n for k, n in IDLE.items())
            return alive == wanted and idle

        wait_for(healthy, 60, "both nodes up and idle", lambda: time.sleep(0.1))

    def add_b(self) -> OtherMachine:
        """Start node ``b`` (again), once the GCS counts any b before it dead."""
        wait_for(lambda: not ray.cluster_resources().get("b"), 30, "the old b to be dead",
                 lambda: time.sleep(0.1))  # fmt: skip
        known = {n["NodeID"] for n in ray.nodes()}
        node = OtherMachine(self.cluster.address, known)
        wait_for(lambda: ray.available_resources().get("b") == 1, 30, "node b's resources")
        return node

    def lose_b(self) -> None:
        """Node ``b``'s machine is gone."""
        assert self.b is not None
        self.b.kill()
        self.b = None

    @property
    def b_id(self) -> str:
        assert self.b is not None
        return self.b.node_id

    def close(self) -> None:
        if self.b is not None:
            self.b.kill()
        ray.shutdown()
        self.cluster.shutdown()


@pytest.fixture(scope="module")
def cluster() -> Iterator[TwoNodes]:
    saved = private_token()  # a token of our own: nothing written to ~/.ray
    home_ray = Path.home() / ".ray"
    had_home_ray = home_ray.exists()
    temp = Path(tempfile.mkdtemp(prefix="plexa-raytest-"))
    (temp / "ray").mkdir()
    saved.update(mark_instance(temp))  # every process of the cluster: swept at the end
    why = _can_unshare()
    if why:
        pytest.skip(f"node b cannot be another machine here ({why}); needs root")
    saved["RAY_TMPDIR"] = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = str(temp)  # Ray's address file goes there, not to /tmp/ray
    cluster: TwoNodes | None = None
    try:
        cluster = TwoNodes(temp)
        yield cluster
    finally:
        if cluster is not None:
            cluster.close()
        left = sweep_ray(temp)
        restore_env(saved)
        assert not left, f"Ray processes left after the cluster's shutdown: {left}"
        assert had_home_ray or not home_ray.exists(), "Ray wrote to ~/.ray"


@pytest.fixture
def nodes(cluster: TwoNodes) -> TwoNodes:
    """The module's cluster, both nodes up and idle."""
    cluster.restore()
    return cluster


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder both nodes see (b has a /tmp of its own; /var/tmp is the machine's)."""
    folder = Path(tempfile.mkdtemp(prefix="plexa-raytest-", dir="/var/tmp"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def progress(status: dict[str, Any], actor: str) -> float:
    return float(status["actors"][actor].get("progress", {}).get("done", 0))


def load(text: str) -> Any:
    return plexa.loads(text)


def agents() -> list[int]:
    """Pids of the Ray workers running a node's plexa agent (``ray::NodeAgent``)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error, TypeError):
            if any("NodeAgent" in arg for arg in proc.info["cmdline"]):
                found.append(proc.pid)
    return found


def left_on(node: OtherMachine) -> list[str]:
    """What plexa keeps on node ``node`` while a run lives there (its agent's folder, the
    run's directory and shared memory): nothing once the run is over."""
    root = node.root()
    runtime = root / os.environ["PLEXA_RUNTIME_DIR"].lstrip("/")
    found = [str(p) for p in runtime.iterdir()] if runtime.is_dir() else []
    shm = root / "dev/shm"
    found += [e.name for e in shm.iterdir() if e.name.startswith(("plexa-", "plx"))]
    return found


def across(nodes: TwoNodes, name: str, more: str = "", links: str = "") -> Any:
    """A pipeline with ``src`` on the head ({a: 1}) sending to ``relay`` on b (its node,
    preferred), restarted on failure; ``more`` actors and ``links`` added."""
    return load(
        f"""
name: {name}
settings: {{launch: ray, ray: {{address: "{nodes.cluster.address}"}}, on_failure: continue}}
actors:
  src:   {{class: "actors:Source", options: {{count: 100000000, rate_hz: 200}},
           resources: {{custom: {{a: 1}}}}}}
  relay: {{class: "actors:Relay", restart: on-failure, backoff: 0.1,
           resources: {{node: "{nodes.b_id}", soft: true}}}}
{more}
connections:
  src.out: [relay.inp]
{links}
"""
    )


def test_actors_go_where_their_resources_are_and_their_group_comes_back_together_on_node_loss(
    nodes: TwoNodes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLEXA_DATA_DIR", str(tmp_path))  # checkpoints (travels to the actors)
    more = f"""\
  sink:  {{class: "actors:Counter", restart: on-failure, backoff: 0.1}}
  fit:   {{class: "actors:LongFit", restart: on-failure, backoff: 0.1, checkpoint_delta: 0.2,
           progress_delta: 0.05, resources: {{node: "{nodes.b_id}", soft: true}}}}"""
    spec = across(nodes, "twonode", more, "  relay.out: [sink.inp]")
    # plexa plans: src on the head ({a: 1}); relay and fit on b (their node, preferred),
    # sink with relay (linked). After b is lost the three come back together on the other
    # node, the head, fit from the checkpoint the nexus keeps (b's /tmp went with b).
    with started(spec) as nexus:
        status = nexus.wait_until(lambda st: st["actors"]["sink"]["msgs_in"] >= 50, 30)
        where = {name: a["node"] for name, a in status["actors"].items()}
        assert nodes.head_id[:8] in where["src"]
        assert all(nodes.b_id[:8] in where[name] for name in ("relay", "sink", "fit"))
        transport = {name: link["transport"] for name, link in status["links"].items()}
        assert transport == {"src.out->relay.inp": "zenoh", "relay.out->sink.inp": "iceoryx2"}
        assert status["actors"]["relay"]["host"] == status["actors"]["sink"]["host"]
        assert len(agents()) == 1  # a plexa agent on b, the node that is not the nexus's
        # b is another machine: its actors cannot see the run's directory here, and run
        # against b's agent, which keeps the run's files there
        assert nexus.paths.run_dir.is_dir() and nodes.b is not None
        relay = Path(f"/proc/{status['actors']['relay']['pid']}/root")
        assert not (relay / str(nexus.paths.run_dir).lstrip("/")).exists()
        assert left_on(nodes.b)
        # memory is measured where each process runs: here for src, by b's agent for relay
        measured = ("src", "relay", "sink", "fit")
        nexus.wait_until(lambda st: all(st["actors"][a]["rss_bytes"] for a in measured), 10)
        nexus.wait_until(lambda st: progress(st, "fit") > 1000, 30)
        nexus.poll(0.5)  # a checkpoint or two, which reach the nexus through b's agent
        before = nexus.invoke("fit", "where")
        nodes.lose_b()  # with its /tmp: the checkpoints written there are gone
        group = {"relay", "sink", "fit"}
        nexus.wait_until(lambda st: {f.actor for f in nexus.failures} >= group, 30)
        kinds = {f.actor: f.kind for f in nexus.failures}
        assert kinds == dict.fromkeys(group, FailureKind.HOST_LOST)
        assert "Ray node" in next(f.error for f in nexus.failures if f.actor == "sink")
        # what b's agent sent before b went: the checkpoint the nexus keeps for fit, a
        # checkpoint (0.2 s) and a report (0.5 s) behind at most (~1000 steps at full speed)
        with Store(checkpoint_path("twonode"), 1 << 30) as kept:
            held = kept.get("fit")["state"]["i"]
        assert held > before - 1000  # (it may also be one taken after ``before``)
        received = nexus.status()["actors"]["sink"]["msgs_in"]
        status = nexus.wait_until(
            lambda st: (
                all(st["actors"][name]["state"] == "running" for name in group)
                and st["actors"]["sink"]["msgs_in"] > received
            ),
            60,
        )
        assert all(nodes.head_id[:8] in status["actors"][name]["node"] for name in group)
        assert nexus.invoke("fit", "where") >= held, "not restored from the nexus's checkpoint"
        assert nexus.actors["fit"].restarts == 1
        report = nexus.quit()
        log = nexus.logs.path.read_text()
        links = nexus.status()["links"]
    assert set(report.graceful) == {"src", "relay", "sink", "fit"}
    assert report.exit_code == 3  # failures, every one recovered
    for name, link in links.items():  # every frame accounted, lost ones with the node
        assert link["sent"] == link["received"] + link["dropped"] + link["lost"], name
        assert link["in_flight"] == 0, name
    assert links["relay.out->sink.inp"]["received"] > 0
    restored = [line for line in log.splitlines() if "restored from the last checkpoint" in line]
    assert len(restored) == 1 and "fit" in restored[0], restored  # the fit on the head
    wait_for(lambda: not agents(), 10, "the node agents to end with the run")


def test_a_node_agent_killed_while_its_node_lives_is_replaced_and_its_actors_come_back(
    nodes: TwoNodes,
) -> None:
    spec = across(nodes, "agentkill")
    with started(spec) as nexus:
        nexus.wait_until(lambda st: st["actors"]["relay"]["msgs_in"] >= 50, 30)
        (agent,) = agents()
        os.kill(agent, signal.SIGKILL)  # the node lives on
        nexus.wait_until(lambda st: bool(nexus.failures), 30)
        received = nexus.status()["actors"]["relay"]["msgs_in"]
        status = nexus.wait_until(
            lambda st: (
                st["actors"]["relay"]["state"] == "running"
                and st["actors"]["relay"]["msgs_in"] > received + 20
            ),
            60,
        )
        assert nodes.b_id[:8] in status["actors"]["relay"]["node"]
        assert agents() and agent not in agents()  # a new agent on b
        kinds = [(f.actor, f.kind) for f in nexus.failures]
        nexus.quit()
        links = nexus.status()["links"]
    assert {actor for actor, _ in kinds} == {"relay"}, kinds
    link = links["src.out->relay.inp"]
    assert link["sent"] == link["received"] + link["dropped"] + link["lost"]
    wait_for(lambda: not agents(), 10, "the node agents to end with the run")
    # the new agent removed its files; the killed one's are what plexa cleanup is for
    assert nodes.b is not None and left_on(nodes.b)
    done = nodes.b.run(sys.executable, "-m", "plexa", "cleanup")
    assert done.returncode == 0, done.stderr
    assert "removed " in done.stdout
    assert not left_on(nodes.b), "plexa cleanup on node b left files"


def test_imap_on_ray_tasks_returns_every_result_once(nodes: TwoNodes) -> None:
    spec = load(
        f"""
name: raypool
settings: {{launch: ray, pool: ray, ray: {{address: "{nodes.cluster.address}"}}}}
actors:
  ordered: {{class: "ray_actors:RayMapper", options: {{n: 40}}}}
  unordered: {{class: "ray_actors:RayMapper", options: {{n: 40, ordered: false}}}}
"""
    )
    with started(spec) as nexus:
        nexus.wait_until(
            lambda st: all(a.get("progress", {}).get("done") == 40 for a in st["actors"].values()),
            60,
        )
        nexus.stop()
        ordered = nexus.store.get("result:ordered")
        unordered = nexus.store.get("result:unordered")
    assert ordered == [[i, i * i] for i in range(40)]
    assert sorted(unordered) == ordered


def test_an_exception_in_a_ray_task_fails_the_actor_with_the_remote_traceback(
    nodes: TwoNodes,
) -> None:
    spec = load(
        f"""
name: raypoolfail
settings: {{launch: ray, pool: ray, ray: {{address: "{nodes.cluster.address}"}},
            on_failure: continue}}
actors:
  mapper: {{class: "ray_actors:RayMapper", options: {{n: 30, fail_at: 17}}}}
"""
    )
    with started(spec) as nexus:
        wait_for(lambda: nexus.failures, 60, "the failure", lambda: nexus.poll(0.05))
        failure = nexus.failures[0]
    assert failure.kind is FailureKind.EXCEPTION
    assert failure.error == "ValueError: bad item 17"
    assert "in square_or_fail" in failure.traceback  # the task's own frames
    assert "RemoteError" in failure.traceback


def test_abort_cancels_the_ray_tasks_in_flight_and_pause_holds_new_ones(
    nodes: TwoNodes, shared: Path
) -> None:
    marks = shared / "marks"  # the tasks run on both nodes: b has a /tmp of its own
    marks.touch()
    spec = load(
        f"""
name: raypoolabort
settings: {{launch: ray, pool: ray, ray: {{address: "{nodes.cluster.address}"}}}}
actors:
  mapper: {{class: "ray_actors:RayMapper", options: {{n: 1000, marks: "{marks}"}},
            workers: 2}}
"""
    )

    def done() -> int:
        return len(marks.read_text().splitlines())

    with started(spec) as nexus:
        wait_for(lambda: done() >= 4, 60, "tasks to finish", lambda: nexus.poll(0.05))
        nexus.pause()
        nexus.poll(1.0)  # the pause is held by now; what was in flight may still end
        held = done()
        nexus.poll(1.0)  # 3 task lengths more: a pool that went on would finish ~6 new items
        # items go out in order, at most the window (2 * workers) ahead of what was consumed,
        # and nothing consumed is unmarked: whatever ends during the pause was sent before it
        late = [int(line.split()[0]) for line in marks.read_text().splitlines()[held:]]
        assert all(index < held + 4 for index in late), f"new tasks ran while paused: {late}"
        held = done()
        nexus.resume()
        wait_for(lambda: done() > held, 30, "tasks after resume", lambda: nexus.poll(0.05))
        nexus.abort()
        assert nexus.actors["mapper"].state is ActorState.STOPPED
        after_abort = done()
        nexus.poll(1.0)
        assert done() == after_abort, "cancelled tasks still finished"


def test_plexa_run_with_ray_address_runs_the_file_on_the_cluster(
    nodes: TwoNodes, tmp_path: Path
) -> None:
    config = tmp_path / "pipe.yaml"
    config.write_text(
        """
name: onray
actors:
  src:  {class: "actors:Source", options: {count: 200}}
  sink: {class: "actors:Counter"}
connections:
  src.out: [sink.inp]
"""
    )
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "plexa",
            "run",
            str(config),
            "--ray",
            nodes.cluster.address,
            "--duration",
            "3",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    status = json.loads(run.stdout)
    assert status["links"]["src.out->sink.inp"]["sent"] == 200
    assert status["actors"]["sink"]["msgs_in"] == 200
    assert all("node" in a for a in status["actors"].values())


def test_an_actor_no_node_can_take_times_out_naming_what_it_waits_for(nodes: TwoNodes) -> None:
    spec = load(
        f"""
name: nowhere
settings: {{launch: ray, ray: {{address: "{nodes.cluster.address}"}}, setup_timeout: 3}}
actors:
  here:  {{class: "actors:Counter"}}
  there: {{class: "actors:Counter", resources: {{num_cpus: 1, custom: {{telescope: 1}}}}}}
"""
    )
    with plexa.Nexus(spec) as nexus:
        with pytest.raises(plexa.Timeout) as err:
            nexus.start()
        # here fits a node: it comes up, if not within the 3 s (a Ray worker and an actor
        # process can take longer to start on a busy machine), then soon after; there never
        wait_for(lambda: nexus.actors["here"].connected, 60, "here", lambda: nexus.poll(0.05))
        there = nexus.actors["there"].doing
        report = nexus.quit()
    assert "there (waiting for a Ray node that offers num_cpus 1, telescope 1)" in str(err.value)
    assert there == "waiting for a Ray node that offers num_cpus 1, telescope 1"
    assert report.failed == ()


def test_a_killed_nexus_takes_its_node_agents_along_and_cleanup_removes_what_is_left(
    nodes: TwoNodes, tmp_path: Path
) -> None:
    from plexa.core.paths import RunPaths
    from plexa.edges.client import connect
    from plexa.nexus.cleanup import cleanup

    config = tmp_path / "pipe.yaml"
    config.write_text(
        f"""
name: killedtwo
settings: {{launch: ray, ray: {{address: "{nodes.cluster.address}"}}}}
actors:
  src:  {{class: "actors:Source", options: {{count: 100000000, rate_hz: 100}},
          resources: {{custom: {{a: 1}}}}}}
  sink: {{class: "actors:Counter", resources: {{custom: {{b: 1}}}}}}
connections:
  src.out: [sink.inp]
"""
    )
    with plexa_server(config, "rayk", up_s=60) as server:
        with connect(server.name) as client:
            client.request("setup")
            status = client.status()
        assert status["links"]["src.out->sink.inp"]["transport"] == "zenoh"
        pids = [a["pid"] for a in status["actors"].values()]
        run_dir = RunPaths.for_run(status["run"]["id"]).run_dir
        assert nodes.b is not None and len(agents()) == 1 and left_on(nodes.b)
        assert (run_dir / "zenoh.sock").exists()
        server.proc.kill()
        server.proc.wait()

        def gone() -> bool:
            return not agents() and not any(psutil.pid_exists(p) for p in pids)

        wait_for(gone, 30, "the node agents and actors to end with the nexus")
        cleanup()
        assert not run_dir.exists()  # sockets, certificates: the run's directory is gone
        # on b, what the agent could not remove before Ray ended it, plexa cleanup there does
        done = nodes.b.run(sys.executable, "-m", "plexa", "cleanup")
        assert done.returncode == 0, done.stderr
        assert not left_on(nodes.b), "plexa cleanup on node b left files"
