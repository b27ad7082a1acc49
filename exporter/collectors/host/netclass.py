"""netclass: /sys/class/net/<iface> attributes, as node_exporter's netclass collector.

Sample output::

    node_network_up{device="eth0"} 1
    node_network_mtu_bytes{device="eth0"} 1400
    node_network_speed_bytes{device="eth0"} 1.25e+08
    node_network_info{address="02:fc:00:00:00:01",broadcast="ff:ff:ff:ff:ff:ff",
                      device="eth0",duplex="full",ifalias="",operstate="up"} 1

An attribute the kernel refuses for this device (``carrier`` on a down link gives
EINVAL) is left out, as node_exporter does.  ``speed`` is Mbit/s in sysfs: x 125000
gives bytes/s (-1, "unknown", stays -125000 as in node_exporter).
"""

from __future__ import annotations

import os

from exporter.collectors.host.common import (
    Files,
    Labels,
    NoData,
    Paths,
    SubCollector,
    family,
    read_optional,
)
from exporter.metrics import Metric, Sample

ATTRIBUTES = (  # sysfs file, metric, type, scale
    ("addr_assign_type", "node_network_address_assign_type", "gauge", 1),
    ("carrier", "node_network_carrier", "gauge", 1),
    ("carrier_changes", "node_network_carrier_changes_total", "counter", 1),
    ("carrier_up_count", "node_network_carrier_up_changes_total", "counter", 1),
    ("carrier_down_count", "node_network_carrier_down_changes_total", "counter", 1),
    ("dev_id", "node_network_device_id", "gauge", 1),
    ("dormant", "node_network_dormant", "gauge", 1),
    ("flags", "node_network_flags", "gauge", 1),
    ("ifindex", "node_network_iface_id", "gauge", 1),
    ("iflink", "node_network_iface_link", "gauge", 1),
    ("link_mode", "node_network_iface_link_mode", "gauge", 1),
    ("mtu", "node_network_mtu_bytes", "gauge", 1),
    ("name_assign_type", "node_network_name_assign_type", "gauge", 1),
    ("netdev_group", "node_network_net_dev_group", "gauge", 1),
    ("type", "node_network_protocol_type", "gauge", 1),
    ("speed", "node_network_speed_bytes", "gauge", 125000),
    ("tx_queue_len", "node_network_transmit_queue_length", "gauge", 1),
)
INFO_LABELS = ("address", "broadcast", "device", "duplex", "ifalias", "operstate")


class Netclass(SubCollector):
    name = "netclass"

    def __init__(self, paths: Paths, files: Files) -> None:
        super().__init__(paths, files)
        self._devices: dict[str, Labels] = {}

    def collect(self) -> list[Metric]:
        root = self.paths.sys("class", "net")
        try:
            devices = sorted(os.listdir(root))
        except FileNotFoundError:
            raise NoData(root) from None
        families = [family(metric, "Network device property: "
                           + metric.removeprefix("node_network_").removesuffix("_total"), typ)
                    for _, metric, typ, _ in ATTRIBUTES]
        info = family("node_network_info",
                      "Non-numeric data from /sys/class/net/<iface>, value is always 1.",
                      "gauge")
        up = family("node_network_up", "Value is 1 if operstate is 'up', 0 otherwise.", "gauge")
        for device in devices:
            lbl = self._devices.get(device)
            if lbl is None:
                lbl = self._devices[device] = {"device": device}
            try:  # relative opens under the device's directory: no path walk per file
                base = os.open(os.path.join(root, device), os.O_RDONLY | os.O_DIRECTORY)
            except OSError:
                continue  # the interface went away
            try:
                for fam, (file, metric, _, scale) in zip(families, ATTRIBUTES, strict=True):
                    text = read_optional(file, base)
                    if text:
                        try:
                            # dev_id and flags are hex ("0x1003"), the rest decimal
                            value = int(text, 16) if text.startswith("0x") else int(text)
                        except ValueError:
                            continue
                        fam.samples.append(Sample(metric, lbl, float(value * scale)))
                values = {key: read_optional(key, base) or "" for key in INFO_LABELS
                          if key != "device"}
            finally:
                os.close(base)
            values["device"] = device
            info.samples.append(Sample("node_network_info", values, 1.0))
            up.samples.append(Sample("node_network_up", lbl,
                                     1.0 if values["operstate"] == "up" else 0.0))
        return [*families, info, up]
