"""A pipeline drawn as text: a terminal tree, Mermaid or Graphviz DOT (``plexa graph``).

Each drawing comes from the spec alone; given a status document (a running run's), links
are labelled with their live rate and drops too.
"""

from __future__ import annotations

from typing import Any

from plexa.core.spec import LinkSpec, PipelineSpec

__all__ = ["dot", "mermaid", "tree"]


def _class(spec: PipelineSpec, actor: str) -> str:
    return spec.actors[actor].target.rpartition(":")[2].rpartition(".")[2]


def _live(link: LinkSpec, status: dict[str, Any] | None) -> str:
    if not status:
        return ""
    row = status.get("links", {}).get(link.name)
    if not row:
        return ""
    text = f"{row.get('rate', 0):.0f}/s"
    if row.get("bytes_per_s"):
        text += f" {row['bytes_per_s'] / 1e6:.1f} MB/s"
    if row.get("dropped"):
        text += f" dropped {row['dropped']}"
    if row.get("lost"):
        text += f" lost {row['lost']}"
    return text


def _label(link: LinkSpec, status: dict[str, Any] | None) -> str:
    words = [f"{link.policy.value}/{link.capacity}", _live(link, status)]
    return "  ".join(w for w in words if w)


def tree(spec: PipelineSpec, status: dict[str, Any] | None = None) -> str:
    """The pipeline as an indented tree from its sources; an actor reached a second time
    (fan-in, a cycle) is named with ``(above)`` instead of drawn again."""
    lines = [f"{spec.name}"]
    drawn: set[str] = set()
    roots = [n for n in spec.actors if not spec.links_to(n)] or list(spec.actors)[:1]
    rest = [n for n in spec.actors if n not in roots]

    def actor_line(name: str, prefix: str, branch: str) -> None:
        state = ""
        if status and name in status.get("actors", {}):
            state = f"  [{status['actors'][name].get('state', '')}]"
        again = name in drawn
        lines.append(f"{prefix}{branch}{name} ({_class(spec, name)}){state}"
                     + ("  (above)" if again else ""))  # fmt: skip
        if again:
            return
        drawn.add(name)
        child_prefix = prefix + ("    " if branch in ("└── ", "") else "│   ")
        links = spec.links_from(name)
        for i, link in enumerate(links):
            last = i == len(links) - 1
            lines.append(
                f"{child_prefix}{'└── ' if last else '├── '}.{link.src_port} -> "
                f"{link.dst}.{link.dst_port}  {_label(link, status)}".rstrip()
            )
            actor_line(link.dst, child_prefix + ("    " if last else "│   "), "└── ")

    for root in roots:
        actor_line(root, "", "")
    for name in rest:  # parts not reachable from a source (a cycle of its own)
        if name not in drawn:
            actor_line(name, "", "")
    return "\n".join(lines)


def _id(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def mermaid(spec: PipelineSpec, status: dict[str, Any] | None = None) -> str:
    """A Mermaid ``flowchart LR`` (GitHub and most Markdown viewers draw it)."""
    lines = ["flowchart LR"]
    for name in spec.actors:
        lines.append(f'    {_id(name)}["{name}<br/><small>{_class(spec, name)}</small>"]')
    for link in spec.links:
        label = f"{link.src_port} → {link.dst_port}<br/>{_label(link, status)}"
        lines.append(f'    {_id(link.src)} -- "{label}" --> {_id(link.dst)}')
    return "\n".join(lines)


def dot(spec: PipelineSpec, status: dict[str, Any] | None = None) -> str:
    """A Graphviz ``digraph`` (``plexa graph FILE --dot | dot -Tsvg > pipeline.svg``)."""
    lines = [f'digraph "{spec.name}" {{', "    rankdir=LR;", "    node [shape=box];"]
    for name in spec.actors:
        lines.append(f'    "{name}" [label="{name}\\n{_class(spec, name)}"];')
    for link in spec.links:
        label = f"{link.src_port} → {link.dst_port}\\n{_label(link, status)}"
        lines.append(f'    "{link.src}" -> "{link.dst}" [label="{label}"];')
    lines.append("}")
    return "\n".join(lines)
