"""Codecs for camera views: standard image codecs, linear codecs on pixels, learned autoencoders and NDPCA."""
