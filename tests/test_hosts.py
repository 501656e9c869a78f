"""Pipelines across hosts: real ``plexa agent`` processes on loopback, the nexus joining them,
actors started there, frames crossing on Zenoh, remote calls, departures and refusals."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

pytest.importorskip("zenoh", reason="eclipse-zenoh is not installed (extra 'hosts')")

import plexa
import plexa.recording
from conftest import started, wait_for
from hostrig import AgentProc, free_port, placed
from plexa.core import hostproto as hp
from plexa.core.config import load, loads, validate
from plexa.core.lifecycle import FailureKind
from plexa.data.shm_check import shm_problem
from plexa.data.zenoh_session import ZenohSettings, open_session
from plexa.edges.tables import render_status
from plexa.launch.remote import HostsLauncher, wait_joined
from plexa.nexus.cleanup import cleanup, list_runs

DEPARTURE = 2.0
"""Seconds within which a departed host (or nexus) must be noticed (issue 14)."""

CHAIN = """
name: chain
settings: {setup_timeout: 20}
actors:
  src: {class: "actors:Source", options: {count: 300, size: 4096, rate_hz: 400}}
  mid: {class: "actors:Relay"}
  dst: {class: "actors:Sink"}
connections:
  src.out: [mid.inp]
  mid.out: [dst.inp]
"""


@pytest.fixture
def two_agents() -> Iterator[dict[str, AgentProc]]:
    agents = {s: AgentProc(s, f"tcp/127.0.0.1:{free_port()}") for s in ("a", "b")}
    yield agents
    for agent in agents.values():
        agent.stop()


def test_two_agents_on_loopback_carry_every_frame_and_status_names_the_hosts(
    two_agents: dict[str, AgentProc],
) -> None:
    spec = placed(CHAIN, {s: a.endpoint for s, a in two_agents.items()}, {"src": "a", "mid": "b"})
    with plexa.Nexus(spec) as nexus:
        nexus.start()
        nexus.setup()
        nexus.run()
        status = nexus.status()
        assert {n: a["host"] for n, a in status["actors"].items()} == {
            "src": "a",
            "mid": "b",
            "dst": "",
        }
        table = render_status(status)
        assert "src@a" in table and "mid@b" in table
        listed = [r for r in list_runs() if r.run_id == nexus.paths.run_id]
        assert sorted(listed[0].record["hosts"]) == ["a", "b"]
        for name in ("src", "mid"):  # started by the agent, not by the nexus
            pid = status["actors"][name]["pid"]
            assert psutil.Process(pid).parent().pid == two_agents[spec.host_of(name)].pid
        nexus.wait_until(lambda st: st["links"]["mid.out->dst.inp"]["received"] >= 300, 30)
        usage = nexus.status()["actors"]["mid"]  # measured on its host, reported by the agent
        assert usage["rss_bytes"] and usage["rss_bytes"] > 10 * 2**20, usage
        nexus.stop()
        seen = nexus.store.get("result:dst")["seen"]
        assert seen == list(range(300))
        links = nexus.status()["links"]
        for link in links.values():  # counters of remote actors reach the nexus
            assert link["sent"] == link["received"] == 300, links
        report = nexus.quit()
    assert report.clean, report


def test_invoke_set_and_lifecycle_work_the_same_for_a_remote_actor(
    two_agents: dict[str, AgentProc],
) -> None:
    text = """
name: remote-fit
actors:
  fit: {class: "actors:LongFit"}
