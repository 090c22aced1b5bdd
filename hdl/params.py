"""Read-only build parameters of the components, as `amaranth.lib.stream` and the Glasgow gateware keep theirs.

A component stores each constructor parameter (and each part it builds from them) under a private name and
exposes it through `parameter`: callers read ``top.lanes`` or ``top.macro_latency``, and an assignment raises
`AttributeError`, because the design was already built from the value when the constructor returned.
"""

from __future__ import annotations

import operator

__all__ = ["parameter"]


def parameter(name: str, doc: str | None = None) -> property:
    """A read-only property returning ``self._<name>``.

    Parameters
    ----------
    name : str
        The public name; the value lives in the attribute ``_<name>``.
    doc : str, optional
        The property's docstring.
    """
    return property(operator.attrgetter(f"_{name}"), doc=doc)
