"""Airlock: air-gapped SDXL image generation for regulated environments."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("airlock")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
