"""Where an image's own bytes end, so that anything appended after it is found.

An upload can be an image and something else at once: a zip appended to a JPEG (still a valid zip, since zip
readers look for the central directory at the end), PNG chunks after IEND, a polyglot built to be read both
ways. Decoders stop at the image's end and never complain, so such a file would pass every pixel check and go
on byte-identical with its payload. ``image_end`` walks each format's structure (stdlib only, one pass of
Python over the segments and a C-speed regex over JPEG entropy-coded data) to find where the image stops;
``trailing_bytes`` is what lies beyond.

Only bytes after the end are found. A payload inside the format's own containers (JPEG APPn / COM segments,
PNG ancillary chunks, GIF comment / application extensions, ISOBMFF free / skip / uuid / mdat boxes, WebP
chunks inside the RIFF size) is part of the image as far as this module is concerned.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable

_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7]")
"""End of entropy-coded data: 0xFF that is neither byte stuffing (FF00) nor a restart marker (FFD0-FFD7)."""

_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
"""TEM and RST0-RST7: markers without a length field."""

_JPEG_SOS, _JPEG_EOI, _JPEG_APP2 = 0xDA, 0xD9, 0xE2
_MPF_ENTRIES = 0xB002
"""The MP Index IFD's MPEntry tag: 16 bytes per picture (attributes, size, offset from the MPF header)."""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_ISOBMFF_TOP_LEVEL = frozenset({
    b"ftyp", b"etyp", b"styp", b"pdin", b"meta", b"meco", b"moov", b"moof", b"mfra", b"mdat", b"imda",
    b"free", b"skip", b"wide", b"uuid", b"sidx", b"ssix", b"prft", b"emsg",
})
"""Box types ISO/IEC 14496-12 (and HEIF, QuickTime's 'wide') allow at file level."""


def image_end(data: bytes, kind: str) -> int | None:
    """Offset just past the image's own last byte for sniffed type ``kind`` ('jpg', 'png', 'gif', 'webp',
    'bmp', 'avif', 'tif'), or None when the format's end cannot be found from its structure (BigTIFF, or a
    structure too damaged to walk: the decoder will judge those)."""
    walker = _WALKERS.get(kind)
    return walker(data) if walker is not None else None


def trailing_bytes(data: bytes, kind: str) -> int:
    """How many bytes follow the image's end: 0 when the file ends where it should or the end is unknown."""
    end = image_end(data, kind)
    return 0 if end is None else len(data) - end


def _jpeg_end(data: bytes, start: int = 0, follow_mpf: bool = True) -> int | None:
    """After EOI, walking markers from SOI: segments skipped by their length (so an EXIF thumbnail's own EOI
    is never seen), entropy-coded data after each SOS skipped by regex. A multi-picture JPEG (MPF: stereo
    MPO, Ultra HDR and other gain-map photos) ends after the last image its index lists, each of them a
    whole JPEG ending exactly where the index says."""
    if data[start:start + 2] != b"\xff\xd8":
        return None
    n, pos = len(data), start + 2
    pictures_end = 0
    while pos < n:
        if data[pos] != 0xFF:
            return None
        while pos < n and data[pos] == 0xFF:  # fill bytes may precede any marker
            pos += 1
        if pos >= n:
            return None
        marker = data[pos]
        pos += 1
        if marker == _JPEG_EOI:
            return max(pos, pictures_end)
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0x00, 0xD8) or pos + 2 > n:
            return None
        (length,) = struct.unpack_from(">H", data, pos)
        if follow_mpf and marker == _JPEG_APP2 and data[pos + 2:pos + 6] == b"MPF\x00":
            pictures_end = max(pictures_end, _mpf_end(data, pos + 6) or 0)
        pos += length
        if length < 2 or pos > n:
            return None
        if marker == _JPEG_SOS:
            found = _JPEG_MARKER.search(data, pos)
            if found is None:
                return None
            pos = found.start()
    return None