"""
    spec = placed(text, {"b": two_agents["b"].endpoint}, {"fit": "b"})
    with plexa.Nexus(spec) as nexus:
        nexus.start()
        nexus.setup()
        nexus.run()
        nexus.set_option("fit", "rate", 2.5)
        with pytest.raises(plexa.RemoteError, match="rate must be float, not str"):
            nexus.set_option("fit", "rate", "fast")
        assert isinstance(nexus.invoke("fit", "where"), int)
        with pytest.raises(plexa.RemoteError) as err:
            nexus.invoke("fit", "explode")
        assert "RuntimeError: kaboom" in str(err.value)
        assert "in explode" in err.value.traceback
        nexus.pause()
        held = nexus.invoke("fit", "where")
        assert nexus.invoke("fit", "where") == held
        nexus.resume()
        nexus.stop()
        assert nexus.quit().clean


def test_a_wrong_key_is_refused_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "agent.key").write_text("right horse battery staple\n")
    (tmp_path / "nexus.key").write_text("wrong\n")
    agent = AgentProc("b", f"tcp/127.0.0.1:{free_port()}", key_file=tmp_path / "agent.key")
    try:
        text = "name: keyed\nactors:\n  idle: {class: 'actors:Chatty'}\n"
        spec = placed(text, {"b": agent.endpoint}, {"idle": "b"},
                      key_file=str(tmp_path / "nexus.key"))  # fmt: skip
        with plexa.Nexus(spec) as nexus, pytest.raises(plexa.ActorFailed, match="wrong key"):
            nexus.start()
        right = placed(text, {"b": agent.endpoint}, {"idle": "b"},
                       key_file=str(tmp_path / "agent.key"))  # fmt: skip
        with plexa.Nexus(right) as nexus:
            nexus.start()
            assert nexus.status()["actors"]["idle"]["pid"]
    finally:
        err = agent.stop()
    assert "wrong key for host b" in err


def test_another_protocol_version_is_refused_with_the_reason() -> None:
    agent = AgentProc("b", f"tcp/127.0.0.1:{free_port()}")
    session = open_session(ZenohSettings(connect=(agent.endpoint,)))
    try:
        facts = hp.local_facts(plexa.__version__)
        old = hp.HostFacts(**{**{f: getattr(facts, f) for f in facts.__struct_fields__},
                              "protocol": hp.PROTOCOL + 1})  # fmt: skip
        join = hp.Join(facts=old, run_id="00000000", run_name="x", scope="b", spec=b"{}")
        deadline = time.monotonic() + 10
        answer = None
        while answer is None and time.monotonic() < deadline:
            for reply in session.get(hp.join_key("b"), payload=hp.encode(join), timeout=2):
                if reply.ok is not None:
                    answer = hp.decode_reply(reply.ok.payload.to_bytes())
        assert isinstance(answer, hp.Refused)
        assert f"protocol version {hp.PROTOCOL + 1}" in answer.reason
        other = hp.HostFacts(**{**{f: getattr(facts, f) for f in facts.__struct_fields__},
                                "plexa": "0.0.1"})  # fmt: skip
        assert "plexa 0.0.1" in hp.mismatch(facts, other)
    finally:
        session.close()
        agent.stop()


@pytest.mark.slow
def test_a_killed_agent_fails_its_actors_as_host_lost_within_2s_and_they_return_with_it() -> None:
    port = free_port()
    agent = AgentProc("b", f"tcp/127.0.0.1:{port}")
    text = """
name: lost
settings: {setup_timeout: 20}
actors:
  fit: {class: "actors:LongFit", restart: on-failure, max_restarts: 5, backoff: 0.2}
  here: {class: "actors:Chatty", options: {every: 0.2}}
