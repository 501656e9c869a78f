"""A worker job for the tests: reads its configuration only after ``--read-after S`` seconds
(never without it), may ignore SIGTERM (``--ignore-term``), then sleeps."""

from __future__ import annotations

import signal
import time

from plexa.jobs import parse_args, read_config

args = parse_args()
if "--ignore-term" in args.rest:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if "--read-after" in args.rest:
    time.sleep(float(args.rest[args.rest.index("--read-after") + 1]))
    print(f"config: {read_config(timeout=5)}", flush=True)
while True:
    time.sleep(1)