def _mpf_end(data: bytes, base: int) -> int | None:
    """The end of the last picture an MPF index (a TIFF structure at ``base``) lists, or None when the index
    or any picture it lists does not hold up (then whatever follows the first picture counts as trailing)."""
    order = {b"II": "<", b"MM": ">"}.get(data[base:base + 2])
    if order is None or base + 8 > len(data):
        return None
    (ifd,) = struct.unpack_from(order + "I", data, base + 4)
    if base + ifd + 2 > len(data):
        return None
    (count,) = struct.unpack_from(order + "H", data, base + ifd)
    for index in range(count):
        entry = base + ifd + 2 + 12 * index
        if entry + 12 > len(data):
            return None
        tag, _, size, offset = struct.unpack_from(order + "HHII", data, entry)
        if tag == _MPF_ENTRIES:
            return _mpf_pictures_end(data, base, order, base + offset, size // 16)
    return None


def _mpf_pictures_end(data: bytes, base: int, order: str, table: int, pictures: int) -> int | None:
    end = 0
    for index in range(pictures):
        if table + 16 * (index + 1) > len(data):
            return None
        _, size, offset = struct.unpack_from(order + "III", data, table + 16 * index)
        if offset == 0:  # the first picture: the file itself
            continue
        start = base + offset
        if _jpeg_end(data, start, follow_mpf=False) != start + size:
            return None
        end = max(end, start + size)
    return end


def _png_end(data: bytes) -> int | None:
    """After IEND's CRC, walking chunks from the signature."""
    if not data.startswith(_PNG_SIGNATURE):
        return None
    n, pos = len(data), len(_PNG_SIGNATURE)
    while pos + 8 <= n:
        length, chunk_type = struct.unpack_from(">I4s", data, pos)
        pos += 12 + length
        if pos > n:
            return None
        if chunk_type == b"IEND":
            return pos
    return None


def _gif_end(data: bytes) -> int | None:
    """After the trailer (0x3B), walking extensions and image descriptors from the logical screen."""
    if data[:6] not in (b"GIF87a", b"GIF89a") or len(data) < 13:
        return None
    n, pos = len(data), 13 + _gif_colour_table_size(data[10])
    while pos < n:
        block = data[pos]
        if block == 0x3B:
            return pos + 1
        if block == 0x21:
            end = _skip_sub_blocks(data, pos + 2)
        elif block == 0x2C and pos + 10 <= n:
            end = _skip_sub_blocks(data, pos + 11 + _gif_colour_table_size(data[pos + 9]))
        else:
            return None
        if end is None:
            return None
        pos = end
    return None


def _gif_colour_table_size(packed: int) -> int:
    """Bytes of the colour table a descriptor's packed field announces (0 without its flag)."""
    return 3 << ((packed & 0x07) + 1) if packed & 0x80 else 0


def _skip_sub_blocks(data: bytes, pos: int) -> int | None:
    """Offset after the 0x00 terminator of the data sub-blocks starting at ``pos``; None when they overrun."""
    n = len(data)
    while pos < n:
        size = data[pos]
        pos += 1 + size
        if size == 0:
            return pos
    return None


def _webp_end(data: bytes) -> int | None:
    """8 + the RIFF size, plus the pad byte an odd size calls for when the file has it."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    (size,) = struct.unpack_from("<I", data, 4)
    end = 8 + size
    if size < 4 or end > len(data):
        return None
    return end + 1 if size % 2 and end < len(data) else end


def _bmp_end(data: bytes) -> int | None:
    """bfSize, when it is set, covers the pixel data offset and fits in the file."""
    if len(data) < 14 or not data.startswith(b"BM"):
        return None
    size, pixel_offset = struct.unpack_from("<I4xI", data, 2)
    return size if 0 < size <= len(data) and size >= pixel_offset else None


def _isobmff_end(data: bytes) -> int | None:
    """After the last of the file-level boxes starting with ftyp; the walk stops at the first box of an unknown
    type or with a size that is invalid or overruns the file, so an appended archive is left outside."""
    if data[4:8] != b"ftyp":
        return None
    n, pos = len(data), 0
    while pos + 8 <= n:
        size, box_type = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > n:
                break
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:
            size = n - pos
        if box_type not in _ISOBMFF_TOP_LEVEL or size < header or pos + size > n:
            break
        pos += size
    return pos if pos > 0 else None


_TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_TIFF_DATA_PAIRS = {273: 279, 324: 325, 288: 289, 513: 514}
"""Offsets tag -> byte counts tag: strips, tiles, free blocks, the JPEG interchange thumbnail."""
_TIFF_SUB_IFDS = {330, 34665, 34853, 40965}
"""Tags pointing at further IFDs: SubIFDs, EXIF, GPS, interoperability."""
_TIFF_MAX_IFDS = 4096
_TIFF_PADDING = 16
"""Zero bytes a writer may leave after the last structure (word alignment, a multi-page writer's last link)."""


def _tiff_end(data: bytes) -> int | None:
    """The furthest byte any IFD, tag value, strip or tile reaches (classic TIFF; BigTIFF is not walked)."""
    order = {b"II*\x00": "<", b"MM\x00*": ">"}.get(data[:4])
    if order is None or len(data) < 8:
        return None
    pending, seen, end = [struct.unpack_from(order + "I", data, 4)[0]], set(), 8
    while pending:
        ifd = pending.pop()
        if ifd == 0 or ifd in seen:
            continue
        if len(seen) >= _TIFF_MAX_IFDS or ifd + 2 > len(data):
            return None
        seen.add(ifd)
        walked = _tiff_ifd(data, order, ifd)
        if walked is None:
            return None
        ifd_end, reached, children = walked
        end = max(end, ifd_end, reached)
        pending += children
    if end > len(data):
        return None
    padding = data[end:end + _TIFF_PADDING]
    return len(data) if len(data) - end <= _TIFF_PADDING and not padding.strip(b"\x00") else end


def _tiff_ifd(data: bytes, order: str, ifd: int) -> tuple[int, int, list[int]] | None:
    """(end of the IFD itself, furthest byte its values and data reach, the IFDs it points at)."""
    (count,) = struct.unpack_from(order + "H", data, ifd)
    ifd_end = ifd + 2 + 12 * count + 4
    if ifd_end > len(data):
        return None
    values: dict[int, list[int]] = {}
    reached, children = 0, [struct.unpack_from(order + "I", data, ifd_end - 4)[0]]
    for index in range(count):
        tag, kind, number, field = struct.unpack_from(order + "HHII", data, ifd + 2 + 12 * index)
        size = _TIFF_TYPE_SIZES.get(kind, 1) * number
        start = ifd + 2 + 12 * index + 8 if size <= 4 else field
        reached = max(reached, start + size)
        if tag in _TIFF_DATA_PAIRS or tag in _TIFF_DATA_PAIRS.values() or tag in _TIFF_SUB_IFDS:
            if start + size > len(data) or kind not in (3, 4, 13):
                return None
            values[tag] = list(struct.unpack_from(f"{order}{number}{'H' if kind == 3 else 'I'}", data, start))
    for offsets, counts in _TIFF_DATA_PAIRS.items():
        for offset, length in zip(values.get(offsets, []), values.get(counts, []), strict=False):
            reached = max(reached, offset + length)
    children += [v for tag in _TIFF_SUB_IFDS for v in values.get(tag, [])]
    return ifd_end, reached, children


_WALKERS: dict[str, Callable[[bytes], int | None]] = {
    "jpg": _jpeg_end, "png": _png_end, "gif": _gif_end, "webp": _webp_end, "bmp": _bmp_end, "avif": _isobmff_end,
    "tif": _tiff_end,
}
