"""The behaviour-cloning network as the actor of stock SB3 PPO or SAC (BC-initialised RL).

Fine-tuning a BC policy with RL tends to destroy the prior in its first updates: the critic is
random, the exploration noise is large, and the encoder moves with the value loss. Here the SB3
policy *is* the BC network, so its first deterministic action equals the BC agent's on the same
observation, and three things keep it there while the critic learns:

* the same layers: :class:`BCFeatures` (one BC view encoder per camera, weights copied) is the
  policy's features extractor, the actor's hidden layers and output layer are BC's MLP, and the
  action is ``tanh`` of the actor's output as in BC (PPO through gSDE's squashed Gaussian,
  ``use_sde=True, squash_output=True``; SAC's actor squashes natively);
* small initial exploration: the noise's standard deviation before ``tanh`` is set to
  ``initial_noise_std`` from the actor's features on real observations;
* a critic warm-up: the actor's parameters are frozen for the first ``critic_warmup_steps`` env
  steps, so the first policy-gradient steps use a critic that has seen the prior's returns.
  The critic gets its own copy of the BC encoders (``share_features_extractor=False``), so the
  value loss never moves the actor's features.

Everything is stock SB3 configured by policy keyword arguments and a callback; :mod:`bwgym.agents.rl`
stores :class:`BCFeatures` by name (an allowed class) and rebuilds it without unpickling.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from bwgym.agents.bc import PROPRIO_KEY, BCAgent, _ViewEncoder

__all__ = ["BCFeatures", "CriticWarmup", "bc_algo_kwargs", "bc_policy_kwargs", "load_bc_weights"]


class BCFeatures(BaseFeaturesExtractor):
    """BC's per-view encoders (patch stem, stride-2 convolutions, linear + LayerNorm + tanh), concatenated.

    Args:
        observation_space: the policy's (transposed, channel-first) ``Dict`` space.
        view_names: camera views, in BC's feature order.
        image_shape: (H, W) of every view.
        channels, features, stem: BC's encoder architecture (:class:`~bwgym.agents.bc.BCAgent`).
        proprio_dim: size of ``proprio`` appended after the views (0: not used).
    """

    def __init__(
        self,
        observation_space: gym.spaces.Dict,
        view_names: Sequence[str] = ("arm", "side"),
        image_shape: Sequence[int] = (84, 84),
        channels: Sequence[int] = (32, 64, 64),
        features: int = 128,
        stem: int = 4,
        proprio_dim: int = 0,
    ) -> None:
        super().__init__(observation_space, features_dim=len(view_names) * int(features) + int(proprio_dim))
        for view in view_names:
            shape = tuple(observation_space.spaces[view].shape) if view in observation_space.spaces else None
            if shape != (3, *image_shape):
                raise ValueError(
                    f"BCFeatures: view {view!r} must be a (3, {image_shape[0]}, {image_shape[1]}) image "
                    f"in the policy's space, got {shape}"
                )
        self.view_names = [str(v) for v in view_names]
        self.proprio_dim = int(proprio_dim)
        shape2 = (int(image_shape[0]), int(image_shape[1]))
        self.encoders = nn.ModuleDict(
            {
                v: _ViewEncoder(shape2, [int(c) for c in channels], int(features), int(stem))
                for v in self.view_names
            }
        )

    def forward(self, observations: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Features of a batch (images already scaled to [0, 1] by SB3)."""
        feats = [self.encoders[v](observations[v].float()) for v in self.view_names]
        if self.proprio_dim:
            feats.append(observations[PROPRIO_KEY].reshape(-1, self.proprio_dim).float())
        return torch.cat(feats, dim=-1)


def _linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def bc_policy_kwargs(bc: BCAgent, algo: str, critic_hidden: Sequence[int] = (256, 256)) -> dict[str, Any]:
    """SB3 ``policy_kwargs`` whose actor has exactly ``bc``'s layers (plain JSON but for the classes)."""
    if algo not in ("ppo", "sac"):
        raise ValueError(f"algo must be 'ppo' or 'sac', got {algo!r}")
    hidden = list(bc.arch["hidden"])
    kwargs: dict[str, Any] = {
        "features_extractor_class": BCFeatures,
        "features_extractor_kwargs": {
            "view_names": list(bc.view_names),
            "image_shape": list(bc.image_shape),
            "channels": list(bc.arch["channels"]),
            "features": int(bc.arch["features"]),
            "stem": int(bc.arch["stem"]),
            "proprio_dim": int(bc.proprio_dim),
        },
        "activation_fn": nn.ReLU,
        "share_features_extractor": False,
    }
    if algo == "ppo":
        kwargs.update(
            net_arch={"pi": hidden, "vf": list(critic_hidden)}, ortho_init=False, squash_output=True
        )
    else:
        kwargs.update(net_arch={"pi": hidden, "qf": list(critic_hidden)})
    return kwargs