"""
    spec = placed(text, {"b": agent.endpoint}, {"fit": "b"})
    try:
        with plexa.Nexus(spec) as nexus:
            nexus.start()
            nexus.setup()
            nexus.run()
            pid = nexus.status()["actors"]["fit"]["pid"]
            agent.kill()
            killed = time.monotonic()

            def lost() -> bool:
                nexus.poll(0.02)
                return any(f.kind is FailureKind.HOST_LOST for f in nexus.failures)

            wait_for(lost, DEPARTURE + 1, "a host_lost failure")
            assert time.monotonic() - killed < DEPARTURE
            wait_for(lambda: not psutil.pid_exists(pid) or _zombie(pid), DEPARTURE,
                     "the actor on the killed agent's host to end")  # fmt: skip
            assert nexus.actors["here"].state.value == "running"  # the rest goes on
            agent = AgentProc("b", f"tcp/127.0.0.1:{port}")
            nexus.wait_until(
                lambda st: (
                    st["actors"]["fit"]["state"] == "running"
                    and st["actors"]["fit"]["restarts"] >= 1
                ),
                30,
            )
            assert nexus.invoke("fit", "where") >= 0
            failure = next(f for f in nexus.failures if f.kind is FailureKind.HOST_LOST)
            assert "host b left" in failure.error
    finally:
        agent.stop()
    report = cleanup()  # what the killed agent's run left on its host
    assert report.files, report
    assert not (Path(os.environ["PLEXA_RUNTIME_DIR"]) / "agent-b").exists()


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_an_agent_stopped_with_sigterm_leaves_nothing_behind() -> None:
    agent = AgentProc("b", f"tcp/127.0.0.1:{free_port()}")
    root = Path(os.environ["PLEXA_RUNTIME_DIR"])
    assert (root / "agent-b").is_dir()
    agent.stop()
    assert not (root / "agent-b").exists()


def test_hosts_and_host_lines_are_read_from_the_pipeline_file(tmp_path: Path) -> None:
    (tmp_path / "pipe.yaml").write_text(
        "name: placed\n"
        "hosts:\n  gpu: {endpoint: tls/192.0.2.20:7447, key_file: gpu.key}\n"
        "tls: {ca: ca.pem, cert: nexus.pem, key: nexus.key}\n"
        "actors:\n"
        "  cam: {class: 'actors:Source'}\n"
        "  fit: {class: 'actors:Sink', host: gpu}\n"
        "connections:\n  cam.out: [fit.inp]\n"
    )
    spec = load(tmp_path / "pipe.yaml")
    assert spec.host_of("fit") == "gpu" and spec.host_of("cam") == ""
    assert spec.hosts["gpu"].key_file == str(tmp_path / "gpu.key")
    assert spec.tls is not None and spec.tls.ca == str(tmp_path / "ca.pem")
    assert spec.crosses_hosts(spec.links[0])
    (tmp_path / "bad.yaml").write_text(
        "hosts:\n  gpu: {endpoint: udp/192.0.2.20:7447}\n"
        "actors:\n  fit: {class: 'actors:Sink', host: gpo}\n"
    )
    issues = [str(i) for i in validate(tmp_path / "bad.yaml")]
    assert any("hosts.gpu.endpoint: must be tls/HOST:PORT" in i for i in issues), issues
    assert any("actors.fit.host: unknown host 'gpo'" in i for i in issues), issues


def test_plain_tcp_to_an_agent_is_refused_without_insecure(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "hosts:\n  gpu: {endpoint: tcp/127.0.0.1:7447}\n"
        "actors:\n  fit: {class: 'actors:Sink', host: gpu}\n"
    )
    issues = [str(i) for i in validate(tmp_path / "p.yaml")]
    assert any("hosts.gpu.endpoint: plain tcp lets anyone" in i for i in issues), issues
    spec = placed("actors:\n  fit: {class: 'actors:Chatty'}\n", {"gpu": "tcp/127.0.0.1:7"},
                  {"fit": "gpu"}, insecure=False)  # fmt: skip
    with plexa.Nexus(spec) as nexus, pytest.raises(plexa.ConfigError, match="plain tcp"):
        nexus.start()
    agent = subprocess.run(
        [sys.executable, "-m", "plexa", "agent", "b", "--listen", "tcp/127.0.0.1:7"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert agent.returncode == 2 and "plain tcp lets anyone" in agent.stderr


@pytest.mark.slow
def test_a_killed_nexus_leaves_nothing_on_the_agent_host_after_2s(tmp_path: Path) -> None:
    agent = AgentProc("b", f"tcp/127.0.0.1:{free_port()}")
    (tmp_path / "pipe.yaml").write_text(
        f"name: orphan\nhosts:\n  b: {{endpoint: '{agent.endpoint}', insecure: true}}\n"
        "actors:\n  far: {class: 'actors:Chatty', host: b}\n"
        "  near: {class: 'actors:Chatty'}\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    nexus = subprocess.Popen(
        [sys.executable, "-m", "plexa", "server", str(tmp_path / "pipe.yaml"), "--name", "orphan"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    root = Path(os.environ["PLEXA_RUNTIME_DIR"])
    try:
        parent = psutil.Process(agent.pid)
        wait_for(lambda: len(parent.children()) == 1, 30, "the agent to start its actor")
        far = parent.children()[0]
        agent_runs = {p for p in root.iterdir() if (p / "spec.json").exists()}
        nexus.kill()
        nexus.wait(10)
        killed = time.monotonic()
        wait_for(lambda: not parent.children(), DEPARTURE, "the agent to end the orphan actor")
        assert not psutil.pid_exists(far.pid) or _zombie(far.pid)
        wait_for(
            lambda: len([p for p in agent_runs if p.exists()]) <= 1,  # the nexus's own: cleanup
            DEPARTURE + 1 - (time.monotonic() - killed),
            "the agent to remove its run's files",
        )
    finally:
        if nexus.poll() is None:
            nexus.kill()
            nexus.wait()
        agent.stop()
    assert cleanup().files  # the killed nexus's own run, on its own host


def test_shared_memory_that_cannot_be_used_puts_links_on_zenoh_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PLEXA_SHM_MIN", "1000TiB")  # more than any /dev/shm has free
    text = """
