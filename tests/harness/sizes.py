"""Bytes an object graph holds, for benches and for tests that bound what a table keeps.

`sys.getsizeof` of an object and of everything it reaches (dicts, mappings, sequences,
sets, instance dicts and slots), each object counted once per `seen` set, so a caller can
first walk what it does not want counted (the configuration, shared constants) and then
attribute the rest part by part. Classes, enum members, functions and None are not
counted: they exist once per process whatever the tables hold.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Mapping


def deep_size(obj: object, seen: set[int]) -> int:
    """Bytes of `obj` and what it reaches that `seen` does not hold yet (added to it)."""
    size, stack = 0, [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen or o is None or isinstance(o, type | enum.Enum) or callable(o):
            continue
        seen.add(id(o))
        size += sys.getsizeof(o)
        if isinstance(o, Mapping):
            stack += [*o.keys(), *o.values()]
        elif isinstance(o, list | tuple | set | frozenset):
            stack += list(o)
        if hasattr(o, "__dict__"):
            stack.append(vars(o))
        for cls in type(o).__mro__:
            for slot in getattr(cls, "__slots__", ()):
                if slot != "__dict__" and hasattr(o, slot):
                    stack.append(getattr(o, slot))
    return size
