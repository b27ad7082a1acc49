"""stackmon: one Prometheus exporter for a web platform.

Two things here keep a host-only exporter small (bench/RESULTS.md, "Memory"): the
version is a constant, pyproject.toml's (``importlib.metadata`` would cost 4.6 MB of RSS;
tests/unit/test_footprint.py keeps the two equal), and ``ssl`` is loaded on first use, not
when ``http.client`` merely imports it: 5 MB that only TLS (web.config_file, HTTPS checks,
rediss://) needs.
"""

import sys
import types

__version__ = "0.1.0"


class _DeferredModule(types.ModuleType):
    """Stands in for a module in ``sys.modules`` until one of its attributes is used."""

    def __getattr__(self, attr: str) -> object:
        import importlib

        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        try:
            real = importlib.import_module(name)
        except BaseException:
            sys.modules.setdefault(name, self)
            raise
        # Modules that imported the stand-in keep it: give it the real module's contents.
        self.__dict__.update(real.__dict__)
        return getattr(real, attr)


if "ssl" not in sys.modules:
    _ssl_stand_in = _DeferredModule("ssl")
    # importlib.util.find_spec("ssl") reads the module's __spec__ (None would raise):
    # locating the module imports nothing.
    from importlib.machinery import PathFinder

    _ssl_stand_in.__spec__ = PathFinder.find_spec("ssl")
    sys.modules["ssl"] = _ssl_stand_in
