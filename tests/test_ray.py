"""``launch: ray`` on a local Ray instance that plexa starts and stops, and the checks of
what a pipeline file says about Ray (``docs/ray.md``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from ray.exceptions import ActorDiedError

import plexa
from conftest import HERE, plexa_server, wait_for
from plexa.core.lifecycle import FailureKind
from plexa.core.spec import Resources
from plexa.launch.ray import actor_options
from plexa.launch.ray_fate import NODE_GRACE_S, Inquest
from plexa.launch.ray_local import ray_leftovers
from plexa.launch.ray_place import NodeView, Plan, choose_node, plan

ROOT = HERE.parent


def test_launch_pool_ray_and_resources_are_read_from_the_file() -> None:
    spec = plexa.loads(
        """
name: t
settings: {launch: ray, pool: ray, ray: {num_cpus: 2, object_store_memory: 100MB}}
actors:
  cam: {class: "actors:Source", resources: {num_cpus: 1, num_gpus: 0.5, memory: 1GB,
        custom: {camera: 1}, labels: {zone: lab2}}}
"""
    )
    assert spec.settings.launch == "ray" and spec.settings.pool == "ray"
    assert spec.settings.ray.num_cpus == 2 and spec.settings.ray.object_store_memory == 100e6
    options = actor_options(spec.actors["cam"].resources)
    assert options == {
        "num_cpus": 1.0,
        "num_gpus": 0.5,
        "memory": 1_000_000_000,
        "resources": {"camera": 1.0},
        "label_selector": {"zone": "lab2"},
        "max_restarts": 0,  # restarts are plexa's
        "max_task_retries": 0,
        "max_concurrency": 8,
    }


def test_an_actor_without_resources_fits_anywhere() -> None:
    spec = plexa.loads('name: t\nactors: {cam: {class: "actors:Source"}}\n')
    assert actor_options(spec.actors["cam"].resources)["num_cpus"] == 0


A, B = "ab" * 28, "cd" * 28  # node ids


def test_a_soft_node_is_kept_while_it_is_there_and_forgotten_once_it_is_gone() -> None:
    soft = Resources(node="10.0.0.7", soft=True)
    there = actor_options(soft, {"10.0.0.7": A, A: A})["scheduling_strategy"]
    assert (there.node_id, there.soft) == (A, False)
    assert "scheduling_strategy" not in actor_options(soft, {B: B})
    hard = actor_options(Resources(node=A), {})["scheduling_strategy"]
    assert (hard.node_id, hard.soft) == (A, False)  # Ray then fails it: plexa restarts


class FakeRay:
    """Answers to object refs as Ray would: a ref is a key of ``answers`` once it is ready,
    its value the result (or the exception ``ray.get`` raises)."""

    def __init__(self) -> None:
        self.answers: dict[str, object] = {}

    def wait(self, refs: list[str], timeout: float) -> tuple[list[str], list[str]]:
        return [r for r in refs if r in self.answers], [r for r in refs if r not in self.answers]

    def get(self, ref: str) -> object:
        answer = self.answers[ref]
        if isinstance(answer, BaseException):
            raise answer
        return answer


def verdict(inquest: Inquest, ray: FakeRay, node_up: bool, seconds: float = 5.0) -> object:
    """Poll ``inquest`` like the nexus does until it settles (the GCS seeing the node as
    ``node_up``); None if it is still undecided after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not inquest.settle(ray, lambda node: node_up):
        if time.monotonic() > deadline:
            return "undecided"
        time.sleep(0.01)
    return inquest.failure


KILL = -9
NODE_DIED = ActorDiedError()
NODE_DIED.error_msg = "The actor died because its node has died. Node Id: " + A


def test_an_exit_by_a_signal_nobody_sent_is_believed_only_while_the_hosts_raylet_runs() -> None:
    ray = FakeRay()
    up = Inquest(KILL, A, "10.0.0.7 (abababab)", probe="up")
    assert up.settle(ray, lambda node: True) is False  # the host has not answered yet
    ray.answers["up"] = True
    assert verdict(up, ray, node_up=True) is None  # the exit code says it all: killed
    ray.answers["down"] = False  # its raylet is gone: the GCS will count the node dead
    lost = verdict(Inquest(KILL, A, "10.0.0.7 (abababab)", probe="down"), ray, node_up=True)
    assert lost == (FailureKind.HOST_LOST, "its Ray node 10.0.0.7 (abababab) was lost")
    ray.answers["dead"] = NODE_DIED  # the host died since it reported the exit
    assert verdict(Inquest(KILL, A, "n", probe="dead"), ray, node_up=True) == (
        FailureKind.HOST_LOST,
        "its Ray node n was lost",
    )
    unanswered = Inquest(KILL, A, "n", probe="never")  # while the GCS already knows
    assert verdict(unanswered, ray, node_up=False) == (
        FailureKind.HOST_LOST,
        "its Ray node n was lost",
    )


