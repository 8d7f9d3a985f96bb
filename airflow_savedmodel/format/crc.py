"""CRC32C as TensorFlow and LevelDB use it, including their rotate-and-add masking."""

from __future__ import annotations

from airflow_savedmodel.location import crc32c

__all__ = ["crc32c", "mask", "unmask"]

_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF


def mask(crc: int) -> int:
    """Masked form stored on disk, so that CRCs of data holding CRCs stay well distributed."""
    return ((((crc >> 15) | (crc << 17)) & _U32) + _MASK_DELTA) & _U32


def unmask(masked: int) -> int:
    rot = (masked - _MASK_DELTA) & _U32
    return ((rot >> 17) | (rot << 15)) & _U32
