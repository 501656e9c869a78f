"""Which launcher a pipeline gets when the caller names none."""

from __future__ import annotations

from typing import Any

from plexa.core.spec import PipelineSpec
from plexa.launch.base import Launcher
from plexa.launch.local import LocalLauncher
from plexa.launch.zygote import ForkServer

__all__ = ["default_launcher"]


def default_launcher(
    spec: PipelineSpec, fork_server: ForkServer | None = None, *, node_agent: Any = None
) -> Launcher:
    """Local processes; with ``launch: ray``, one Ray actor per actor (``docs/ray.md``); with
    ``hosts:`` (or links that must run on Zenoh), the launcher that also reaches the hosts'
    agents.

    ``fork_server``, one already started for this run (:mod:`plexa.nexus.prestart`), is
    used by the local launcher, or ended if the run has no use for it. ``node_agent``: the
    agent class the Ray launcher starts on nodes other than the nexus's
    (:class:`plexa.nexus.ray_agent.NodeAgent`, from the layer above).
    """
    local = spec.settings.launch != "ray" and not spec.hosts and not spec.zenoh_links
    if fork_server is not None and not local:
        fork_server.close()
        fork_server = None
    if spec.settings.launch == "ray":
        from plexa.launch.ray import RayLauncher

        return RayLauncher(spec.settings.ray, node_agent=node_agent)
    if spec.hosts or spec.zenoh_links:
        from plexa.launch.remote import HostsLauncher

        return HostsLauncher(LocalLauncher())
    return LocalLauncher(fork_server=True, server=fork_server)
