r"""NDPCA: neural distributed PCA, one learned model for every bandwidth (NDPCA paper, Sec. 4).

Each view ``k`` has its own CNN encoder ``E_k`` (it never sees the other views) producing a
latent ``z_k`` of ``d_k`` features. A :class:`~bwgym.codecs.core.dpca.DPCA` fitted on the training
latents projects every ``z_k`` on its own principal directions, and a total bandwidth of ``m``
components goes to the ``m`` largest singular values pooled over views, so the views share the
link by their importance. The receiver back-projects and a joint decoder ``D`` reconstructs all
views from all latents::

    x_arm  -> E_arm  -> z_arm  -> V_arm[:, :m_arm]^T  -> q -> bytes \\            / x_arm_hat
                                                                     > D(z_hat) <
    x_side -> E_side -> z_side -> V_side[:, :m_side]^T -> q -> bytes /            \\ x_side_hat

bwgym sends real bytes, not dimensions: ``compress(views, budget_bits)`` searches one uniform
quantisation step (entropy model: zero-mean Gaussian per coefficient with the DPCA variance,
:mod:`bwgym.codecs.core.entropy`), the finest whose lean frame fits; every component whose variance
clears the step is sent, so the pooled DPCA variances decide ``m_k`` per view, and the frame's one
header byte (the step index) tells the receiver all of it. A residual layer (a block DCT of the
decoder's pixel residual, :class:`~bwgym.codecs.core.latent.BlockDCTResidual`) takes over where the
latents stop paying, so one checkpoint spans ~24 bits to tens of kbit per step.
:attr:`NDPCACodec.last_allocation` (or :meth:`NDPCACodec.allocation_of` on a payload) reports the
latent split, e.g. how much of the link the arm camera got.

Training (:func:`bwgym.codecs.train.train_codec`, eq. 8) minimises
``lambda_task * ||agent(x_hat) - agent(x)||^2 + lambda_rec * ||x_hat - x||^2`` through the frozen
behaviour-cloning agent, with Alg. 1's random-dimension DPCA projection and straight-through
quantisation (paper 003, Sec. 3.4) between encoder and decoder. ``lambda_task = 0`` gives the
task-agnostic variant; the task-aware recipe weighs the pixel MSE 300
(:data:`~bwgym.codecs.image.neural.TASK_AWARE_LAMBDA_REC`), so that both terms count: at weight 1
the latents left the pixels (8 dB of PSNR lost) and the action error rose at every budget. Afterwards the DPCA is refitted on the training latents and stored in the
checkpoint; evaluation never refits. Two checkpoints ship per env in ``bwgym/codecs/checkpoints/``:
``ndpca_locate_lift[_v1].ckpt`` (task-aware) and ``ndpca_agnostic_locate_lift[_v1].ckpt``.

Example::

    codec = make_codec("ndpca", views, env_id="bwgym/LocateLift-v1")   # task-aware, 84x84
    payload = codec.compress({"arm": arm, "side": side}, budget_bits=300)
    codec.last_allocation                                   # e.g. {'arm': 14, 'side': 6}
    views = codec.decompress(Payload.from_bytes(payload.to_bytes(), session=codec.session))
"""

from __future__ import annotations

from bwgym.codecs.image.neural import NeuralLatentCodec, neural_codec

__all__ = ["NDPCACodec"]


@neural_codec(
    "ndpca_agnostic",
    "ndpca",
    "task-agnostic NDPCA: the same codec trained on reconstruction only",
    lambda_task=0.0,
)
@neural_codec("ndpca", 5, "task-aware NDPCA: per-view encoders, DPCA split, trained through the task model")
class NDPCACodec(NeuralLatentCodec):
    """Per-view CNN encoders, DPCA over their latents, a joint decoder; one model for all rates.

    Build with :meth:`train` (:func:`bwgym.codecs.train.train_codec`) or by name with
    :func:`bwgym.codecs.make_codec` (``"ndpca"`` or ``"ndpca_agnostic"``). See the module
    docstring for the pipeline and :class:`~bwgym.codecs.image.neural.NeuralLatentCodec` for the
    constructor arguments.
    """

    name = "ndpca"
