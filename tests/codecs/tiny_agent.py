"""A tiny frozen task model for codec tests (what the BC agent is to the real codecs)."""

import torch

SIZE = 32


class TinyAgent(torch.nn.Module):
    """A stand-in task model: per-view conv + linear to a 4-d tanh action (any frozen module works)."""

    def __init__(self, views=("arm", "side")) -> None:
        super().__init__()
        self.views = tuple(views)
        self.convs = torch.nn.ModuleDict(
            {
                v: torch.nn.Sequential(
                    torch.nn.Conv2d(3, 4, 4, stride=4), torch.nn.ReLU(), torch.nn.Flatten()
                )
                for v in views
            }
        )
        self.head = torch.nn.LazyLinear(4)

    def forward(self, views):
        return torch.tanh(self.head(torch.cat([self.convs[v](views[v]) for v in self.views], dim=1)))


def tiny_agent(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    agent = TinyAgent()
    agent(dict.fromkeys(agent.views, torch.zeros(1, 3, SIZE, SIZE)))  # materialise the lazy layer
    return agent.eval()


#: Training options small enough for tests (the codecs come out poor, but every protocol property holds).
TINY_TRAINING = {
    "batch_size": 8,
    "latent_dim": 8,
    "channels": (8, 8, 8),
    "device": "cpu",
    "threads": 1,
    "eval_every": 1000,
}


def tiny_options(**overrides):
    """``TINY_TRAINING`` with ``overrides`` (e.g. ``steps``), as keyword options of the training."""
    return {**TINY_TRAINING, **overrides}


def tiny_config(variant: str, **overrides):
    """The ``TrainConfig`` of the learned codec ``variant`` with :func:`tiny_options`."""
    from bwgym.codecs.train import TrainConfig

    return TrainConfig.for_variant(variant, **tiny_options(**overrides))


def collect_lift_demos(tmp_path_factory, episodes: int, seed: int):
    """Record ``episodes`` expert LocateLift episodes at ``SIZE`` x ``SIZE`` in a fresh folder; return its path."""
    from bwgym.agents.demos import collect_demos

    return collect_demos(
        tmp_path_factory.mktemp("demos") / "d",
        episodes=episodes,
        seed=seed,
        env_kwargs={"image_size": SIZE},
        progress=False,
    )


def collect_lift_frames(tmp_path_factory, episodes: int, seed: int):
    """The ``arm`` and ``side`` frames of :func:`collect_lift_demos` and the episode of each row."""
    from bwgym.agents.demos import DemoDataset

    obs, _, episode_index = DemoDataset(collect_lift_demos(tmp_path_factory, episodes, seed)).arrays()
    return {"arm": obs["arm"], "side": obs["side"]}, episode_index
