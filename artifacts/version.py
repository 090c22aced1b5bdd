"""The package version: one definition for ``nvmlstm --version``, the flow's stage keys and RTL manifests."""

from __future__ import annotations

from importlib import metadata

__all__ = ["DISTRIBUTION", "NOT_INSTALLED", "package_version"]

#: The distribution name in pyproject.toml.
DISTRIBUTION = "nvm-lstm"
#: What `package_version` says for a source tree that was never installed.
NOT_INSTALLED = "unknown (not installed)"


def package_version() -> str:
    """The installed distribution's version, or `NOT_INSTALLED`."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return NOT_INSTALLED
