"""Where the actors of a Ray run go: plexa chooses each actor's node before Ray creates it.

Ray alone would place each host where it fits, one at a time, and plexa would learn the node
only once the actor runs: too late to choose its links (iceoryx2 needs both ends on one
machine). So at start plexa plans the whole pipeline from the nodes' resources
(:func:`plan`): each actor goes to a node that offers what it asks for (its ``resources:``,
labels, ``node``), linked actors together where they fit. The actors planned on one node
form a *group*: the group's name becomes their ``host:`` in the run's spec, so links inside
a group are iceoryx2 and links between groups are Zenoh, fixed for the run. A group lives on
one node at a time; when that node is lost, the whole group goes to one node with room for
all of its members (:func:`choose_node`), where its iceoryx2 links are valid again.

Pure functions over :class:`NodeView` records: no Ray here, so the rules are tested alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from plexa.core.spec import PipelineSpec, Resources

__all__ = ["GROUP_PREFIX", "NodeView", "Plan", "choose_node", "demand", "plan"]

GROUP_PREFIX = "ray-"
"""Groups are named ``ray-1``, ``ray-2``... (their members' ``host:`` in the run's spec)."""

Amounts = dict[str, float]


@dataclass(frozen=True)
class NodeView:
    """One live Ray node, as placement sees it."""

    node_id: str
    """Its hex id."""
    ip: str
    """Its address."""
    total: Mapping[str, float]
    """Its resources (Ray's names: ``CPU``, ``GPU``, ``memory``, custom ones)."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Its labels."""


@dataclass(frozen=True)
class Plan:
    """Where a run's actors start."""

    groups: dict[str, str]
    """Actor -> its group's name ("" for every actor when there is one group only)."""
    nodes: dict[str, str | None]
    """Group -> the node it starts on (None: no node can take it yet)."""


def demand(resources: Resources) -> Amounts:
    """What ``resources`` reserves, in Ray's resource names."""
    wants: Amounts = {"CPU": resources.num_cpus, "GPU": resources.num_gpus}
    wants["memory"] = float(resources.memory)
    wants.update(resources.custom)
    return {k: v for k, v in wants.items() if v}


def _labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Ray's label selector: ``v``, ``!v``, ``in(a,b)``, ``!in(a,b)``."""
    for key, want in selector.items():
        have = labels.get(key)
        negate = want.startswith("!")
        want = want[1:] if negate else want
        if want.startswith("in(") and want.endswith(")"):
            ok = have in {v.strip() for v in want[3:-1].split(",")}
        else:
            ok = have == want
        if ok == negate:
            return False
    return True


def _named(resources: Resources, node: NodeView) -> bool:
    return resources.node in (node.node_id, node.ip)


def allowed(resources: Resources, node: NodeView, nodes: Iterable[NodeView]) -> bool:
    """Whether ``node`` may take an actor with ``resources`` (ignoring what else is there):
    the node it names (a soft one only while it is in the cluster), its labels, and every
    resource it asks for is one the node has."""
    elsewhere = resources.node and not _named(resources, node)
    if elsewhere and (not resources.soft or any(_named(resources, n) for n in nodes)):
        return False
    if not _labels_match(resources.labels, node.labels):
        return False
    return all(node.total.get(k, 0.0) >= v for k, v in demand(resources).items())


def _room(node: NodeView, used: Mapping[str, float], wants: Mapping[str, float]) -> bool:
    return all(node.total.get(k, 0.0) - used.get(k, 0.0) >= v - 1e-9 for k, v in wants.items())


def _add(into: Amounts, more: Mapping[str, float]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0.0) + v


def _order(spec: PipelineSpec) -> list[str]:
    """Actors that name a node first, then those that need something particular (custom
    resources, GPUs, labels), then the rest, each in file order: the free ones follow the
    actors they are linked to."""

    def rank(name: str) -> int:
        res = spec.actors[name].resources
        if res.node:
            return 0
        return 1 if (res.custom or res.num_gpus or res.labels) else 2

    return sorted(spec.actors, key=rank)


def plan(spec: PipelineSpec, nodes: list[NodeView], home: str = "") -> Plan:
    """Each actor on a node that offers what it asks for, with room left by the actors
    placed before it: the node it names if it can; else the node holding most of the actors
    it is linked to; else the node already holding most actors (fewer links cross nodes);
    on a tie the nexus's own node ``home``, else the first node. An actor that no node can
    take now is a group of its own."""
    used: dict[str, Amounts] = {n.node_id: {} for n in nodes}
    where: dict[str, str | None] = {}
    neighbours: dict[str, list[str]] = {name: [] for name in spec.actors}
    for link in spec.links:
        neighbours[link.src].append(link.dst)
        neighbours[link.dst].append(link.src)
    for name in _order(spec):
        res = spec.actors[name].resources
        wants = demand(res)
        fits = [n for n in nodes if allowed(res, n, nodes) and _room(n, used[n.node_id], wants)]
        if not fits:
            where[name] = None
            continue

        def score(node: NodeView, name: str = name, res: Resources = res) -> tuple[int, ...]:
            linked = sum(1 for other in neighbours[name] if where.get(other) == node.node_id)
            held = sum(1 for n in where.values() if n == node.node_id)
            here = int(node.node_id == home)
            return (int(bool(res.node) and _named(res, node)), linked, held, here)

        best = max(fits, key=score)  # max keeps the first of equals
        where[name] = best.node_id
        _add(used[best.node_id], wants)
    return _groups(spec, where, home)


def _groups(spec: PipelineSpec, where: dict[str, str | None], home: str) -> Plan:
    names: dict[str, str] = {}
    groups: dict[str, str] = {}
    nodes: dict[str, str | None] = {}
    for actor in spec.actors:  # file order: ray-1 holds the first actor
        node = where[actor]
        key = node if node is not None else f"alone:{actor}"
        if key not in names:
            names[key] = f"{GROUP_PREFIX}{len(names) + 1}"
            nodes[names[key]] = node
        groups[actor] = names[key]
    alone = next(iter(nodes.values()))
    if len(nodes) == 1 and (alone is None or not home or alone == home):
        # one node, the nexus's: no host lines, no Zenoh, as a local run
        return Plan({actor: "" for actor in spec.actors}, {"": next(iter(nodes.values()))})
    return Plan(groups, nodes)


def choose_node(
    members: list[Resources], nodes: list[NodeView], used: Mapping[str, Mapping[str, float]]
) -> str | None:
    """A node for a whole group (``members``' resources): one every member may run on, with
    room for all of them beside what is ``used`` there (node id -> amounts); the one with the
    most room left, None if there is none."""
    wants: Amounts = {}
    for res in members:
        _add(wants, demand(res))
    fits = [
        n
        for n in nodes
        if all(allowed(res, n, nodes) for res in members)
        and _room(n, used.get(n.node_id, {}), wants)
    ]
    if not fits:
        return None

    def spare(node: NodeView) -> float:
        taken = used.get(node.node_id, {})
        return node.total.get("CPU", 0.0) - taken.get("CPU", 0.0) - wants.get("CPU", 0.0)

    return max(fits, key=spare).node_id
