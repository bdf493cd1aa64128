"""Golden wire bytes of the latent codecs: the same frames and budgets always give the same bytes.

    python tests/codecs/golden_wire.py --write   # after retraining a shipped codec, or a wire change

Writes ``data/golden_wire.json``: per shipped LocateLift-v1 latent codec, the sha256 of every
payload of the frames in ``data/golden_frames.npz`` at each budget, with and without an explicit
split. A change to the compress path that keeps the wire format must leave every hash unchanged.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

import bwgym  # noqa: F401  (registers the envs; headless GL first)
from bwgym.codecs import make_codec

DATA = Path(__file__).parent / "data"
FRAMES = DATA / "golden_frames.npz"
GOLDEN = DATA / "golden_wire.json"
ENV_ID = "bwgym/LocateLift-v1"
CODECS = ("ndpca", "ndpca_agnostic", "dae", "jae", "linear_dpca", "pca")
BUDGETS = (0, 16, 17, 24, 32, 48, 64, 100, 128, 200, 256, 400, 512, 1024, 2048, 4096, 8192, 16384, 40000)
SPLITS = (None, {"arm": 0.7, "side": 0.3})


def frames() -> list[dict[str, np.ndarray]]:
    """The stored frames (written once from seeded LocateLift-v1 episodes)."""
    if not FRAMES.exists():
        import gymnasium as gym

        env = gym.make(ENV_ID)
        views: dict[str, list[np.ndarray]] = {"arm": [], "side": []}
        for seed in (0, 1):
            obs, _ = env.reset(seed=seed)
            rng = np.random.default_rng(seed)
            for t in range(50):
                obs, *_ = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
                if t % 12 == 0:
                    for k in views:
                        views[k].append(obs[k])
        np.savez_compressed(FRAMES, **{k: np.stack(v) for k, v in views.items()})
    data = np.load(FRAMES)
    return [{k: data[k][i] for k in ("arm", "side")} for i in range(len(data["arm"]))]


def wire_hashes(names: tuple[str, ...] = CODECS) -> dict[str, dict[str, str]]:
    """Per codec: its session fingerprint and the sha256 of all its payloads."""
    import gymnasium as gym

    space = gym.make(ENV_ID).observation_space
    out = {}
    for name in names:
        codec = make_codec(name, space, env_id=ENV_ID)
        digest = hashlib.sha256()
        for views in frames():
            for budget in BUDGETS:
                for split in SPLITS:
                    digest.update(codec.compress(views, budget, split).to_bytes() + b"|")
        out[name] = {"fingerprint": codec.fingerprint.hex(), "sha256": digest.hexdigest()}
    return out


if __name__ == "__main__":
    if "--write" not in sys.argv:
        sys.exit(__doc__)
    GOLDEN.write_text(json.dumps(wire_hashes(), indent=1) + "\n")
    print(f"wrote {GOLDEN}")
