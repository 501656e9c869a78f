"""Which launcher a pipeline gets when the caller names none."""

from __future__ import annotations

from plexa.core.spec import PipelineSpec
from plexa.launch.base import Launcher
from plexa.launch.local import LocalLauncher

__all__ = ["default_launcher"]


def default_launcher(spec: PipelineSpec) -> Launcher:
    """Local processes; with ``launch: ray``, one Ray actor per actor (``docs/ray.md``); with
    ``hosts:`` (or links that must run on Zenoh), the launcher that also reaches the hosts'
    agents."""
    if spec.settings.launch == "ray":
        from plexa.launch.ray import RayLauncher

        return RayLauncher(spec.settings.ray)
    if spec.hosts or spec.zenoh_links:
        from plexa.launch.remote import HostsLauncher

        return HostsLauncher(LocalLauncher())
    return LocalLauncher(fork_server=True)
