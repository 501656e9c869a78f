"""The ``webhooks:`` section of a pipeline file (:class:`plexa.core.hooks.WebhookSpec`).

```yaml
webhooks:
  - url: https://alerts.example.org/plexa
    events: [failure, restart]
    secret_env: PLEXA_HOOK_SECRET      # or secret: ... (then keep the file private)
```
"""

from __future__ import annotations

import os

import msgspec

from plexa.core.config_checks import Checker
from plexa.core.hooks import WebhookSpec, hook_problems

__all__ = ["HOOK_KEYS", "check_webhooks"]

HOOK_KEYS = tuple(WebhookSpec.__struct_fields__)


def check_webhooks(check: Checker, raw: object) -> tuple[WebhookSpec, ...]:
    """The hooks of ``webhooks:`` (a list of mappings), every problem added to ``check``."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        check.add("webhooks", f"must be a list of hooks, not {type(raw).__name__}",
                  "e.g. webhooks: [{url: https://host/path, events: [failure], "
                  "secret_env: HOOK_SECRET}]")  # fmt: skip
        return ()
    hooks = []
    for index, entry in enumerate(raw):
        path = f"webhooks[{index}]"
        if not isinstance(entry, dict):
            check.add(path, "must be a mapping with 'url', 'events' and a secret")
            continue
        unknown = [key for key in entry if key not in HOOK_KEYS]
        for key in unknown:
            check.unknown(f"{path}.{key}", key, HOOK_KEYS)
        if unknown:
            continue
        if isinstance(entry.get("events"), str):
            entry = {**entry, "events": [entry["events"]]}
        try:
            hook = msgspec.convert(entry, WebhookSpec)
        except msgspec.ValidationError as exc:
            check.add(path, str(exc))
            continue
        for problem in hook_problems(hook):
            field, _, why = problem.partition(": ")
            key = f"{path}.{field}" if field in HOOK_KEYS else path
            check.add(key, why if field in HOOK_KEYS else problem)
        if hook.secret_env and hook.secret_env not in os.environ:
            check.add(f"{path}.secret_env", f"the environment variable {hook.secret_env} is "
                      "not set")  # fmt: skip
        hooks.append(hook)
    return tuple(hooks)