def test_a_dead_host_is_host_lost_if_its_node_is_counted_dead_within_the_grace() -> None:
    ray = FakeRay()
    died = ActorDiedError()
    assert verdict(Inquest(KILL, A, "n", error=died), ray, node_up=False) == (
        FailureKind.HOST_LOST,
        "its Ray node n was lost",
    )
    start = time.monotonic()
    crashed = verdict(Inquest(KILL, A, "n", error=died), ray, node_up=True)
    assert crashed == (FailureKind.CRASHED, f"its Ray actor died: {ActorDiedError.BASE_ERROR_MSG}")
    assert time.monotonic() - start >= NODE_GRACE_S  # the GCS was given its grace
    never_placed = verdict(Inquest(KILL, None, "", error=died), ray, node_up=True, seconds=0.5)
    assert never_placed == crashed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("settings: {launch: rey}", "settings.launch: must be one of local, ray, not 'rey'"),
        ("settings: {pool: ray}", "settings.pool: pool: ray needs a Ray cluster"),
        ("settings: {ray: {num_cpu: 2}}", "unknown key 'num_cpu' (did you mean 'num_cpus'?)"),
        ("settings: {ray: {object_store_memory: 1MB}}", "at least 75MB"),
        ("actors: {a: {class: 'actors:Source', resources: {num_cpu: 1}}}", "'num_cpus'?"),
        ("actors: {a: {class: 'actors:Source', resources: {memory: lots}}}", "must be a size"),
        ("actors: {a: {class: 'actors:Source', resources: {custom: {x: -1}}}}", "positive"),
        ("actors: {a: {class: 'actors:Source', resources: {node: 3}}}", "Ray node id"),
        ("actors: {a: {class: 'actors:Source', resources: {labels: [a]}}}", "label names"),
    ],
)
def test_wrong_ray_settings_and_resources_are_named_with_their_line(
    text: str, message: str
) -> None:
    body = f"name: t\n{text}\n"
    if "actors" not in text:
        body += "actors: {a: {class: 'actors:Source'}}\n"
    with pytest.raises(plexa.ConfigError) as err:
        plexa.loads(body)
    assert message in str(err.value)
    assert "<string>:2:" in str(err.value)


