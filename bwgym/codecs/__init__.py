"""Codecs between the sensors and the agent: compress views under a bit budget into real bytes."""

from bwgym.codecs.base import CODEC_IDS, Codec, Payload, PayloadError, ViewSpec

__all__ = ["CODEC_IDS", "Codec", "Payload", "PayloadError", "ViewSpec"]
