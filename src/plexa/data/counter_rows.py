"""Counter rows carried between hosts: what runs on a host is counted there, and the nexus's
counters are kept in step (an agent reports its rows; a process started on a host begins
from the nexus's rows, so counts go on across a restart on a new host or a rejoined one)."""

from __future__ import annotations

import struct

from plexa.core.spec import PipelineSpec
from plexa.data.counters import Counters, LinkField, OutputField

__all__ = ["read_rows", "write_rows"]


def read_rows(counters: Counters, spec: PipelineSpec, actors: list[str]) -> dict[str, bytes]:
    """The rows ``actors`` own, by ``kind:name``: each actor's row, its outputs' rows and the
    rows of the links into it (their consumer keeps those). An output's count of sent
    messages is at least what any of its consumers has seen, so a producer started again
    after its host was lost numbers its messages on from there."""
    rows: dict[str, bytes] = {}
    for name in actors:
        rows[f"actor:{name}"] = bytes(memoryview(counters.actor_row(name)).cast("B"))
        for port in spec.actors[name].outputs:
            output = f"{name}.{port}"
            if output in counters.outputs:
                row = counters.output_row(output)
                data = bytearray(memoryview(row).cast("B"))
                # its consumers may have seen more than the last report of a lost host said
                seen = [int(counters.link_row(lk.name)[LinkField.CONSUMED])
                        for lk in spec.links_from(name) if lk.output == output]  # fmt: skip
                sent = max([int(row[OutputField.SENT]), *seen])
                struct.pack_into("<q", data, OutputField.SENT * 8, sent)
                rows[f"output:{output}"] = bytes(data)
        for link in spec.links_to(name):
            rows[f"link:{link.name}"] = bytes(memoryview(counters.link_row(link.name)).cast("B"))
    return rows


def write_rows(counters: Counters, rows: dict[str, bytes]) -> None:
    """Copy rows read by :func:`read_rows` (unknown names are skipped)."""
    for key, data in rows.items():
        kind, _, name = key.partition(":")
        try:
            if kind == "actor":
                row = counters.actor_row(name)
            elif kind == "output":
                row = counters.output_row(name)
            elif kind == "link":
                row = counters.link_row(name)
            else:
                continue
        except ValueError:
            continue
        view = memoryview(row).cast("B")
        n = min(len(view), len(data))
        view[:n] = data[:n]
