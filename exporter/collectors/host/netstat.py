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

from exporter.collectors.host.common import Files, NoData, Paths, SubCollector, single
from exporter.metrics import Metric

# node_exporter 1.5's --collector.netstat.fields default.
FIELDS = re.compile(
    r"^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)"
    r"|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts)"
    r"|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)"
    r"|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$")
SNMP6_PROTOCOLS = ("Ip6", "Icmp6", "UdpLite6", "Udp6")  # longest prefix first


Wanted = list[tuple[int, str, str]]  # (column, metric name, help)


def _wanted(key: str) -> tuple[str, str] | None:
    """``Tcp_InSegs`` -> its metric name and help, or None outside the default fields."""
    if not FIELDS.match(key):
        return None
    return f"node_netstat_{key}", f"Statistic {key.replace('_', '')}."


class Netstat(SubCollector):
    name = "netstat"

    def __init__(self, paths: Paths, files: Files) -> None:
        super().__init__(paths, files)
        # The column layout of each header line, and snmp6 key lookups, worked out once:
        # the files keep their layout while the kernel runs.
        self._columns: dict[str, Wanted] = {}
        self._snmp6: dict[str, tuple[str, str] | None] = {}

    def _header(self, header: str) -> Wanted:
        wanted = self._columns.get(header)
        if wanted is None:
            proto, _, names = header.partition(":")
            wanted = []
            for i, name in enumerate(names.split()):
                found = _wanted(f"{proto}_{name}")
                if found:
                    wanted.append((i, *found))
            self._columns[header] = wanted
        return wanted

    def _snmp6_key(self, raw: str) -> tuple[str, str] | None:
        """``Ip6InOctets`` -> ("node_netstat_Ip6_InOctets", help) when wanted."""
        if raw not in self._snmp6:
            found = None
            for proto in SNMP6_PROTOCOLS:
                if raw.startswith(proto):
                    found = _wanted(f"{proto}_{raw[len(proto):]}")
                    break
            self._snmp6[raw] = found
        return self._snmp6[raw]

    def collect(self) -> list[Metric]:
        out: list[Metric] = []
        for file in ("netstat", "snmp"):
            # pairs of lines: "TcpExt: names..." then "TcpExt: values..."
            lines = self.files.read(self.paths.proc("net", file)).splitlines()
            for header, values in zip(lines[::2], lines[1::2], strict=False):
                wanted = self._header(header)
                if wanted:
                    fields = values.partition(":")[2].split()
                    out += [single(name, doc, "unknown", float(fields[i]))
                            for i, name, doc in wanted if i < len(fields)]
        with contextlib.suppress(NoData):  # a kernel without IPv6 has no snmp6
            for line in self.files.read(self.paths.proc("net", "snmp6")).splitlines():
                parts = line.split()
                if len(parts) == 2:
                    found = self._snmp6_key(parts[0])
                    if found:
                        out.append(single(found[0], found[1], "unknown", float(parts[1])))
        return out
