r"""NDPCA: neural distributed PCA, one learned model for every bandwidth (NDPCA paper, Sec. 4).

Each view ``k`` has its own CNN encoder ``E_k`` (it never sees the other views) producing a
latent ``z_k`` of ``d_k`` features. A :class:`~bwgym.codecs.dpca.DPCA` fitted on the training
latents projects every ``z_k`` on its own principal directions, and a total bandwidth of ``m``
components goes to the ``m`` largest singular values pooled over views, so the views share the
link by their importance. The receiver back-projects and a joint decoder ``D`` reconstructs all
views from all latents::

    x_arm  -> E_arm  -> z_arm  -> V_arm[:, :m_arm]^T  -> q -> bytes \\            / x_arm_hat
                                                                     > D(z_hat) <
    x_side -> E_side -> z_side -> V_side[:, :m_side]^T -> q -> bytes /            \\ x_side_hat

bwgym sends real bytes, not dimensions: ``compress(views, budget_bits)`` searches ``m`` and one
uniform quantisation step (entropy model: zero-mean Gaussian per coefficient with the DPCA
variance, :mod:`bwgym.codecs.entropy`) for the lowest latent distortion whose payload fits, and
writes the step index and ``m_k`` per view into the payload header. :attr:`NDPCACodec.last_allocation`
(or :meth:`NDPCACodec.allocation_of` on a payload) reports the split, e.g. how much of the link
the arm camera got.

Training (:func:`bwgym.codecs.train.train_codec`, eq. 8) minimises
``lambda_task * ||agent(x_hat) - agent(x)||^2 + lambda_rec * ||x_hat - x||^2`` through the frozen
behaviour-cloning agent, with Alg. 1's random-dimension DPCA projection and straight-through
quantisation (paper 003, Sec. 3.4) between encoder and decoder. ``lambda_task = 0`` gives the
task-agnostic variant. Afterwards the DPCA is refitted on the training latents and stored in the
checkpoint; evaluation never refits. Two checkpoints ship in ``bwgym/codecs/checkpoints/``:
``ndpca_locate_lift.pt`` (task-aware) and ``ndpca_agnostic_locate_lift.pt``.

Example::

    codec = NDPCACodec.load_shipped()                       # task-aware, LocateLift 84x84
    payload = codec.compress({"arm": arm, "side": side}, budget_bits=300)
    codec.last_allocation                                   # e.g. {'arm': 14, 'side': 6}
    views = codec.decompress(Payload.from_bytes(payload.to_bytes()))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from bwgym.codecs.autoencoders import NeuralLatentCodec

__all__ = ["CHECKPOINT_DIR", "SHIPPED", "NDPCACodec"]

#: Where the shipped learned-codec checkpoints live.
CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
#: Shipped checkpoint file per variant name (the names ``bwgym train codec --codec`` accepts).
SHIPPED = {
    "ndpca": "ndpca_locate_lift.pt",
    "ndpca_agnostic": "ndpca_agnostic_locate_lift.pt",
    "dae": "dae_locate_lift.pt",
    "jae": "jae_locate_lift.pt",
    "linear_dpca": "linear_dpca_locate_lift.npz",
    "pca": "pca_locate_lift.npz",
}


class NDPCACodec(NeuralLatentCodec):
    """Per-view CNN encoders, DPCA over their latents, a joint decoder; one model for all rates.

    Build with :func:`bwgym.codecs.train.train_codec` or load with :meth:`load` /
    :meth:`load_shipped`. See the module docstring for the pipeline and
    :class:`~bwgym.codecs.autoencoders.NeuralLatentCodec` for the constructor arguments.
    """

    name = "ndpca"
    joint = False
    latent_model_kind = "dpca"

    @classmethod
    def load_shipped(
        cls,
        task_aware: bool = True,
        expect_env_id: str | None = None,
        expect_views: Any = None,
        device: str | torch.device = "auto",
    ) -> NDPCACodec:
        """Load the shipped LocateLift codec: task-aware (default) or task-agnostic.

        Raises:
            FileNotFoundError: the checkpoint is missing (the message says how to retrain it).

        """
        variant = "ndpca" if task_aware else "ndpca_agnostic"
        path = CHECKPOINT_DIR / SHIPPED[variant]
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing from this install; retrain it with "
                f"`bwgym train codec --codec {variant} --env bwgym/LocateLift-v0 --out {path}` "
                "or all shipped codecs with `python -m bwgym.codecs.train --all`"
            )
        return cls.load(path, expect_env_id=expect_env_id, expect_views=expect_views, device=device)
