r"""Two receivers on LocateLift-v1 through one Gray-Wyner codec (paper 002, issue 14 item 5).

A robot with two cameras feeds two consumers. **Receiver 1** is the shipped v1 behaviour-cloning
policy (it acts: the env is driven by its actions); **receiver 2** is a remote monitor that
reconstructs the side view. The Gray-Wyner codec sends the common stream ``Y0`` over a
*broadcast* link both receivers hear and the private streams ``Y1``, ``Y2`` over one link per
receiver, each link with its own bandwidth trace. Baselines: **two independent codecs** on the
same features (the same class with ``common_dim = 0``), and **two independent NDPCA codecs** on
pixels. One concept per module:

* :mod:`~bwgym.scenarios.two_receivers.features`: the view features the codecs see and predict
  (:class:`ViewFeatures`), frames of seeded episodes (:func:`collect_frames`);
* :mod:`~bwgym.scenarios.two_receivers.training`: the shipped pair (:func:`train_pair`,
  :func:`load_pair`; :func:`ship_pair` regenerates both files, about 4 minutes on one thread);
* :mod:`~bwgym.scenarios.two_receivers.senders`: what is sent and how each receiver decodes it
  (Gray-Wyner on features, independent codecs; :func:`load_pixel_baseline`, :func:`side_budget`);
* :mod:`~bwgym.scenarios.two_receivers.episodes`: the episode loop over the links
  (:func:`play_episode`), :func:`run_two_receivers`, :func:`run_pixel_baseline`,
  :func:`rate_sweep`, :func:`summarise`;
* :mod:`~bwgym.scenarios.two_receivers.scenario`: a scenario with ``receivers:`` and ``links:``
  (:mod:`bwgym.scenarios.receivers`) run by ``bwgym run`` and ``bwgym sweep``: library scenarios
  ``two_receivers_gray_wyner``, ``two_receivers_separate`` and ``two_receivers_ndpca``.

The transmit-rate saving at equal task success is a BD-rate (:func:`bwgym.common.stats.bd_rate`).
Benchmark: ``python benchmarks/gray_wyner_two_receivers.py`` (BENCHMARKS.md).
"""

from bwgym.scenarios.two_receivers.episodes import (
    LINKS,
    TWO_RECEIVERS,
    default_traces,
    play_episode,
    rate_sweep,
    run_pixel_baseline,
    run_two_receivers,
    summarise,
)
from bwgym.scenarios.two_receivers.features import ENV_ID, FeaturePairs, ViewFeatures, collect_frames
from bwgym.scenarios.two_receivers.senders import (
    PIXEL_BASELINE,
    SIDE_ONLY,
    load_pixel_baseline,
    side_budget,
)
from bwgym.scenarios.two_receivers.training import (
    BASELINE_CHECKPOINT,
    RECIPE,
    SHIPPED_CHECKPOINT,
    load_pair,
    ship_pair,
    train_pair,
)

__all__ = [
    "BASELINE_CHECKPOINT",
    "ENV_ID",
    "LINKS",
    "PIXEL_BASELINE",
    "RECIPE",
    "SHIPPED_CHECKPOINT",
    "SIDE_ONLY",
    "TWO_RECEIVERS",
    "FeaturePairs",
    "ViewFeatures",
    "collect_frames",
    "default_traces",
    "load_pair",
    "load_pixel_baseline",
    "play_episode",
    "rate_sweep",
    "run_pixel_baseline",
    "run_two_receivers",
    "ship_pair",
    "side_budget",
    "summarise",
    "train_pair",
]
