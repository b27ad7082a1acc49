"""stackmon: one Prometheus exporter for a web platform."""

from importlib import metadata

try:
    __version__ = metadata.version("stackmon")
except metadata.PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"
