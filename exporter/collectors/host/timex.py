"""timex: the kernel clock discipline from adjtimex(2), as node_exporter's timex collector.

Sample output::

    node_timex_sync_status 1
    node_timex_offset_seconds 0
    node_timex_frequency_adjustment_ratio 1.0000123
    node_timex_maxerror_seconds 0.016

adjtimex with ``modes = 0`` only reads.  Offsets are µs, or ns when STA_NANO is set;
frequencies are ppm with a 16-bit fraction.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable
from errno import EPERM
from typing import Any

from exporter.collectors.host.common import Files, NoData, Paths, SubCollector, single
from exporter.metrics import Metric

TIME_ERROR = 5  # clock not synchronised
STA_NANO = 0x2000
PPM16 = 1e6 * 65536


class _Timex(ctypes.Structure):
    """struct timex of <sys/timex.h>, in its field order (natural alignment)."""

    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long),
                ("status", ctypes.c_int), ("constant", ctypes.c_long),
                ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
                ("time_sec", ctypes.c_long), ("time_usec", ctypes.c_long),
                ("tick", ctypes.c_long), ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long),
                ("shift", ctypes.c_int), ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long),
                ("calcnt", ctypes.c_long), ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long),
                ("tai", ctypes.c_int), ("padding", ctypes.c_int * 11)]


AdjtimexFn = Callable[[Any], int]
"""adjtimex(2) as ctypes calls it: takes ``byref(_Timex())``, returns the clock state."""


@functools.cache
def libc_adjtimex() -> AdjtimexFn | None:
    """The C library's adjtimex, looked up once."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name or "libc.so.6", use_errno=True)
    fn: AdjtimexFn | None = getattr(libc, "adjtimex", None)
    return fn


class Timex(SubCollector):
    name = "timex"

    def __init__(self, paths: Paths, files: Files, adjtimex: AdjtimexFn | None = None) -> None:
        """``adjtimex`` replaces the C library's call (tests: a captured clock state)."""
        super().__init__(paths, files)
        self.adjtimex = adjtimex

    def collect(self) -> list[Metric]:
        call = self.adjtimex or libc_adjtimex()
        if call is None:
            raise NoData("adjtimex")
        tx = _Timex()
        state = call(ctypes.byref(tx))
        if state < 0:
            errno = ctypes.get_errno()
            if errno == EPERM:
                # Only a seccomp filter refuses a read-only call (modes = 0): systemd's
                # ProtectClock= or a SystemCallFilter= without @clock, a container runtime's
                # profile. The clock series (node-mixin's clock alerts) stay absent.
                raise PermissionError(errno, "adjtimex refused by a seccomp filter (systemd "
                                             "ProtectClock=yes or SystemCallFilter=; see "
                                             "docs/host.md)")
            raise OSError(errno, "adjtimex")
        div = 1e9 if tx.status & STA_NANO else 1e6
        values = (
            ("node_timex_offset_seconds",
             "Time offset in between local system and reference clock.", "gauge",
             tx.offset / div),
            ("node_timex_frequency_adjustment_ratio", "Local clock frequency adjustment.",
             "gauge", 1 + tx.freq / PPM16),
            ("node_timex_maxerror_seconds", "Maximum error in seconds.", "gauge",
             tx.maxerror / 1e6),
            ("node_timex_estimated_error_seconds", "Estimated error in seconds.", "gauge",
             tx.esterror / 1e6),
            ("node_timex_status", "Value of the status array bits.", "gauge", tx.status),
            ("node_timex_loop_time_constant", "Phase-locked loop time constant.", "gauge",
             tx.constant),
            ("node_timex_tick_seconds", "Seconds between clock ticks.", "gauge", tx.tick / 1e6),
            ("node_timex_pps_frequency_hertz", "Pulse per second frequency.", "gauge",
             tx.ppsfreq / PPM16),
            ("node_timex_pps_jitter_seconds", "Pulse per second jitter.", "gauge",
             tx.jitter / div),
            ("node_timex_pps_shift_seconds", "Pulse per second interval duration.", "gauge",
             tx.shift),
            ("node_timex_pps_stability_hertz",
             "Pulse per second stability, average of recent frequency changes.", "gauge",
             tx.stabil / PPM16),
            ("node_timex_pps_jitter_total",
             "Pulse per second count of jitter limit exceeded events.", "counter", tx.jitcnt),
            ("node_timex_pps_calibration_total",
             "Pulse per second count of calibration intervals.", "counter", tx.calcnt),
            ("node_timex_pps_error_total", "Pulse per second count of calibration errors.",
             "counter", tx.errcnt),
            ("node_timex_pps_stability_exceeded_total",
             "Pulse per second count of stability limit exceeded events.", "counter",
             tx.stbcnt),
            ("node_timex_tai_offset_seconds", "International Atomic Time (TAI) offset.",
             "gauge", tx.tai),
            ("node_timex_sync_status",
             "Is clock synchronized to a reliable server (1 = yes, 0 = no).", "gauge",
             0.0 if state == TIME_ERROR else 1.0),
        )
        return [single(name, doc, typ, float(value)) for name, doc, typ, value in values]