name: no-shm
actors:
  src: {class: "actors:Source", options: {count: 200, size: 4096}}
  dst: {class: "actors:Sink"}
connections:
  src.out: [dst.inp]
"""
    with caplog.at_level("WARNING", logger="plexa.nexus"), plexa.Nexus(loads(text)) as nexus:
        assert nexus.spec.zenoh_links
        nexus.start()
        nexus.setup()
        nexus.run()
        nexus.wait_until(lambda st: st["links"]["src.out->dst.inp"]["received"] >= 200, 30)
        nexus.stop()
        assert nexus.store.get("result:dst")["seen"] == list(range(200))
        assert nexus.quit().clean
    warned = [r.getMessage() for r in caplog.records if "every link runs on Zenoh" in r.message]
    assert len(warned) == 1 and "MiB free, less than" in warned[0], warned
    assert shm_problem() is not None
    monkeypatch.delenv("PLEXA_SHM_MIN")
    assert shm_problem() is None


@pytest.mark.slow
def test_a_recording_of_links_on_zenoh_keeps_every_message_in_order(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PLEXA_SHM_MIN", "1000TiB")  # every link on Zenoh, the recorder's too
    path = tmp_path / "rec.mcap"
    text = f"""
name: rec-zenoh
actors:
  src: {{class: "actors:Source", options: {{count: 150, size: 4096}}}}
  dst: {{class: "actors:Sink"}}
connections:
  src.out: [dst.inp]
record: {{path: '{path}'}}
"""
    with plexa.Nexus(loads(text)) as nexus:
        nexus.start()
        nexus.setup()
        nexus.run()
        nexus.wait_until(lambda st: st["links"]["src.out->dst.inp"]["received"] >= 150, 30)
        nexus.stop()
        assert nexus.quit().clean
    with plexa.recording.open(path) as rec:
        got = list(rec.messages(["src.out"]))
    assert [m.sequence for m in got] == list(range(150))
    assert [int(m.obj.flat[0]) for m in got] == list(range(150))


def test_a_burst_sent_in_one_step_arrives_at_once_while_its_producer_then_sits_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Small messages put back to back are held for a batch; no timer sends them: the
    runtime flushes at the end of the step (a safe point), so none waits for another."""
    monkeypatch.setenv("PLEXA_SHM_MIN", "1000TiB")  # every link on Zenoh
    text = """
name: burst
actors:
  src: {class: "actors:Burst", options: {count: 5}}
  dst: {class: "actors:Stamped"}
connections:
  src.out: [dst.inp]
"""
    with started(loads(text)) as nexus:
        nexus.wait_until(lambda st: st["links"]["src.out->dst.inp"]["received"] >= 5, 20)
        nexus.stop()
        delays = nexus.store.get("result:dst")["delays"]
        assert nexus.quit().clean
    assert len(delays) == 5 and max(delays) < 0.5, delays


