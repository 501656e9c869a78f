"""Nobody else controls a run's files: the runtime root and run directories must be the
user's own and private, files are written without following planted links, import paths
never come from a file, ``plexa cleanup`` touches only provably dead plexa runs of the
user, and a run name is claimed atomically."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import plexa
from conftest import started, wait_for
from plexa.core import paths
from plexa.errors import NameInUse, UnsafePath
from plexa.nexus.names import claim_name

ROOT = Path(__file__).resolve().parent.parent
PLEXA = [sys.executable, "-m", "plexa"]
NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make another user's files")


def plexa_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PLEXA, *args], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env
    )


@pytest.fixture
def own_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A runtime root of this test's own (the session's root stays untouched)."""
    root = tmp_path / "runtime"
    monkeypatch.setenv("PLEXA_RUNTIME_DIR", str(root))
    yield root
    shutil.rmtree(root, ignore_errors=True)


# ----- the runtime root ------------------------------------------------------------------------
@as_root
def test_a_runtime_root_of_another_user_is_refused_and_the_cli_exits_2(tmp_path: Path) -> None:
    root = tmp_path / "runtime"
    root.mkdir(mode=0o700)
    os.chown(root, NOBODY, NOBODY)
    env = {**os.environ, "PLEXA_RUNTIME_DIR": str(root)}
    result = plexa_cli("run", "examples/minimal.yaml", "--duration", "1", env=env)
    assert result.returncode == 2, result.stderr
    assert f"refusing to use runtime directory {root}: it belongs to uid {NOBODY}" in result.stderr
    assert "Traceback" not in result.stderr
    assert os.listdir(root) == []
    for command in ("list", "cleanup"):
        result = plexa_cli(command, env=env)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "refusing to use runtime directory" in result.stderr


def test_a_runtime_root_others_may_write_to_is_refused(own_root: Path) -> None:
    own_root.mkdir()
    os.chmod(own_root, 0o777)
    with pytest.raises(UnsafePath, match=r"group or others may write to it \(mode 0777\)"):
        paths.secure_root()
    with pytest.raises(UnsafePath):
        plexa.Nexus(plexa.loads("actors: {a: {class: 'actors:Idle'}}"))


def test_a_runtime_root_that_is_a_symbolic_link_is_refused(own_root: Path) -> None:
    target = own_root.parent / "elsewhere"
    target.mkdir(mode=0o700)
    own_root.symlink_to(target)
    with pytest.raises(UnsafePath, match="it is a symbolic link"):
        paths.secure_root()


def test_a_missing_runtime_root_is_created_private(own_root: Path) -> None:
    assert paths.secure_root() == own_root
    st = own_root.stat()
    assert (st.st_mode & 0o777, st.st_uid) == (0o700, os.geteuid())


