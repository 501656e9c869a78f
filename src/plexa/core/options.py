"""Whether a value fits an actor option: one rule for the pipeline file and for ``set``.

An option's type is the annotation of the matching parameter of the actor's ``setup``. The
same check runs when a pipeline file is validated and when ``plexa ctl NAME set`` changes an
option of a live actor, so the two can never disagree.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

__all__ = ["accepts", "option_problem"]

_SIMPLE_TYPES: dict[object, Callable[[object], bool]] = {
    bool: lambda v: isinstance(v, bool),
    int: lambda v: isinstance(v, int) and not isinstance(v, bool),
    float: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    str: lambda v: isinstance(v, str),
    list: lambda v: isinstance(v, list | tuple),
    tuple: lambda v: isinstance(v, list | tuple),
    dict: lambda v: isinstance(v, dict),
}


def accepts(ann: object, value: object) -> bool | None:
    """Whether ``value`` fits annotation ``ann``: True, False when clearly not, None if unsure
    (an annotation plexa cannot check, such as a class of the user's)."""
    origin = typing.get_origin(ann)
    if origin is typing.Union or origin is types.UnionType:
        verdicts = [accepts(arg, value) for arg in typing.get_args(ann)]
        if True in verdicts:
            return True
        return None if None in verdicts else False
    if ann is type(None):
        return value is None
    kind = origin or ann
    check = _SIMPLE_TYPES.get(kind) if isinstance(kind, type) else None
    return check(value) if check is not None else None


def option_problem(setup: Callable[..., Any], key: str, value: object) -> str | None:
    """Why ``value`` does not fit option ``key`` of ``setup`` (its annotation), or None."""
    try:
        hints = typing.get_type_hints(setup)
    except Exception:
        return None
    ann = hints.get(key)
    if ann is None or accepts(ann, value) is not False:
        return None
    return f"must be {inspect.formatannotation(ann)}, not {type(value).__name__} {value!r}"
