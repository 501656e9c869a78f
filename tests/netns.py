"""Two test hosts on one machine: network namespaces joined by a veth pair (needs root and
iproute2; :func:`netns_reason` says why not, for a skip)."""

from __future__ import annotations

import os
import shutil
import subprocess


def netns_reason() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"plxprobe{os.getpid() % 100000}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


class Hosts:
    """Namespaces A (198.18.0.1) and B (198.18.0.2) joined by veth ``va``/``vb``."""

    made = 0

    def __init__(self) -> None:
        Hosts.made += 1
        tag = f"{os.getpid() % 100000}{Hosts.made % 10}"
        self.a, self.b = f"plxA{tag}", f"plxB{tag}"
        self.va, self.vb = f"plxva{tag}", f"plxvb{tag}"
        self._run("ip", "netns", "add", self.a)
        self._run("ip", "netns", "add", self.b)
        self._run("ip", "link", "add", self.va, "type", "veth", "peer", "name", self.vb)
        for dev, ns, ip in ((self.va, self.a, "198.18.0.1"), (self.vb, self.b, "198.18.0.2")):
            self._run("ip", "link", "set", dev, "netns", ns)
            self._run("ip", "-n", ns, "addr", "add", f"{ip}/30", "dev", dev)
            self._run("ip", "-n", ns, "link", "set", dev, "up")
            self._run("ip", "-n", ns, "link", "set", "lo", "up")

    @staticmethod
    def _run(*argv: str) -> None:
        subprocess.run(argv, check=True, capture_output=True)

    def link(self, up: bool) -> None:
        """Cut (or restore) the cable between the two hosts."""
        self._run("ip", "-n", self.b, "link", "set", self.vb, "up" if up else "down")

    def close(self) -> None:
        for ns in (self.a, self.b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


class Star:
    """Two hosts around this one: namespace A (198.18.1.2) and B (198.18.2.2), each joined to
    the current namespace (198.18.1.1, 198.18.2.1) by its own veth pair."""

    made = 0

    def __init__(self) -> None:
        Star.made += 1
        tag = f"{os.getpid() % 100000}{Star.made % 10}"
        self.ns = {"a": f"plxSa{tag}", "b": f"plxSb{tag}"}
        self.here = {"a": f"plxha{tag}", "b": f"plxhb{tag}"}
        self.ip = {"a": "198.18.1.2", "b": "198.18.2.2"}
        try:
            for i, side in enumerate(("a", "b"), start=1):
                ns, here, there = self.ns[side], self.here[side], f"plxta{tag}{i}"
                Hosts._run("ip", "netns", "add", ns)
                Hosts._run("ip", "link", "add", here, "type", "veth", "peer", "name", there)
                Hosts._run("ip", "link", "set", there, "netns", ns)
                Hosts._run("ip", "addr", "add", f"198.18.{i}.1/30", "dev", here)
                Hosts._run("ip", "link", "set", here, "up")
                Hosts._run("ip", "-n", ns, "addr", "add", f"198.18.{i}.2/30", "dev", there)
                Hosts._run("ip", "-n", ns, "link", "set", there, "up")
                Hosts._run("ip", "-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def link(self, side: str, up: bool) -> None:
        """Cut (or restore) the cable to host ``side``."""
        Hosts._run("ip", "link", "set", self.here[side], "up" if up else "down")

    def close(self) -> None:
        for side in ("a", "b"):
            subprocess.run(["ip", "link", "del", self.here[side]], capture_output=True)
            subprocess.run(["ip", "netns", "del", self.ns[side]], capture_output=True)
