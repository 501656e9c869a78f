"""``plexa new actor NAME`` and ``plexa new pipeline NAME``: a working skeleton with a test.

The files are small and complete: the actor's test drives it in-process with
:class:`plexa.testing.ActorHarness`; the pipeline's test checks each actor the same way and
then runs the whole pipeline with real processes. ``pytest`` in the new folder passes.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

__all__ = ["class_name", "module_name", "new_actor", "new_pipeline"]


def module_name(name: str) -> str:
    """``Frame Filter`` / ``frame-filter`` -> ``frame_filter`` (a valid module name)."""
    words = re.findall(r"[A-Za-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name))
    module = "_".join(w.lower() for w in words)
    if not module or module[0].isdigit() or keyword.iskeyword(module):
        raise ValueError(f"{name!r} cannot name a Python module: start with a letter")
    return module


def class_name(name: str) -> str:
    """``frame_filter`` -> ``FrameFilter``."""
    return "".join(w.capitalize() for w in module_name(name).split("_"))


ACTOR = '''"""{cls}: scales every array it receives (a skeleton from ``plexa new actor``)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

import plexa


class {cls}(plexa.Actor):
    """Multiplies each message on ``inp`` by ``factor`` and sends it on ``out``."""

    outputs = plexa.ports("out")

    def setup(self, factor: float = 2.0) -> None:
        """Options come from the pipeline file: ``options: {{factor: 3}}``."""
        self.factor = factor
        self.count = 0

    @plexa.on("inp")
    def scale(self, msg: npt.NDArray[np.float64]) -> None:
        """Called once per message; ``msg`` is read-only (``.copy()`` it to keep it)."""
        self.outputs.out.put(np.asarray(msg) * self.factor)
        self.count += 1

    def stop(self) -> None:
        """Called when the run stops."""
        self.log.info("scaled %d messages", self.count)
'''

ACTOR_TEST = '''"""{cls}, driven in this process by plexa's test harness (no processes needed)."""

from __future__ import annotations

import numpy as np
from {module} import {cls}

from plexa.testing import ActorHarness


def test_each_message_is_scaled_by_the_factor() -> None:
    harness = ActorHarness({cls}, options={{"factor": 3.0}})
    harness.setup()
    harness.send("inp", np.arange(4.0))
    harness.send("inp", np.ones(2))
    harness.stop()
    assert len(harness.sent["out"]) == 2
    np.testing.assert_array_equal(harness.sent["out"][0], [0.0, 3.0, 6.0, 9.0])
'''

PIPELINE = """# {name}: a skeleton from `plexa new pipeline` (run it: plexa run pipeline.yaml)
name: {name}
actors:
  source: {{class: "actors:Counter", options: {{count: 200, rate_hz: 100}}}}
  double: {{class: "actors:Double"}}
  sink: {{class: "actors:Total"}}
connections:
  source.out: [double.inp]
  double.out: {{to: [sink.inp], policy: block, capacity: 8}}
"""

PIPELINE_ACTORS = '''"""The actors of {name}: a counting source, a doubler, a summing sink."""

from __future__ import annotations

import time

import plexa


class Counter(plexa.Actor):
    """Sends 0, 1, 2, ... ``count`` numbers at ``rate_hz`` (0: as fast as it can)."""

    outputs = plexa.ports("out")

    def setup(self, count: int = 200, rate_hz: float = 100.0) -> None:
        self.count = count
        self.period = 1.0 / rate_hz if rate_hz > 0 else 0.0
        self.sent = 0

    def run_step(self) -> None:
        """Called in a loop while running; each return is a safe point (pause, stop)."""
        if self.sent >= self.count:
            time.sleep(0.01)
            return
        self.outputs.out.put(self.sent)
        self.sent += 1
        self.progress(self.sent, self.count)
        if self.period:
            time.sleep(self.period)


class Double(plexa.Actor):
    """Doubles each number."""

    outputs = plexa.ports("out")

    @plexa.on("inp")
    def double(self, n: int) -> None:
        self.outputs.out.put(2 * n)


class Total(plexa.Actor):
    """Adds up what it receives; the total goes to the store when the run stops."""

    def setup(self) -> None:
        self.total = 0
        self.seen = 0

    @plexa.on("inp")
    def add(self, n: int) -> None:
        self.total += n
        self.seen += 1

    def stop(self) -> None:
        self.store.put({{"total": self.total, "seen": self.seen}}, key="total")
        self.log.info("total %d of %d numbers", self.total, self.seen)
'''

PIPELINE_TEST = '''"""{name}: each actor in-process, then the whole pipeline with real processes."""

from __future__ import annotations

from pathlib import Path

from actors import Counter, Double, Total

import plexa
from plexa.testing import ActorHarness

HERE = Path(__file__).parent


def test_the_counter_sends_count_numbers_then_idles() -> None:
    harness = ActorHarness(Counter, options={{"count": 3, "rate_hz": 0}})
    harness.setup()
    harness.step(5)
    assert harness.sent["out"] == [0, 1, 2]


def test_double_doubles_and_total_adds_up() -> None:
    double = ActorHarness(Double)
    double.setup()
    double.send("inp", 21)
    assert double.sent["out"] == [42]
    total = ActorHarness(Total)
    total.setup()
    for n in (1, 2, 3):
        total.send("inp", n)
    total.stop()
    assert total.store.get("total") == {{"total": 6, "seen": 3}}


def test_the_whole_pipeline_adds_every_doubled_number() -> None:
    spec = plexa.load(HERE / "pipeline.yaml")
    link = "double.out->sink.inp"
    with plexa.Nexus(spec) as nexus:
        nexus.start()
        nexus.setup()
        nexus.run()
        nexus.wait_until(lambda status: status["links"][link]["received"] == 200, timeout=60)
        nexus.stop()
        assert nexus.store.get("total") == {{"total": 2 * sum(range(200)), "seen": 200}}
'''


def _write(files: dict[Path, str], force: bool) -> list[Path]:
    existing = [p for p in files if p.exists()]
    if existing and not force:
        names = ", ".join(str(p) for p in existing)
        raise FileExistsError(f"{names} already exist(s); use --force to overwrite")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(files)


def new_actor(name: str, folder: Path, force: bool = False) -> list[Path]:
    """Write ``MODULE.py`` (an actor class) and ``test_MODULE.py`` into ``folder``."""
    module, cls = module_name(name), class_name(name)
    return _write(
        {
            folder / f"{module}.py": ACTOR.format(cls=cls),
            folder / f"test_{module}.py": ACTOR_TEST.format(cls=cls, module=module),
        },
        force,
    )


def new_pipeline(name: str, folder: Path, force: bool = False) -> list[Path]:
    """Write ``NAME/pipeline.yaml``, ``NAME/actors.py`` and ``NAME/test_pipeline.py``."""
    root = folder / module_name(name)
    return _write(
        {
            root / "pipeline.yaml": PIPELINE.format(name=module_name(name)),
            root / "actors.py": PIPELINE_ACTORS.format(name=name),
            root / "test_pipeline.py": PIPELINE_TEST.format(name=name),
        },
        force,
    )
