"""The installed distribution's version, from its metadata (``pyproject.toml`` is the one place it is written)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dim-sklearn")
except PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0+unknown"