def test_plexa_cleanup_removes_what_a_killed_agent_left() -> None:
    agent = AgentProc("b", f"tcp/127.0.0.1:{free_port()}")
    folder = Path(os.environ["PLEXA_RUNTIME_DIR"]) / "agent-b"
    agent.kill()
    assert (folder / "zenoh.sock").exists()
    assert str(folder) in cleanup().files
    assert not folder.exists()
    again = AgentProc("b", f"tcp/127.0.0.1:{free_port()}")
    try:
        assert str(folder) not in cleanup().files  # a live agent's folder stays
        assert folder.is_dir()
    finally:
        again.stop()


def test_an_agent_that_dials_out_is_reached_through_a_router_the_nexus_reaches() -> None:
    router = AgentProc("a", f"tcp/127.0.0.1:{free_port()}")  # any agent is a Zenoh router
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    dialer = subprocess.Popen(
        [sys.executable, "-m", "plexa", "agent", "b", "--connect", router.endpoint, "--insecure"],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert dialer.stdout is not None and dialer.stdout.readline().startswith("ready")
        text = (
            "name: via\nactors:\n  src: {class: 'actors:Source', options: {count: 100}}\n"
            "  dst: {class: 'actors:Sink'}\nconnections:\n  src.out: [dst.inp]\n"
        )
        spec = placed(text, {"b": router.endpoint}, {"src": "b"})
        with plexa.Nexus(spec) as nexus:
            nexus.start()
            nexus.setup()
            nexus.run()
            nexus.wait_until(lambda st: st["links"]["src.out->dst.inp"]["received"] >= 100, 20)
            pid = nexus.status()["actors"]["src"]["pid"]
            assert psutil.Process(pid).parent().pid == dialer.pid
    finally:
        dialer.terminate()
        dialer.wait(15)
        router.stop()


@pytest.mark.slow
def test_an_actor_that_lists_several_hosts_restarts_on_another_when_its_host_is_lost() -> None:
    text = """
name: elsewhere
actors:
  src: {class: "actors:Source", options: {count: 100000, rate_hz: 200}}
  fit: {class: "actors:Counter", host: [a, b], restart: on-failure, backoff: 0.2}
connections:
  src.out: [fit.inp]
"""
    agents = {"b": AgentProc("b", f"tcp/127.0.0.1:{free_port()}")}
    endpoint_a = f"tcp/127.0.0.1:{free_port()}"
    spec = load_text(text, {"a": endpoint_a, "b": agents["b"].endpoint})
    assert spec.actors["fit"].also == ("b",) and spec.crosses_hosts(spec.links[0])
    launcher = HostsLauncher()

    def a_joins_last() -> None:  # b is there first: fit still starts on a, its first host
        wait_joined(launcher, "b", 20)
        agents["a"] = AgentProc("a", endpoint_a)

    late = threading.Thread(target=a_joins_last)
    try:
        with plexa.Nexus(spec, launcher=launcher) as nexus:
            late.start()
            nexus.start()
            late.join()
            nexus.setup()
            nexus.run()
            assert nexus.status()["actors"]["fit"]["host"] == "a"
            agents["a"].kill()
            nexus.wait_until(
                lambda st: (
                    st["actors"]["fit"]["state"] == "running" and st["actors"]["fit"]["host"] == "b"
                ),
                20,
            )
            pid = nexus.status()["actors"]["fit"]["pid"]
            assert psutil.Process(pid).parent().pid == agents["b"].pid
            assert [f.kind for f in nexus.failures] == [FailureKind.HOST_LOST]
            moved = nexus.status()["links"]["src.out->fit.inp"]["received"]
            nexus.wait_until(  # the stream goes on into the new host
                lambda st: st["links"]["src.out->fit.inp"]["received"] > moved + 50, 20
            )
    finally:
        if late.ident is not None:
            late.join()
        for agent in agents.values():
            agent.stop()
    cleanup()  # what the killed agent's run left


def load_text(text: str, hosts: dict[str, str]) -> plexa.PipelineSpec:
    lines = "".join(f"  {s}: {{endpoint: '{e}', insecure: true}}\n" for s, e in hosts.items())
    return loads(f"hosts:\n{lines}{text}")
