"""Sources for the Gray-Wyner codec: the synthetic dataset of paper 002 (App. D.3) and Gaussian pairs.

Both are generated on the fly from a seed and know their information quantities exactly (closed
form, never estimated from samples).

**The synthetic dataset (paper 002, App. D.3).** ``X`` has ``2 x n`` elements (the paper: ``2 x 64 x
64``); ``X1`` is the first half, ``X2`` the second. Every element is distributed as ``N(0, 4)``
(variance 4), clipped to ``[-4, 4]`` and rounded to the 9 integers ``-4..4``: a symbol entropy of
``h = 2.966`` bits. A fixed *dependency map*, drawn once from the seed, ties elements together:

* the paper's reading (``layout="paper"``): the ``2n`` element slots are filled with *groups*, each
  group a pair of copies with probability ``dependency_prob`` (4/5 in the paper) or a single
  independent element otherwise; then the slots are shuffled. One symbol is drawn per group. A pair
  whose two slots land in different halves is common to ``X1`` and ``X2``; a pair inside one half
  is redundancy private to that source.
* ``layout="aligned"``: element ``i`` of ``X2`` is a copy of element ``i`` of ``X1`` with probability
  ``dependency_prob``, independent otherwise; ``dependency_prob=1`` makes the two sources identical.

Per position (bits per element of ``X1``, the paper's "bits per element" and its ``1/(64 x 64)``
scaling), with ``G`` groups, ``G_k`` groups touching half ``k`` and ``n`` positions::

    H(X1, X2) = G h / n,   H(X1) + H(X2) = (G_1 + G_2) h / n,   I(X1; X2) = (G_1 + G_2 - G) h / n

In expectation over the map (``q = dependency_prob``, a group holding ``1 + q`` slots on average,
a pair crossing the halves with probability ``n / (2n - 1) ~ 1/2``)::

    H(X1, X2) = 2h / (1 + q),   I(X1; X2) = q h / (1 + q),   H(X1) + H(X2) = (2 + q) h / (1 + q)

which at ``q = 4/5`` is 3.296, 4.614 and 1.318 bits, the paper's 3.3, 4.62 and 1.32. (The other
reading, where an *independent pair* is two independent elements, gives 3.56, 4.75 and 1.19.)

The targets of the two regression tasks are ``Z_k = A_k X_k / 4`` with ``A_k`` a random rotation
(a bijective linear map of determinant 1, as in the paper); inputs are ``X_k / 4`` (in ``[-1, 1]``),
so predicting zero has an RMSE of ~0.48, the paper's distortion at its lowest rates.

**Gaussian pairs.** ``n`` i.i.d. pairs with unit variances and correlation ``rho``; the tasks
reconstruct each source. Wyner's common information is ``1/2 log2((1 + rho) / (1 - rho))`` bits per
pair, the mutual information ``-1/2 log2(1 - rho^2)``.

Example::

    data = SyntheticGrayWyner(n_elements=32, seed=0)
    batch = data.sample(100, np.random.default_rng(1))   # x1, x2, z1, z2: float32 (100, 32)
    data.entropies()       # exact, for this map
    data.expected_entropies()
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Entropies",
    "GaussianPairs",
    "SyntheticGrayWyner",
    "gaussian_mutual_information_bits",
    "quantized_normal_pmf",
    "symbol_entropy_bits",
    "wyner_common_information_bits",
]

LAYOUTS = ("paper", "aligned")


def quantized_normal_pmf(variance: float = 4.0, n_symbols: int = 9) -> np.ndarray:
    """Return the PMF of ``N(0, variance)`` clipped to ``[-m, m]`` and rounded to ``-m..m``.

    ``m = (n_symbols - 1) / 2``; the clipped tails fall on the end symbols.

    Args:
        variance: variance of the normal (the paper's ``N(0, 4)``).
        n_symbols: odd number of integer symbols (9 in the paper).

    Raises:
        ValueError: non-positive variance or an even or < 1 number of symbols.

    """
    if not variance > 0:
        raise ValueError(f"variance must be > 0, got {variance}")
    if n_symbols < 1 or n_symbols % 2 == 0:
        raise ValueError(f"n_symbols must be odd and >= 1, got {n_symbols}")
    m = (n_symbols - 1) // 2
    sd = math.sqrt(variance)

    def cdf(t: float) -> float:
        return 0.5 * math.erfc(-t / (sd * math.sqrt(2.0)))

    edges = [0.0] + [cdf(k + 0.5) for k in range(-m, m)] + [1.0]
    return np.diff(np.array(edges))


def symbol_entropy_bits(pmf: np.ndarray) -> float:
    """Shannon entropy of a PMF in bits."""
    p = np.asarray(pmf, dtype=np.float64)
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def wyner_common_information_bits(rho: float) -> float:
    """Wyner's common information of a unit Gaussian pair with correlation ``rho`` (bits per pair)."""
    if not 0 <= rho < 1:
        raise ValueError(f"rho must be in [0, 1), got {rho}")
    return 0.5 * math.log2((1 + rho) / (1 - rho))


def gaussian_mutual_information_bits(rho: float) -> float:
    """Mutual information ``-1/2 log2(1 - rho^2)`` of a Gaussian pair (bits per pair)."""
    if not 0 <= rho < 1:
        raise ValueError(f"rho must be in [0, 1), got {rho}")
    return -0.5 * math.log2(1 - rho * rho)


@dataclass(frozen=True)
class Entropies:
    """Exact information quantities in bits per position (per element of ``X1``).

    Attributes:
        joint_bits: ``H(X1, X2)``.
        marginal_sum_bits: ``H(X1) + H(X2)``.
        mutual_information_bits: ``I(X1; X2)``.

    """

    joint_bits: float
    marginal_sum_bits: float
    mutual_information_bits: float


def _rotation(n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw a random rotation (orthogonal, determinant +1) of size ``n``."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


@dataclass(frozen=True)
class SyntheticGrayWyner:
    """The synthetic two-source dataset of paper 002, App. D.3 (see the module docstring).

    Attributes:
        n_elements: elements per source (the paper: 64 x 64 = 4096).
        dependency_prob: probability that a group is a pair of copies (paper: 4/5); 0 and 1 allowed.
        layout: ``"paper"`` (groups, shuffled) or ``"aligned"`` (element-wise copies).
        variance: variance of the normal the symbols are quantised from (paper: 4).
        n_symbols: number of integer symbols (paper: 9).
        seed: seed of the dependency map and the two task rotations.

    """

    n_elements: int = 32
    dependency_prob: float = 0.8
    layout: str = "paper"
    variance: float = 4.0
    n_symbols: int = 9
    seed: int = 0
    group_of_slot: np.ndarray = field(init=False, repr=False, compare=False)
    n_groups: int = field(init=False, repr=False, compare=False)
    rotations: tuple[np.ndarray, np.ndarray] = field(init=False, repr=False, compare=False)
    pmf: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.n_elements < 1:
            raise ValueError(f"n_elements must be >= 1, got {self.n_elements}")
        if not 0.0 <= self.dependency_prob <= 1.0:
            raise ValueError(f"dependency_prob must be in [0, 1], got {self.dependency_prob}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        object.__setattr__(self, "pmf", quantized_normal_pmf(self.variance, self.n_symbols))
        rng = np.random.default_rng(self.seed)
        n = self.n_elements
        if self.layout == "paper":
            groups: list[int] = []
            g = 0
            while len(groups) < 2 * n:
                pair = rng.random() < self.dependency_prob and len(groups) <= 2 * n - 2
                groups.extend([g, g] if pair else [g])
                g += 1
            slots = np.array(groups, dtype=np.int64)[rng.permutation(2 * n)]
        else:
            copy = rng.random(n) < self.dependency_prob
            second = np.where(copy, np.arange(n), n + np.cumsum(~copy) - 1)
            slots = np.concatenate([np.arange(n), second]).astype(np.int64)
            g = int(slots.max()) + 1
        object.__setattr__(self, "group_of_slot", slots)
        object.__setattr__(self, "n_groups", int(g))
        object.__setattr__(self, "rotations", (_rotation(n, rng), _rotation(n, rng)))

    @property
    def symbol_entropy_bits(self) -> float:
        """Entropy ``h`` of one element (2.966 bits for the paper's 9-symbol ``N(0, 4)``)."""
        return symbol_entropy_bits(self.pmf)

    def entropies(self) -> Entropies:
        """Exact ``H(X1, X2)``, ``H(X1) + H(X2)``, ``I(X1; X2)`` of this dependency map, per position."""
        n, h = self.n_elements, self.symbol_entropy_bits
        g1 = len(np.unique(self.group_of_slot[:n]))
        g2 = len(np.unique(self.group_of_slot[n:]))
        g = self.n_groups
        return Entropies(g * h / n, (g1 + g2) * h / n, (g1 + g2 - g) * h / n)

    def expected_entropies(self) -> Entropies:
        """Return the same quantities in expectation over dependency maps (large ``n``), per position."""
        q, h = self.dependency_prob, self.symbol_entropy_bits
        if self.layout == "aligned":
            return Entropies((2 - q) * h, 2 * h, q * h)
        return Entropies(2 * h / (1 + q), (2 + q) * h / (1 + q), q * h / (1 + q))

    def sample_symbols(self, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Integer symbols ``(X1, X2)``, each ``(batch_size, n_elements)`` int64 in ``-4..4``."""
        m = (self.n_symbols - 1) // 2
        sym = rng.choice(np.arange(-m, m + 1), size=(batch_size, self.n_groups), p=self.pmf)
        x = sym[:, self.group_of_slot]
        return x[:, : self.n_elements], x[:, self.n_elements :]

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Draw a batch: inputs ``x1, x2`` (``X_k / 4``) and targets ``z1, z2`` (``A_k X_k / 4``), float32."""
        m = max((self.n_symbols - 1) // 2, 1)
        s1, s2 = self.sample_symbols(batch_size, rng)
        x1, x2 = s1 / m, s2 / m
        a1, a2 = self.rotations
        return {
            "x1": x1.astype(np.float32),
            "x2": x2.astype(np.float32),
            "z1": (x1 @ a1.T).astype(np.float32),
            "z2": (x2 @ a2.T).astype(np.float32),
        }


@dataclass(frozen=True)
class GaussianPairs:
    """``n`` i.i.d. unit Gaussian pairs with correlation ``rho``; the tasks reconstruct each source.

    Attributes:
        n_elements: pairs per sample.
        rho: correlation in ``[0, 1)``.
        seed: unused by sampling (batches take a generator); kept for the record.

    """

    n_elements: int = 32
    rho: float = 0.9
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_elements < 1:
            raise ValueError(f"n_elements must be >= 1, got {self.n_elements}")
        if not 0.0 <= self.rho < 1.0:
            raise ValueError(f"rho must be in [0, 1), got {self.rho}")

    @property
    def wyner_common_information_bits(self) -> float:
        """Wyner's common information per pair, ``1/2 log2((1 + rho) / (1 - rho))``."""
        return wyner_common_information_bits(self.rho)

    @property
    def mutual_information_bits(self) -> float:
        """``I(X1; X2)`` per pair."""
        return gaussian_mutual_information_bits(self.rho)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Draw a batch: ``x1, x2`` and the targets ``z1 = x1, z2 = x2``, float32 ``(batch_size, n)``."""
        a = rng.standard_normal((batch_size, self.n_elements))
        b = rng.standard_normal((batch_size, self.n_elements))
        x1 = a
        x2 = self.rho * a + math.sqrt(1.0 - self.rho**2) * b
        x1, x2 = x1.astype(np.float32), x2.astype(np.float32)
        return {"x1": x1, "x2": x2, "z1": x1.copy(), "z2": x2.copy()}
