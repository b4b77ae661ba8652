"""fedota: federated learning and over-the-air model updates for device fleets."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fedota")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
