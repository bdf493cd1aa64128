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
