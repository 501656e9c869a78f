"""Raw iceoryx2: a publisher and a subscriber in two processes, as benchmarks/_raw.py sets
them up for benchmarks/links.py (the same helpers), with this workload.

Lossless as a plain iceoryx2 user would do it: no safe overflow and
``BackpressureStrategy.RetryUntilDelivered`` on a subscriber buffer of IN_FLIGHT, plus a
0.3 s pause before the first send (RetryUntilDelivered loses samples without it; the pause is
part of the start time). The
publisher notifies an event after every send; the subscriber spins 50 µs when its queue is
empty, then waits on the event. The launcher starts both and, on Ctrl-C (SIGINT), sets a
stop flag and waits for them.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks._raw import RawConfig, _data_service, _event, _iox, _node, _view  # noqa: E402
from workload import DTYPE, IN_FLIGHT, SHAPE, Config, Ctl, Generator, Processor, Slot  # noqa: E402

PAUSE_S = 0.3
"""The generator's pause between creating its publisher and its first send: without it,
RetryUntilDelivered sometimes loses a run of samples once the subscriber's queue first fills
(seen in links.py's raw baseline, and here: 6 frames lost in one run of four)."""
QUIT = 20
"""A control-file slot of this peer's own: the launcher's stop flag."""


def _raw(cfg: Config) -> RawConfig:
    work = Path(cfg.workdir)
    return RawConfig(
        prefix=f"plxpeer_{work.parent.name.rsplit('_', 1)[-1]}_{work.name}_",
        root=str(work / "iox"),
        ctl="",
        shape=SHAPE,
        dtype=DTYPE,
        capacity=IN_FLIGHT,
    )


def generate(cfg: Config) -> None:
    iox2, raw = _iox(), _raw(cfg)
    gen = Generator(cfg.ctl)
    node = _node(iox2, raw, "generator")
    publisher = (
        _data_service(iox2, node, raw)
        .publisher_builder()
        .initial_max_slice_len(raw.nbytes)
        .max_loaned_samples(2)
        .backpressure_strategy(iox2.BackpressureStrategy.RetryUntilDelivered)
        .create()
    )
    notifier = _event(iox2, node, "bench/wake").notifier_builder().create()
    import numpy as np

    time.sleep(PAUSE_S)

    dtype = np.dtype(DTYPE)
    while not gen.ctl.slots[QUIT]:
        delay = gen.delay()
        if delay > 0:
            time.sleep(min(delay, 0.05))
            continue
        sample = publisher.loan_slice_uninit(raw.nbytes)
        gen.fill(_view(sample, raw.nbytes, dtype, SHAPE))
        sample.assume_init().send()
        notifier.notify()
        gen.sent()
    notifier.notify()
    notifier.delete()
    publisher.delete()
    del node


def process(cfg: Config) -> None:
    import numpy as np

    iox2, raw = _iox(), _raw(cfg)
    node = _node(iox2, raw, "processor")
    subscriber = _data_service(iox2, node, raw).subscriber_builder().buffer_size(IN_FLIGHT).create()
    listener = _event(iox2, node, "bench/wake").listener_builder().create()
    proc = Processor(cfg.ctl)
    dtype, nbytes = np.dtype(DTYPE), raw.nbytes
    block = iox2.Duration.from_secs_f64(0.1)
    slots = proc.slots
    while True:
        sample = subscriber.receive()
        if sample is None:
            if slots[QUIT] > 1:
                break
            end = time.perf_counter() + 50e-6
            while time.perf_counter() < end:
                if subscriber.has_samples():
                    break
            else:
                listener.timed_wait(block)
            continue
        proc.handle(_view(sample, nbytes, dtype, SHAPE))
        sample.delete()
    listener.delete()
    subscriber.delete()
    del node


def main() -> None:
    role, text = sys.argv[1], sys.argv[2]
    cfg = Config.from_json(text)
    if role != "launcher":
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the launcher's group
    if role == "generator":
        generate(cfg)
        return
    if role == "processor":
        process(cfg)
        return
    ctl = Ctl(cfg.ctl)
    me = [sys.executable, __file__]
    procs = [subprocess.Popen([*me, "processor", text])]
    while not ctl[Slot.PROC_PID]:  # the subscriber exists
        time.sleep(0.001)
    procs.append(subprocess.Popen([*me, "generator", text]))
    with contextlib.suppress(KeyboardInterrupt):
        signal.pause()
    ctl.slots[QUIT] = 1  # the generator first; then the processor drains and ends
    procs[1].wait()
    ctl.slots[QUIT] = 2
    procs[0].wait()
    # The domain's global management file outlives its nodes (a user's default domain keeps
    # it for good); this run's private domain goes with the run.
    for path in Path("/dev/shm").glob(_raw(cfg).prefix + "*"):
        path.unlink(missing_ok=True)


if __name__ == "__main__":
    if len(sys.argv) == 2:
        sys.argv.insert(1, "launcher")
    main()
