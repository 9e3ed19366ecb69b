"""Salon, an XMPP server.

``__version__`` is the one place Salon's version comes from: the installed distribution's
metadata (``pyproject.toml`` at install time), read once at import.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("salon")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
