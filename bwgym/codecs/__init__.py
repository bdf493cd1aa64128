"""Codecs between the sensors and the agent: compress views under a bit budget into real bytes."""

from bwgym.codecs.base import CODEC_IDS, Codec, Payload, PayloadError, ViewSpec
from bwgym.codecs.image import JpegCodec, PngCodec, RawCodec

__all__ = ["CODEC_IDS", "Codec", "JpegCodec", "Payload", "PayloadError", "PngCodec", "RawCodec", "ViewSpec"]
