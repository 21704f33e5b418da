#!/usr/bin/env python3
"""Rewrites a VHDX file into a compact seed for the vhdx fuzz target.

A VHDX made by a tool is at least 4 MiB (its regions sit at whole MiB), and libFuzzer's
own work per input (copies, comparisons) grows with the input's length: at 5 to 12 MiB
the target ran a few hundred inputs a second, and at the target's former 256 KiB limit
every VHDX was cut before its metadata. The compact seed keeps the file identifier and
both headers, moves the metadata region to 320 KiB and the BAT to 448 KiB (both region
tables rewritten, checksums recomputed), moves the empty log's place past the end of
the file (both headers rewritten), moves the first present payload block to 1 MiB and
marks every other block absent: 2 MiB in all.
vdconv's reader accepts regions at any offset (MS-VHDX asks for whole MiB; `check` says
so), so the seed opens, maps and reads like the original.

    compact_vhdx.py IN OUT
"""
import struct
import sys

KIB = 1024
MIB = 1024 * KIB
REGION_TABLES = (192 * KIB, 256 * KIB)
METADATA_AT, METADATA_LEN = 320 * KIB, 128 * KIB
BAT_AT = 448 * KIB
PAYLOAD_AT, PAYLOAD_KEPT = MIB, MIB
LOG_MOVED_TO = 4 * MIB  # past the end: an empty log is never read
HEADERS = (64 * KIB, 128 * KIB)
BAT_GUID = bytes.fromhex("6677c22d23f600429d64115e9bfd4a08")
METADATA_GUID = bytes.fromhex("06a27c8b90479a4bb8fe575f050f886e")
PAYLOAD_PRESENT = (6, 7)  # fully and partially present


def crc32c(data):
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    crc = 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def main(src, dst):
    data = open(src, "rb").read()
    table = bytearray(data[REGION_TABLES[0]:REGION_TABLES[0] + 64 * KIB])
    assert table[:4] == b"regi", "no region table at 192 KiB"
    (count,) = struct.unpack_from("<I", table, 8)
    regions = {}
    for i in range(count):
        at = 16 + 32 * i
        guid, offset, length, required = struct.unpack_from("<16sQII", table, at)
        regions[guid] = (at, offset, length)
    _, meta_off, _ = regions[METADATA_GUID]
    bat_at_entry, bat_off, bat_len = regions[BAT_GUID]
    bat = bytearray(data[bat_off:bat_off + bat_len])
    # Entries in use: up to the last non-zero one, at least one.
    used = max((i + 1 for i in range(0, len(bat) // 8) if bat[i * 8:i * 8 + 8] != bytes(8)), default=1)
    bat = bat[:used * 8]
    bat_region_len = max(64 * KIB, -(-len(bat) // (64 * KIB)) * 64 * KIB)
    payload = b""
    for i in range(used):
        (entry,) = struct.unpack_from("<Q", bat, i * 8)
        state, offset_mb = entry & 7, entry >> 20
        if not payload and state in PAYLOAD_PRESENT and offset_mb:
            payload = data[offset_mb * MIB:offset_mb * MIB + PAYLOAD_KEPT]
            struct.pack_into("<Q", bat, i * 8, (PAYLOAD_AT // MIB) << 20 | state)
        else:
            struct.pack_into("<Q", bat, i * 8, 0)
    out = bytearray(PAYLOAD_AT + PAYLOAD_KEPT)
    out[:REGION_TABLES[0]] = data[:REGION_TABLES[0]]
    for at in HEADERS:
        header = bytearray(out[at:at + 4 * KIB])
        assert header[:4] == b"head", "no header at %d" % at
        assert header[48:64] == bytes(16), "the log is not empty"
        struct.pack_into("<Q", header, 72, LOG_MOVED_TO)
        struct.pack_into("<I", header, 4, 0)
        struct.pack_into("<I", header, 4, crc32c(bytes(header)))
        out[at:at + 4 * KIB] = header
    struct.pack_into("<QI", table, regions[METADATA_GUID][0] + 16, METADATA_AT, METADATA_LEN)
    struct.pack_into("<QI", table, bat_at_entry + 16, BAT_AT, bat_region_len)
    struct.pack_into("<I", table, 4, 0)
    struct.pack_into("<I", table, 4, crc32c(bytes(table)))
    for at in REGION_TABLES:
        out[at:at + 64 * KIB] = table
    out[METADATA_AT:METADATA_AT + METADATA_LEN] = data[meta_off:meta_off + METADATA_LEN]
    out[BAT_AT:BAT_AT + len(bat)] = bat
    out[PAYLOAD_AT:PAYLOAD_AT + len(payload)] = payload
    open(dst, "wb").write(bytes(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
