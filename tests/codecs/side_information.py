"""A Gaussian source and the decoder's side information: the data of the Wyner-Ziv and Slepian-Wolf tests."""

import numpy as np

#: Samples per block of the shipped Wyner-Ziv codec in these tests.
N = 4000


def correlated_source(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``x ~ N(0, 1)`` (float32, ``N`` samples) and the side information ``y = x + N(0, 0.1^2)`` (float64)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(N).astype(np.float32)
    y = x.astype(np.float64) + 0.1 * rng.standard_normal(N)
    return x, y
