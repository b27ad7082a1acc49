"""time: the clock, its time zone and clock sources, as node_exporter's time collector.

Sample output::

    node_time_seconds 1.7957893284851558e+09
    node_time_zone_offset_seconds{time_zone="UTC"} 0
    node_time_clocksource_available_info{clocksource="tsc",device="0"} 1
    node_time_clocksource_current_info{clocksource="tsc",device="0"} 1
"""

from __future__ import annotations

import os
import time

from exporter.collectors.host.common import SubCollector, add, family, read_optional, single
from exporter.metrics import Metric


class Time(SubCollector):
    name = "time"

    def collect(self) -> list[Metric]:
        now = time.time()
        local = time.localtime(now)
        zone = family("node_time_zone_offset_seconds", "System time zone offset in seconds.",
                      "gauge")
        add(zone, "node_time_zone_offset_seconds", {"time_zone": local.tm_zone},
            float(local.tm_gmtoff))
        available = family("node_time_clocksource_available_info",
                           "Available clocksources read from '/sys/devices/system/clocksource'.",
                           "gauge")
        current = family("node_time_clocksource_current_info",
                         "Current clocksource read from '/sys/devices/system/clocksource'.",
                         "gauge")
        root = self.paths.sys("devices", "system", "clocksource")
        try:
            names = sorted(n for n in os.listdir(root) if n.startswith("clocksource"))
        except OSError:
            names = []
        for name in names:
            device = name.removeprefix("clocksource")
            for source in (read_optional(os.path.join(root, name, "available_clocksource"))
                           or "").split():
                add(available, "node_time_clocksource_available_info",
                    {"clocksource": source, "device": device}, 1.0)
            chosen = read_optional(os.path.join(root, name, "current_clocksource"))
            if chosen:
                add(current, "node_time_clocksource_current_info",
                    {"clocksource": chosen, "device": device}, 1.0)
        return [single("node_time_seconds", "System time in seconds since epoch (1970).",
                       "gauge", now), zone, available, current]