def bc_algo_kwargs(algo: str) -> dict[str, Any]:
    """Algorithm arguments a BC actor needs: gSDE for PPO (its only squashed Gaussian)."""
    return {"use_sde": True, "sde_sample_freq": 4} if algo == "ppo" else {}


def _actor_parts(policy: Any, algo: str) -> tuple[nn.Module, list[nn.Linear]]:
    """The actor's features extractor and its Linear layers, hidden ones then the output."""
    if algo == "ppo":
        return policy.pi_features_extractor, [*_linears(policy.mlp_extractor.policy_net), policy.action_net]
    actor = policy.actor
    return actor.features_extractor, [*_linears(actor.latent_pi), actor.mu]


def _critic_extractors(policy: Any, algo: str) -> list[nn.Module]:
    if algo == "ppo":
        return [policy.vf_features_extractor]
    return [policy.critic.features_extractor, policy.critic_target.features_extractor]


@torch.no_grad()
def load_bc_weights(
    policy: Any,
    bc: BCAgent,
    algo: str,
    observations: Mapping[str, np.ndarray] | None = None,
    initial_noise_std: float = 0.1,
) -> None:
    """Copy ``bc``'s weights into the actor of an SB3 policy built with :func:`bc_policy_kwargs`.

    The critics' features extractors start from BC's encoders too. With ``observations`` (a batch
    as the env gives it), the exploration noise is scaled so its standard deviation before
    ``tanh`` is about ``initial_noise_std`` on them.

    Raises:
        ValueError: the policy's layers do not have BC's shapes (built from another agent).
    """
    extractor, layers = _actor_parts(policy, algo)
    bc_layers = _linears(bc.mlp)
    shapes = [tuple(m.weight.shape) for m in layers]
    if shapes != [tuple(m.weight.shape) for m in bc_layers]:
        raise ValueError(
            f"the policy's actor layers {shapes} are not the BC agent's "
            f"{[tuple(m.weight.shape) for m in bc_layers]}: build it with bc_policy_kwargs(bc, {algo!r})"
        )
    for target in [extractor, *_critic_extractors(policy, algo)]:
        target.encoders.load_state_dict(bc.encoders.state_dict())
    for mine, theirs in zip(layers, bc_layers, strict=True):
        mine.weight.copy_(theirs.weight)
        mine.bias.copy_(theirs.bias)
    if algo == "sac":
        policy.actor.log_std.weight.zero_()
        policy.actor.log_std.bias.fill_(math.log(initial_noise_std))
        return
    if observations is None:
        policy.log_std.fill_(math.log(initial_noise_std))
        return
    # gSDE: the noise of action i is sum_j latent_j * eps_ji, eps_ji ~ N(0, std_ji^2).
    obs_tensor, _ = policy.obs_to_tensor(dict(observations))
    features = extractor(preprocess_obs(obs_tensor, policy.observation_space, policy.normalize_images))
    latent = policy.mlp_extractor.forward_actor(features)
    norm = float(latent.norm(dim=-1).mean().clamp_min(1e-6))
    policy.log_std.fill_(math.log(initial_noise_std / norm))


class CriticWarmup(BaseCallback):
    """Freeze the actor (features extractor, hidden layers, output, noise) for the first ``steps`` env steps."""

    def __init__(self, algo: str, steps: int) -> None:
        super().__init__()
        self.algo = algo
        self.steps = int(steps)
        self._frozen: bool | None = None

    def _actor_parameters(self) -> list[nn.Parameter]:
        policy = self.model.policy
        extractor, layers = _actor_parts(policy, self.algo)
        params = [*extractor.parameters(), *(p for m in layers for p in m.parameters())]
        if self.algo == "ppo":
            params.append(policy.log_std)
        else:
            params += list(policy.actor.log_std.parameters())
        return params

    def _set(self) -> None:
        frozen = self.num_timesteps < self.steps
        if frozen != self._frozen:
            for p in self._actor_parameters():
                p.requires_grad_(not frozen)
            self._frozen = frozen
            self.logger.record("train/actor_frozen", float(frozen))

    def _on_training_start(self) -> None:
        self._set()

    def _on_rollout_end(self) -> None:
        self._set()

    def _on_step(self) -> bool:
        if self.algo == "sac":  # SAC trains between steps: check every step
            self._set()
        return True
