"""Is shared memory usable here? A container with a tiny ``/dev/shm`` (Docker's default is
64 MB) or a system without it cannot carry iceoryx2 links; the run then puts every link on
Zenoh (through the host's router, see :mod:`plexa.launch.remote`) and says so once.

``PLEXA_SHM_MIN`` sets how much free shared memory is enough (default ``32MiB``; a size
as in pipeline files).
"""

from __future__ import annotations

import importlib.util
import logging
import os

import msgspec

from plexa.core.config_checks import parse_size
from plexa.core.paths import SHM_ROOT
from plexa.core.spec import PipelineSpec

__all__ = ["DEFAULT_MIN", "shm_fallback", "shm_problem"]

DEFAULT_MIN = 32 * 2**20
log = logging.getLogger("plexa.nexus")


def shm_problem(path: str = str(SHM_ROOT)) -> str | None:
    """Why shared memory at ``path`` cannot carry links, or None if it can."""
    want = parse_size(os.environ.get("PLEXA_SHM_MIN", DEFAULT_MIN)) or DEFAULT_MIN
    try:
        st = os.statvfs(path)
    except OSError as exc:
        return f"{path} cannot be used: {exc.strerror}"
    if not os.access(path, os.W_OK):
        return f"{path} is not writable"
    free = st.f_bavail * st.f_frsize
    if free < want:
        return f"{path} has {free / 2**20:.1f} MiB free, less than {want / 2**20:.1f} MiB"
    return None


def shm_fallback(spec: PipelineSpec) -> PipelineSpec:
    """``spec`` with every link on Zenoh if shared memory cannot carry them (one warning)."""
    if spec.zenoh_links or not spec.links:
        return spec
    why = shm_problem()
    if why is None:
        return spec
    if importlib.util.find_spec("zenoh") is None:
        instead = "eclipse-zenoh is not installed to carry them instead (plexa[hosts])"
        log.warning("shared memory may not carry links (%s), and %s", why, instead)
        return spec
    log.warning("shared memory cannot carry links (%s): every link runs on Zenoh", why)
    return msgspec.structs.replace(spec, zenoh_links=True)
