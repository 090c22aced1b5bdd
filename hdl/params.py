"""Parameter validation shared by the hdl components: exact, testable messages.

The wording is the project's one rule for integers (`golden.config.check_int`): a wrong type raises
``TypeError``, a value out of range ``ValueError``.
"""

from __future__ import annotations

from nvmlstm.golden.config import check_int

__all__ = ["check_int"]