def _in_a_private_tmp(script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with a fresh, empty /tmp of its own (a mount namespace), and without
    PLEXA_RUNTIME_DIR and XDG_RUNTIME_DIR, so plexa falls back to /tmp/plexa-<uid>."""
    env = {k: v for k, v in os.environ.items() if k not in ("PLEXA_RUNTIME_DIR", "XDG_RUNTIME_DIR")}
    code = f"mount -t tmpfs -o size=1m,mode=1777 tmpfs /tmp && {sys.executable} -c '{script}'"
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


_UNDER_TMP = any(
    str(Path(p).resolve()).startswith("/tmp/")
    for p in (sys.executable, sys.prefix, Path(plexa.__file__).parent)
)


@as_root
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
@pytest.mark.skipif(_UNDER_TMP, reason="python or plexa lives under /tmp, which the test hides")
def test_the_fallback_root_pre_created_by_another_user_is_refused() -> None:
    hostile = textwrap.dedent(f"""
        import os
        from plexa.core import paths
        from plexa.errors import UnsafePath
        fresh = paths.secure_root()
        st = os.lstat(fresh)
        print(fresh, oct(st.st_mode & 0o777), st.st_uid)
        os.rmdir(fresh)
        os.mkdir(fresh, 0o700)
        os.chown(fresh, {NOBODY}, {NOBODY})
        try:
            paths.secure_root()
        except UnsafePath as exc:
            print(exc)
    """).strip()
    result = _in_a_private_tmp(hostile)
    if "mount:" in result.stderr or "unshare:" in result.stderr:
        pytest.skip(f"cannot make a private /tmp here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    made, refusal = result.stdout.splitlines()
    assert made == f"/tmp/plexa-{os.getuid()} 0o700 {os.getuid()}"
    assert refusal.startswith(f"refusing to use runtime directory /tmp/plexa-{os.getuid()}: ")
    assert f"belongs to uid {NOBODY}" in refusal


# ----- files -------------------------------------------------------------------------------------
def test_a_private_write_replaces_a_planted_link_instead_of_writing_through_it(
    tmp_path: Path,
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    planted = tmp_path / "run.json"
    planted.symlink_to(victim)
    paths.write_private(planted, b'{"ok": 1}')
    assert victim.read_text() == "precious"
    assert not planted.is_symlink()
    assert planted.read_bytes() == b'{"ok": 1}'
    assert planted.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json", "victim"]


def test_actors_get_their_import_path_from_the_nexus_and_no_file(tmp_path: Path) -> None:
    spec = plexa.loads(
        "actors: {a: {class: 'actors:Chatty', options: {every: 0.05}}}", source="test.yaml"
    )
    with started(spec) as nexus:
        assert not (nexus.paths.run_dir / "sys_path.json").exists()
        pid = nexus.status()["actors"]["a"]["pid"]
        env = psutil.Process(pid).environ()
        assert env[paths.RUN_DIR_ENV] == str(nexus.paths.run_dir)
        assert str(Path(__file__).parent) in env[paths.SYS_PATH_ENV].split(os.pathsep)
        nexus.stop()


# ----- cleanup -----------------------------------------------------------------------------------
def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _fake_dead_run(root: Path, run_id: str, **record: object) -> Path:
    run_dir = root / run_id
    run_dir.mkdir(mode=0o700, parents=True)
    body = {"run_id": run_id, "name": "x", "pid": _dead_pid(), "create_time": 1.0, **record}
    (run_dir / "run.json").write_text(json.dumps(body))
    return run_dir


def test_cleanup_leaves_what_it_cannot_prove_is_a_dead_run_of_this_user(own_root: Path) -> None:
    own_root.mkdir(mode=0o700)
    (own_root / "mydata").mkdir()
    (own_root / "mydata" / "results.csv").write_text("1,2\n")
    (own_root / "0badf00d").mkdir()  # named like a run, but without a run record
    (own_root / "notes.txt").write_text("mine")
    (own_root / "c0ffee00").mkdir()
    (own_root / "c0ffee00" / "run.json").symlink_to(own_root / "notes.txt")
    dead = _fake_dead_run(own_root, "deadbeef")
    env = {**os.environ, "PLEXA_RUNTIME_DIR": str(own_root)}
    result = plexa_cli("cleanup", env=env)
    assert result.returncode == 0, result.stderr
    mine = [line for line in result.stdout.splitlines() if str(own_root) in line]
    assert mine == [f"removed {dead}"]  # (dead runs' /dev/shm entries may go too)
    assert sorted(os.listdir(own_root)) == ["0badf00d", "c0ffee00", "mydata", "notes.txt"]
    assert (own_root / "mydata" / "results.csv").read_text() == "1,2\n"
    assert str(own_root) not in plexa_cli("cleanup", env=env).stdout


@as_root
def test_cleanup_leaves_runs_of_other_users_alone(own_root: Path) -> None:
    theirs = _fake_dead_run(own_root, "0ddba11a")
    os.chown(theirs, NOBODY, NOBODY)
    os.chown(theirs / "run.json", NOBODY, NOBODY)
    forged = _fake_dead_run(own_root, "0ddba11b", uid=NOBODY)  # a record naming someone else
    os.chmod(own_root, 0o700)
    from plexa.nexus.cleanup import cleanup, list_runs

    assert not cleanup()
    assert theirs.exists() and forged.exists()
    assert list_runs() == []


# ----- run names ---------------------------------------------------------------------------------
def test_a_run_name_is_held_until_released(own_root: Path) -> None:
    claim = claim_name("imaging")
    with pytest.raises(NameInUse, match=rf"'imaging' is already running \(pid {os.getpid()}"):
        claim_name("imaging")
    with claim_name("other/name with spaces"):
        pass
    claim.release()
    claim_name("imaging").release()
    assert os.listdir(own_root) == []


def _race(root: str, barrier: Any, out: Any) -> None:
    os.environ["PLEXA_RUNTIME_DIR"] = root
    barrier.wait()
    try:
        claim = claim_name("contested")
    except NameInUse:
        out.put("refused")
        return
    out.put("claimed")
    time.sleep(1.0)  # hold it while the others try
    claim.release()


def test_of_many_processes_claiming_one_name_at_once_exactly_one_gets_it(own_root: Path) -> None:
    own_root.mkdir(mode=0o700)
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(6), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(own_root), barrier, out)) for _ in range(6)]
    for proc in procs:
        proc.start()
    results = sorted(out.get(timeout=30) for _ in procs)
    for proc in procs:
        proc.join(timeout=30)
    assert results == ["claimed"] + ["refused"] * 5
    assert os.listdir(own_root) == []


def test_a_name_claimed_by_a_killed_process_is_free_again(own_root: Path) -> None:
    own_root.mkdir(mode=0o700)
    code = (
        "from plexa.nexus.names import claim_name; import time; c = claim_name('x'); "
        "print(1, flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "1"
    with pytest.raises(NameInUse):
        claim_name("x")
    holder.kill()
    holder.wait()
    claim_name("x").release()
    assert os.listdir(own_root) == []


def test_two_servers_started_at_once_with_one_name_one_is_refused() -> None:
    procs = [
        subprocess.Popen(
            [*PLEXA, "server", "examples/minimal.yaml", "--name", "twin"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for _ in range(2)
    ]
    try:
        wait_for(lambda: any(p.poll() is not None for p in procs), 30, "one server to give up")
        loser = next(p for p in procs if p.poll() is not None)
        winner = next(p for p in procs if p is not loser)
        _, errs = loser.communicate(timeout=10)
        assert loser.returncode == 2, errs
        assert "error: a run named 'twin' is already running (pid " in errs
        assert winner.poll() is None
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in procs:
            proc.communicate(timeout=30)
