"""Closed-form limits of lossy coding for Gaussian sources under squared error, in bits per sample.

Every codec of the sensor network is measured against these (distortion D is mean squared error per
sample, in the source's units squared):

* :func:`rate_distortion_gaussian`: ``R(D) = 1/2 log2(sigma^2 / D)``, one encoder that sees the source.
* :func:`wyner_ziv_gaussian`: ``R_WZ(D) = 1/2 log2(sigma^2_{X|Y} / D)``, side information Y at the
  decoder only; for jointly Gaussian (X, Y) there is no rate loss against Y at both ends (Wyner
  1978; paper 001 compares its learned codec to this curve).
* :func:`ceo_sum_rate_gaussian`: the quadratic Gaussian CEO problem: K sensors observe
  ``Y_k = X + N_k``, ``N_k ~ N(0, sigma_k^2)`` independent, each encodes separately, and one decoder
  estimates X. The sum rate (Oohama 2005; Prabhakaran, Tse, Ramchandran, ISIT 2004) is::

      R_sum(D) = min  1/2 log2(sigma_X^2 / D) + sum_k r_k
      over r_k >= 0 with  1/D = 1/sigma_X^2 + sum_k (1 - 2^(-2 r_k)) / sigma_k^2

  The minimisation is a water-filling, solved exactly here: with ``s_k = 2^(-2 r_k)`` the optimum
  is ``s_k = min(1, mu sigma_k^2)`` (quiet sensors get r_k = 0), ``mu`` set by the constraint.
  :func:`ceo_sum_rate_gaussian_symmetric` is the closed form of equal noise variances (Chen, Zhang,
  Berger, Wicker, IEEE JSAC 2004).

All functions return ``inf`` at or below the smallest achievable distortion (0 for R(D) and
R_WZ(D); the MMSE of X from all the sensors' clean data for the CEO) and ``0`` at or above the
source variance (sending nothing, the decoder outputs the mean, or its side-information estimate
for Wyner-Ziv).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "ceo_distortion_floor",
    "ceo_rates_gaussian",
    "ceo_sum_rate_gaussian",
    "ceo_sum_rate_gaussian_symmetric",
    "rate_distortion_gaussian",
    "wyner_ziv_gaussian",
]


def _positive(value: float, name: str) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    return value


def _distortion(value: float) -> float:
    value = float(value)
    if math.isnan(value) or value < 0:
        raise ValueError(f"distortion must be >= 0 (mean squared error per sample), got {value}")
    return value


def rate_distortion_gaussian(variance: float, distortion: float) -> float:
    """Rate-distortion function of a memoryless Gaussian source, squared error.

    Args:
        variance: source variance sigma^2 (> 0).
        distortion: mean squared error per sample D (>= 0).

    Returns:
        ``max(0, 1/2 log2(sigma^2 / D))`` bits per sample; ``inf`` at D = 0.

    Raises:
        ValueError: variance not positive and finite, or distortion negative.

    """
    variance = _positive(variance, "variance")
    distortion = _distortion(distortion)
    if distortion >= variance:
        return 0.0
    if distortion == 0:
        return math.inf
    return 0.5 * math.log2(variance / distortion)


def wyner_ziv_gaussian(conditional_variance: float, distortion: float) -> float:
    """Wyner-Ziv rate of a Gaussian source with side information Y at the decoder only.

    Args:
        conditional_variance: sigma^2_{X|Y}, the MMSE of X from the side information (> 0); for
            ``Y = X + N`` it is ``sigma_X^2 sigma_N^2 / (sigma_X^2 + sigma_N^2)``.
        distortion: mean squared error per sample D (>= 0).

    Returns:
        ``max(0, 1/2 log2(sigma^2_{X|Y} / D))`` bits per sample; ``inf`` at D = 0.

    """
    return rate_distortion_gaussian(_positive(conditional_variance, "conditional_variance"), distortion)


def _noise_variances(noise_variances: Sequence[float] | np.ndarray) -> np.ndarray:
    noise = np.atleast_1d(np.asarray(noise_variances, dtype=np.float64))
    if noise.ndim != 1 or noise.size == 0:
        raise ValueError(f"noise_variances must be a non-empty list of K variances, got shape {noise.shape}")
    if not np.all(np.isfinite(noise) & (noise > 0)):
        raise ValueError(f"noise_variances must all be positive finite numbers, got {noise.tolist()}")
    return noise


def ceo_distortion_floor(source_variance: float, noise_variances: Sequence[float] | np.ndarray) -> float:
    """Smallest distortion of the CEO problem: the MMSE of X from every sensor's uncoded data.

    ``1 / (1/sigma_X^2 + sum_k 1/sigma_k^2)``, reached only at infinite rate.
    """
    source_variance = _positive(source_variance, "source_variance")
    noise = _noise_variances(noise_variances)
    return 1.0 / (1.0 / source_variance + float(np.sum(1.0 / noise)))


def ceo_rates_gaussian(
    source_variance: float, noise_variances: Sequence[float] | np.ndarray, distortion: float
) -> tuple[float, np.ndarray]:
    """Optimal point of the quadratic Gaussian CEO sum rate: the rate and its split.

    Args:
        source_variance: sigma_X^2 (> 0).
        noise_variances: sigma_k^2 of each sensor's observation noise (K values, > 0).
        distortion: target mean squared error of X per sample.

    Returns:
        ``(R_sum, r)``: the sum rate in bits per sample and the K "noise rates" r_k (bits per
        sample, ``R_sum = 1/2 log2(sigma_X^2/D) + sum r_k``); ``(inf, inf...)`` at or below
        :func:`ceo_distortion_floor`, ``(0, 0...)`` at or above ``source_variance``.

    """
    source_variance = _positive(source_variance, "source_variance")
    noise = _noise_variances(noise_variances)
    distortion = _distortion(distortion)
    if distortion >= source_variance:
        return 0.0, np.zeros(noise.size)
    if distortion <= ceo_distortion_floor(source_variance, noise):
        return math.inf, np.full(noise.size, math.inf)
    # information the sensors must deliver beyond the prior: sum_k (1 - s_k) / sigma_k^2 = c
    c = 1.0 / distortion - 1.0 / source_variance
    order = np.argsort(noise, kind="stable")
    sorted_noise = noise[order]
    precision = np.cumsum(1.0 / sorted_noise)
    r_sorted = np.zeros(noise.size)
    for j in range(1, noise.size + 1):  # the j least noisy sensors are active
        mu = (precision[j - 1] - c) / j
        if mu <= 0:
            continue  # these j sensors cannot deliver c even at infinite rate
        inactive_ok = j == noise.size or mu * sorted_noise[j] >= 1.0
        if mu * sorted_noise[j - 1] < 1.0 and inactive_ok:
            r_sorted[:j] = -0.5 * np.log2(mu * sorted_noise[:j])
            break
    else:  # pragma: no cover - the floor check above makes some j feasible
        raise RuntimeError("CEO water-filling found no active set")
    rates = np.empty(noise.size)
    rates[order] = r_sorted
    return 0.5 * math.log2(source_variance / distortion) + float(rates.sum()), rates


def ceo_sum_rate_gaussian(
    source_variance: float, noise_variances: Sequence[float] | np.ndarray, distortion: float
) -> float:
    """Sum rate of the quadratic Gaussian CEO problem, unequal sensor noise (bits per sample).

    K sensors see ``Y_k = X + N_k``; the fusion node wants X within mean squared error D. With
    K = 1 this is the remote (noisy-source) rate-distortion function
    ``1/2 log2((sigma_X^2 - D_min) / (D - D_min))``.

    Args:
        source_variance: sigma_X^2 (> 0).
        noise_variances: sigma_k^2 per sensor (> 0).
        distortion: target mean squared error D (>= 0).

    Returns:
        Bits per sample summed over the sensors; ``inf`` for D at or below
        :func:`ceo_distortion_floor`, 0 for D at or above ``source_variance``.

    Raises:
        ValueError: a variance not positive and finite, or a negative distortion.

    """
    return ceo_rates_gaussian(source_variance, noise_variances, distortion)[0]


def ceo_sum_rate_gaussian_symmetric(
    source_variance: float, noise_variance: float, n_sensors: int, distortion: float
) -> float:
    """Return the CEO sum rate when all K sensors have the same noise variance, in closed form.

    Chen, Zhang, Berger, Wicker (2004)::

        R = 1/2 log2(sx / D) + K/2 log2(K D sx / (K D sx - sn sx + sn D)),  sx = sigma_X^2, sn = sigma_N^2

    Args:
        source_variance: sigma_X^2 (> 0).
        noise_variance: sigma_N^2 of every sensor (> 0).
        n_sensors: K (>= 1).
        distortion: target mean squared error D (>= 0).

    Returns:
        Bits per sample; ``inf`` at or below ``sigma_X^2 sigma_N^2 / (K sigma_X^2 + sigma_N^2)``,
        0 at or above ``source_variance``.

    """
    sx = _positive(source_variance, "source_variance")
    sn = _positive(noise_variance, "noise_variance")
    if int(n_sensors) != n_sensors or n_sensors < 1:
        raise ValueError(f"n_sensors must be an integer >= 1, got {n_sensors}")
    k = int(n_sensors)
    d = _distortion(distortion)
    if d >= sx:
        return 0.0
    denominator = k * d * sx - sn * sx + sn * d
    if denominator <= 0:
        return math.inf
    return 0.5 * (math.log2(sx / d) + k * math.log2(k * d * sx / denominator))
