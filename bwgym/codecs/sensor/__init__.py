"""Codecs for sensor vectors: per-sensor scalar and predictive coding, DPCA and NDPCA on measurements."""
