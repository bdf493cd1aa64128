"""Codecs between the sensors and the agent: compress views under a bit budget into real bytes.

Every codec registers itself in :mod:`bwgym.codecs.core.registry`; build one by name with
:func:`make_codec` or load any codec checkpoint with :func:`load_codec`.
"""

from bwgym.codecs.core.protocol import Codec, Payload, PayloadError, ViewSpec
from bwgym.codecs.core.registry import codec_entry, codec_names, load_codec, make_codec, register_codec
from bwgym.codecs.image.standard import JpegCodec, PngCodec, RawCodec

__all__ = [
    "Codec",
    "JpegCodec",
    "Payload",
    "PayloadError",
    "PngCodec",
    "RawCodec",
    "ViewSpec",
    "codec_entry",
    "codec_names",
    "load_codec",
    "make_codec",
    "register_codec",
]