@pytest.mark.slow
def test_the_imaging_example_on_a_local_ray_accounts_for_every_frame_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    config = tmp_path / "imaging.yaml"
    text = (ROOT / "examples" / "imaging.yaml").read_text()
    on_ray = "store_size: 64MB\n  launch: ray\n  ray: {num_cpus: 1}\n"
    config.write_text(text.replace("store_size: 64MB\n", on_ray))
    shm_before = set(os.listdir("/dev/shm"))
    home_ray = Path.home() / ".ray"
    had_home_ray = home_ray.exists()
    before = {p for p, _ in ray_leftovers()}

    def sessions() -> set[Path]:
        return set(Path(tempfile.gettempdir()).glob("ray/session_*"))

    sessions_before = sessions()
    run = subprocess.run(
        [sys.executable, "-m", "plexa", "run", str(config), "--duration", "3", "--json"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    status = json.loads(run.stdout)
    frames = status["links"]["camera.frames->traces.frames"]
    traces = status["links"]["traces.traces->monitor.traces"]
    assert frames["sent"] >= 100
    assert frames["sent"] == status["actors"]["traces"]["msgs_in"]  # block: every frame
    assert frames["lost"] == frames["dropped"] == 0
    assert traces["sent"] == frames["sent"]  # one trace per frame
    assert status["actors"]["monitor"]["msgs_in"] + traces["dropped"] == traces["sent"]
    nodes = {a["node"] for a in status["actors"].values()}
    assert len(nodes) == 1  # one local node
    assert {a["host"] for a in status["actors"].values()} == {""}  # one group: no Zenoh
    assert {link["transport"] for link in status["links"].values()} == {"iceoryx2"}
    # nothing of Ray is left: no process, no folder, no token in ~/.ray, no shared memory
    assert {p for p, _ in ray_leftovers()} <= before  # other runs on this machine may end theirs
    assert sessions() <= sessions_before  # no new Ray session folder (others may go)
    assert had_home_ray or not home_ray.exists()
    new_shm = set(os.listdir("/dev/shm")) - shm_before
    assert not [e for e in new_shm if "plasma" in e or "ray" in e.lower()], new_shm
    assert "Token authentication" not in run.stderr


@pytest.mark.slow
def test_a_nexus_killed_on_ray_takes_its_actors_along_and_cleanup_removes_what_ray_left(
    tmp_path: Path,
) -> None:
    from plexa.edges.client import connect
    from plexa.nexus.cleanup import cleanup

    config = tmp_path / "pipe.yaml"
    config.write_text(
        """
name: killed
settings: {launch: ray, ray: {num_cpus: 1}}
actors:
  src:  {class: "actors:Source", options: {count: 100000000, rate_hz: 100}}
  sink: {class: "actors:Counter"}
connections:
  src.out: [sink.inp]
"""
    )
    # starting a local Ray instance and its workers can take most of a minute on a busy machine
    with plexa_server(config, "ray", up_s=90) as server:
        with connect(server.name) as client:
            client.request("setup")
            status = client.status()
        pids = [a["pid"] for a in status["actors"].values()]
        run_id = status["run"]["id"]
        assert all(pids) and all(a["node"] for a in status["actors"].values())
        server.proc.kill()
        server.proc.wait()
        # Ray ends the nexus's actors (their hosts), and each actor process its host's child
        wait_for(lambda: not any(psutil.pid_exists(p) for p in pids), 30, "the actors to end")
        left = list(ray_leftovers(run_id))
        assert len(left) == 1, "a killed nexus leaves its Ray folder (and maybe Ray's agents)"
        folder, pids = left[0]
        other = tmp_path / "other-root"
        other.mkdir(mode=0o700)
        with pytest.MonkeyPatch.context() as env:  # a cleanup for another runtime directory
            env.setenv("PLEXA_RUNTIME_DIR", str(other))
            assert str(folder) not in cleanup().files
        assert folder.is_dir(), "another runtime directory's cleanup left this run's Ray alone"
        # Ray's agents outlive a killed nexus for a while, but how long is Ray's business: on a
        # busy machine they may be gone already, and then only the folder is left to remove
        report = cleanup()
        assert str(folder) in report.files
        # an agent may also end by itself between the two looks: cleanup names those it ended
        reported = [p for p in report.processes if p.endswith(f"(Ray of run {run_id})")]
        assert all(int(p.split()[0]) in pids for p in reported), (reported, pids)
        assert not list(ray_leftovers(run_id))
        assert not any(psutil.pid_exists(p) for p in pids)


def _node(node_id: str, ip: str, **total: float) -> NodeView:
    return NodeView(node_id, ip, {"CPU": 2.0, **total})


PLACED = """
name: t
settings: {launch: ray}
actors:
  cam:   {class: "actors:Source", resources: {custom: {camera: 1}}}
  relay: {class: "actors:Relay"}
  sink:  {class: "actors:Counter"}
  gpu:   {class: "actors:Counter", resources: {num_gpus: 1}}
  far:   {class: "actors:Counter", resources: {custom: {telescope: 1}}}
connections:
  cam.out: [relay.inp]
  relay.out: [sink.inp, gpu.inp]
"""


def test_linked_actors_are_planned_on_one_node_and_each_node_is_a_group() -> None:
    spec = plexa.loads(PLACED)
    nodes = [_node(A, "10.0.0.1", camera=1.0), _node(B, "10.0.0.2", GPU=1.0)]
    placed = plan(spec, nodes)
    # relay and sink follow cam (linked); gpu needs the GPU node; far fits no node yet
    assert placed.groups == {
        "cam": "ray-1", "relay": "ray-1", "sink": "ray-1", "gpu": "ray-2", "far": "ray-3",
    }  # fmt: skip
    assert placed.nodes == {"ray-1": A, "ray-2": B, "ray-3": None}


def test_on_one_node_there_is_one_group_and_no_host_lines() -> None:
    spec = plexa.loads(PLACED.replace(", resources: {custom: {telescope: 1}}", ""))
    one = [_node(A, "10.0.0.1", camera=1.0, GPU=1.0)]
    assert plan(spec, one) == Plan(dict.fromkeys(spec.actors, ""), {"": A})
    assert plan(spec, one, home=A) == Plan(dict.fromkeys(spec.actors, ""), {"": A})


def test_one_group_on_a_node_that_is_not_the_nexus_s_is_a_host_of_its_own() -> None:
    # node B is another machine: its actors run against B's agent, so they get a host line
    spec = plexa.loads(PLACED.replace(", resources: {custom: {telescope: 1}}", ""))
    nodes = [_node(A, "10.0.0.1"), _node(B, "10.0.0.2", camera=1.0, GPU=1.0)]
    placed = plan(spec, nodes, home=A)
    assert set(placed.groups.values()) == {"ray-1"} and placed.nodes == {"ray-1": B}


def test_an_actor_free_to_go_anywhere_goes_to_the_nexus_s_node() -> None:
    spec = plexa.loads('name: t\nactors: {a: {class: "actors:Counter"}}\n')
    nodes = [_node(A, "10.0.0.1"), _node(B, "10.0.0.2")]
    assert plan(spec, nodes, home=B) == Plan({"a": ""}, {"": B})


def test_a_lost_group_goes_to_one_node_with_room_for_all_of_its_members() -> None:
    members = [Resources(num_cpus=1), Resources(num_cpus=1, custom={"b": 1})]
    nodes = [_node(A, "10.0.0.1"), _node(B, "10.0.0.2", b=1.0)]
    assert choose_node(members, nodes, {}) == B
    assert choose_node(members, nodes, {B: {"CPU": 1.0}}) is None  # b has room for one only
    assert choose_node(members[:1], nodes, {B: {"CPU": 1.0}}) == A
    soft = [Resources(node="10.0.0.9", soft=True)]  # its node is gone: anywhere
    assert choose_node(soft, nodes, {}) in (A, B)
    assert choose_node([Resources(node="10.0.0.9")], nodes, {}) is None
