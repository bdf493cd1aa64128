"""Make every loader that unpickles fail the test: what bwgym loads must never reach one."""

import pickle

import pytest
import torch


def refuse_pickle_loaders(monkeypatch: pytest.MonkeyPatch, who: str) -> None:
    """Patch SB3's ``load`` (PPO, SAC), its zip loader, ``torch.load`` and ``pickle`` to raise, naming ``who``."""
    import stable_baselines3
    from stable_baselines3.common import save_util

    def refuse(*args, **kwargs):
        raise AssertionError(f"{who} must not call a pickle-based loader")

    for owner, name in [
        (stable_baselines3.PPO, "load"),
        (stable_baselines3.SAC, "load"),
        (save_util, "load_from_zip_file"),
        (torch, "load"),
        (pickle, "load"),
        (pickle, "loads"),
    ]:
        monkeypatch.setattr(owner, name, refuse)
