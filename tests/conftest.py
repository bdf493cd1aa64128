import os

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")  # before anything imports mujoco


@pytest.fixture(scope="session")
def two_view_codec():
    """A small latent codec with one stream per view: linear DPCA on two 16 px views (6 components each)."""
    from bwgym.codecs.image.linear import LinearDPCACodec

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (1, 16, 16, 3))
    frames = {
        v: np.clip(base + rng.normal(0, 40, (40, 16, 16, 3)), 0, 255).astype(np.uint8)
        for v in ("arm", "side")
    }
    return LinearDPCACodec.train(frames, max_components=6, residual=False)
