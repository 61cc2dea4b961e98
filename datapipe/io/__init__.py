"""Image and table I/O: native dtypes in, one explicit conversion to float."""

from datapipe.io.atomic import atomic_path, write_bytes_atomic, write_text_atomic
from datapipe.io.convert import infer_bit_depth, to_unit_float, unit_scale
from datapipe.io.image import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    decode_image,
    read_bytes,
    read_image,
    read_mask,
    sniff_format,
)
from datapipe.io.tables import read_table, write_table

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "atomic_path",
    "decode_image",
    "infer_bit_depth",
    "read_bytes",
    "read_image",
    "read_mask",
    "read_table",
    "sniff_format",
    "to_unit_float",
    "unit_scale",
    "write_bytes_atomic",
    "write_table",
    "write_text_atomic",
]
