"""The ``jobs:`` section of a pipeline file (:class:`plexa.core.jobs.JobSpec`).

```yaml
jobs:
  web:
    module: plexa.examples.job_http      # run as python -m MODULE --guid G --port P
    config: {greeting: hello}            # written to its stdin as one JSON line
    restart: on-failure
```
"""

from __future__ import annotations

import msgspec

from plexa.core.config_checks import Checker
from plexa.core.jobs import JobSpec, module_problem

__all__ = ["JOB_KEYS", "check_jobs"]

JOB_KEYS = tuple(k for k in JobSpec.__struct_fields__ if k != "name")


def check_jobs(check: Checker, raw: object) -> tuple[JobSpec, ...]:
    """The jobs of ``jobs:`` (a mapping of names), every problem added to ``check``."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        check.add("jobs", f"must be a mapping of job names, not {type(raw).__name__}",
                  "e.g. jobs: {web: {module: plexa.examples.job_http}}")  # fmt: skip
        return ()
    jobs = []
    for name, entry in raw.items():
        path = f"jobs.{name}"
        if not isinstance(entry, dict) or "module" not in entry:
            check.add(path, "must be a mapping with a 'module'",
                      "e.g. {module: plexa.examples.job_http}")  # fmt: skip
            continue
        unknown = [key for key in entry if key not in JOB_KEYS]
        for key in unknown:
            check.unknown(f"{path}.{key}", key, JOB_KEYS)
        problem = module_problem(entry["module"])
        if problem:
            check.add(f"{path}.module", problem)
        if unknown or problem:
            continue
        try:
            job = msgspec.convert({**entry, "name": str(name)}, JobSpec)
        except msgspec.ValidationError as exc:
            check.add(path, str(exc))
            continue
        if job.config_timeout <= 0 or job.max_restarts < 0 or job.backoff < 0:
            check.add(path, "config_timeout must be > 0, max_restarts and backoff >= 0")
            continue
        jobs.append(job)
    return tuple(jobs)
