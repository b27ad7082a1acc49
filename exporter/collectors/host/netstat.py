"""netstat: node_exporter's default fields of /proc/net/netstat, /proc/net/snmp and
/proc/net/snmp6, untyped as node_exporter exports them.

Sample output::

    node_netstat_Tcp_CurrEstab 14
    node_netstat_TcpExt_ListenDrops 0
    node_netstat_Ip6_InOctets 4.0923e+06

netstat and snmp are pairs of lines (a header of names, then the values, both starting
with the protocol); snmp6 is one ``Ip6InOctets 4092`` per line.
"""

from __future__ import annotations

import contextlib
import re

from prometheus_client.core import Metric

from exporter.collectors.host.common import Files, NoData, Paths, SubCollector, single

# node_exporter 1.5's --collector.netstat.fields default.
FIELDS = re.compile(
    r"^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)"
    r"|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts)"
    r"|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)"
    r"|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$")
SNMP6_PROTOCOLS = ("Ip6", "Icmp6", "UdpLite6", "Udp6")  # longest prefix first


def _pairs(text: str) -> dict[str, str]:
    """``TcpExt: A B`` / ``TcpExt: 1 2`` -> {"TcpExt_A": "1", "TcpExt_B": "2"}."""
    out: dict[str, str] = {}
    lines = text.splitlines()
    for header, values in zip(lines[::2], lines[1::2], strict=False):
        proto, _, names = header.partition(":")
        for name, value in zip(names.split(), values.partition(":")[2].split(), strict=False):
            out[f"{proto}_{name}"] = value
    return out


def _snmp6(text: str) -> dict[str, str]:
    """``Ip6InOctets 4092`` -> {"Ip6_InOctets": "4092"}."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        for proto in SNMP6_PROTOCOLS:
            if parts[0].startswith(proto):
                out[f"{proto}_{parts[0][len(proto):]}"] = parts[1]
                break
    return out


class Netstat(SubCollector):
    name = "netstat"

    def __init__(self, paths: Paths, files: Files) -> None:
        super().__init__(paths, files)
        self._wanted: dict[str, bool] = {}

    def collect(self) -> list[Metric]:
        stats = _pairs(self.files.read(self.paths.proc("net", "netstat")))
        stats.update(_pairs(self.files.read(self.paths.proc("net", "snmp"))))
        with contextlib.suppress(NoData):  # a kernel without IPv6 has no snmp6
            stats.update(_snmp6(self.files.read(self.paths.proc("net", "snmp6"))))
        out: list[Metric] = []
        wanted = self._wanted
        for key, value in sorted(stats.items()):
            ok = wanted.get(key)
            if ok is None:
                ok = wanted[key] = FIELDS.match(key) is not None
            if ok:
                out.append(single(f"node_netstat_{key}",
                                  f"Statistic {key.replace('_', '')}.", "unknown", float(value)))
        return out
