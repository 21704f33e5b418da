#!/usr/bin/env python3
"""Writes a raw disk or file system image in the paged encoding the xfs and volumes fuzz
targets read (vdconv::guest::source::PagedImage): the length in 4 KiB pages (u32 LE),
then each non-zero page as its index (u16 LE) and its 4096 bytes.

    page_image.py RAW OUT
"""
import struct
import sys

PAGE = 4096
MAX_PAGES = 4096


def main(src, dst):
    data = open(src, "rb").read()
    pages = min(-(-len(data) // PAGE), MAX_PAGES)
    out = bytearray(struct.pack("<I", pages))
    for i in range(pages):
        page = data[i * PAGE:(i + 1) * PAGE].ljust(PAGE, b"\0")
        if any(page):
            out += struct.pack("<H", i) + page
    open(dst, "wb").write(bytes(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
