"""Write small IP databases in MaxMind's format (MaxMind DB 2.0: binary search tree, data section, metadata)
so tests read real ``.mmdb`` files through the ``maxminddb`` package, as operators' GeoIP2 files are read.

IPv4 only, 24-bit records, networks must not overlap; values are dicts, lists, strings and integers.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

_METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"
# data field types (MaxMind DB spec, "Output Data Section")
_STRING, _MAP, _UINT16, _UINT32, _UINT64, _ARRAY = 2, 7, 5, 6, 9, 11


class _Typed:
    """An integer with an explicit MaxMind type (the metadata needs uint16 / uint32 / uint64)."""

    def __init__(self, kind: int, value: int) -> None:
        self.kind, self.value = kind, value


def _control(kind: int, size: int) -> bytes:
    if size < 29:
        head, extra = size, b""
    elif size < 285:
        head, extra = 29, bytes([size - 29])
    elif size < 65_821:
        head, extra = 30, (size - 285).to_bytes(2, "big")
    else:
        head, extra = 31, (size - 65_821).to_bytes(3, "big")
    if kind <= 7:
        return bytes([(kind << 5) | head]) + extra
    return bytes([head, kind - 7]) + extra  # extended type: the type byte follows the control byte


def _uint(kind: int, value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    return _control(kind, len(raw)) + raw


def encode(value: Any) -> bytes:
    if isinstance(value, _Typed):
        return _uint(value.kind, value.value)
    if isinstance(value, dict):
        return _control(_MAP, len(value)) + b"".join(encode(str(k)) + encode(v) for k, v in value.items())
    if isinstance(value, list):
        return _control(_ARRAY, len(value)) + b"".join(encode(v) for v in value)
    if isinstance(value, str):
        raw = value.encode()
        return _control(_STRING, len(raw)) + raw
    if isinstance(value, int) and value >= 0:
        return _uint(_UINT32 if value < 2**32 else _UINT64, value)
    raise TypeError(f"cannot encode {value!r}")


def write_mmdb(path: Path, networks: dict[str, Any], database_type: str = "GeoIP2-City") -> Path:
    """Write ``{"1.2.3.0/24": record, ...}`` as an IPv4 MaxMind DB at ``path``."""
    root: list[Any] = [None, None]
    for cidr, record in networks.items():
        net = ipaddress.IPv4Network(cidr)
        bits, node = int(net.network_address), root
        for i in range(net.prefixlen):
            bit = (bits >> (31 - i)) & 1
            if i == net.prefixlen - 1:
                node[bit] = ("data", record)
            else:
                if not isinstance(node[bit], list):
                    node[bit] = [None, None]
                node = node[bit]
    nodes: list[list[Any]] = []
    queue = [root]
    while queue:
        node = queue.pop(0)
        nodes.append(node)
        queue.extend(child for child in node if isinstance(child, list))
    index = {id(n): i for i, n in enumerate(nodes)}
    count = len(nodes)
    data = b""

    def record(child: Any) -> int:
        nonlocal data
        if child is None:
            return count  # no data for this network
        if isinstance(child, list):
            return index[id(child)]
        offset = len(data)
        data += encode(child[1])
        return count + 16 + offset

    tree = b"".join(record(n[0]).to_bytes(3, "big") + record(n[1]).to_bytes(3, "big") for n in nodes)
    metadata = {
        "node_count": _Typed(_UINT32, count),
        "record_size": _Typed(_UINT16, 24),
        "ip_version": _Typed(_UINT16, 4),
        "database_type": database_type,
        "languages": ["en"],
        "binary_format_major_version": _Typed(_UINT16, 2),
        "binary_format_minor_version": _Typed(_UINT16, 0),
        "build_epoch": _Typed(_UINT64, 1_700_000_000),
        "description": {"en": "Ember test database"},
    }
    path.write_bytes(tree + bytes(16) + data + _METADATA_MARKER + encode(metadata))
    return path
