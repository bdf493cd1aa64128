"""Expert demonstrations on disk: :func:`collect_demos` writes them, :class:`DemoDataset` reads them.

A dataset is a folder with one losslessly compressed ``.npz`` per episode and a ``meta.json``::

    demos/
      meta.json               env id and kwargs, views, image shape, seeds, noise, lengths
      episode_00000.npz       arm (T,H,W,3) uint8, side (T,H,W,3) uint8, [proprio (T,P) float32],
      episode_00001.npz       actions (T,4) float32, executed_actions (T,4) float32,
      ...                     rewards (T,) float32, success () bool, seed () int64

Images are stored exactly as the env rendered them (``np.savez_compressed``, never JPEG): they
are what the codecs compress, so the dataset must not have compressed them already. Each episode
goes to disk as soon as it ends, so collecting N episodes holds one episode in memory, whatever
N is. Every file is written to a temporary name and renamed, so a killed collection never
leaves a half-written episode under a final name, and ``meta.json`` is written last: a folder
without it is an unfinished collection and :class:`DemoDataset` refuses it.

Typical use::

    path = collect_demos("data/lift_demos", episodes=200, noise_std=0.1)
    obs, actions, episode_index = DemoDataset(path).arrays()
    obs["arm"].shape          # (N, 84, 84, 3) uint8
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bwgym.agents.base import rollout
from bwgym.common.checkpoint import jsonable
from bwgym.common.files import atomic_write

__all__ = ["FORMAT", "DemoDataset", "DemoFormatError", "ExpertLabeller", "collect_demos"]

#: Format tag in ``meta.json``; bump it when the layout changes.
FORMAT = "bwgym.demos/1"
_META = "meta.json"


class DemoFormatError(ValueError):
    """A demonstration folder or file that is missing, truncated, corrupt or of another spec."""


def _episode_name(index: int) -> str:
    return f"episode_{index:05d}.npz"


def collect_demos(
    out_dir: str | os.PathLike[str],
    env_id: str = "bwgym/LocateLift-v0",
    episodes: int = 200,
    noise_std: float = 0.1,
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
    only_successful: bool = True,
    overwrite: bool = False,
    max_attempts: int | None = None,
    progress: bool = True,
) -> Path:
    """Run the scripted expert and stream its episodes into ``out_dir``.

    **Action noise and labels.** As in the NDPCA paper (Sec. 5), the actions executed in the env
    are the expert's plus N(0, ``noise_std``) noise (then clipped to [-1, 1]); the label recorded
    for each state (``actions``) is the expert's *noise-free* action for that state. The noise
    makes the demonstrations visit states slightly off the expert's path, and the clean labels
    teach the policy how to come back to it instead of imitating the noise (the usual choice for
    behaviour cloning with noise injection, cf. DART). The noisy executed actions are kept as
    ``executed_actions``.

    **Seeds.** Attempt ``i`` resets the env with ``seed + i``; its noise comes from
    ``np.random.default_rng([seed + i, 1])``, so every episode is reproducible on its own.
    With ``only_successful`` a failed attempt is dropped and another one is run, until
    ``episodes`` successful ones are stored (``meta.json`` lists the seeds kept).

    Args:
        out_dir: folder to write (created). It must not already hold a dataset unless ``overwrite``.
        env_id: a registered bwgym env id with a scripted expert (LocateLift).
        episodes: number of episodes to store.
        noise_std: standard deviation of the Gaussian action noise (0 for none).
        seed: first env seed.
        env_kwargs: keyword arguments for ``gymnasium.make`` (e.g. ``image_size``, ``cameras``).
        only_successful: store successful episodes only.
        overwrite: replace an existing dataset in ``out_dir``.
        max_attempts: give up after this many attempts (default ``2 * episodes + 10``).
        progress: show a tqdm progress bar.

    Returns:
        The dataset folder.

    Raises:
        ValueError: bad arguments, or an env whose observations are not a Dict of views.
        FileExistsError: ``out_dir`` already holds a dataset and ``overwrite`` is False.
        RuntimeError: fewer than ``episodes`` successful episodes within ``max_attempts``.

    """
    import gymnasium as gym

    if int(episodes) < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if not (np.isfinite(noise_std) and noise_std >= 0):
        raise ValueError(f"noise_std must be finite and >= 0, got {noise_std}")
    episodes = int(episodes)
    max_attempts = 2 * episodes + 10 if max_attempts is None else int(max_attempts)
    out = _emptied_folder(Path(out_dir), overwrite)
    env_kwargs = dict(env_kwargs or {})
    env = gym.make(env_id, **env_kwargs)
    try:
        layout = _observation_layout(env, env_id)
        kept = _stream_episodes(
            env,
            out,
            layout[0] + layout[1],
            episodes,
            noise_std,
            seed,
            only_successful,
            max_attempts,
            progress,
        )
    finally:
        env.close()
    meta = _dataset_meta(env, env_id, env_kwargs, layout, kept, noise_std, only_successful)
    atomic_write(out / _META, lambda f: f.write(json.dumps(meta, indent=1).encode()))
    return out


def _dataset_meta(
    env: Any,
    env_id: str,
    env_kwargs: Mapping[str, Any],
    layout: tuple[list[str], list[str], list[int]],
    kept: Mapping[str, Any],
    noise_std: float,
    only_successful: bool,
) -> dict[str, Any]:
    """``meta.json``: the env and its views, the episodes kept and how, the bwgym version."""
    import bwgym

    view_names, extra_names, image_shape = layout
    return {
        "format": FORMAT,
        "env_id": env_id,
        "env_kwargs": jsonable(env_kwargs),
        "view_names": view_names,
        "extra_names": extra_names,
        "image_shape": image_shape,
        "action_shape": list(env.action_space.shape),
        "episodes": len(kept["seeds"]),
        **kept,
        "noise_std": float(noise_std),
        "only_successful": bool(only_successful),
        "labels": "noise-free expert action per state; executed_actions include the noise",
        "bwgym_version": bwgym.__version__,
    }


def _emptied_folder(out: Path, overwrite: bool) -> Path:
    """``out``, created; a dataset already there is removed with ``overwrite``, else refused."""
    out.mkdir(parents=True, exist_ok=True)
    if (out / _META).exists() or any(out.glob("episode_*.npz")):
        if not overwrite:
            raise FileExistsError(
                f"{out} already holds a demonstration dataset; pass overwrite=True or choose another folder"
            )
        for old in [out / _META, *out.glob("episode_*.npz")]:
            old.unlink()
    return out


def _observation_layout(env: Any, env_id: str) -> tuple[list[str], list[str], list[int]]:
    """The env's image views, its other observation keys, and the image shape."""
    import gymnasium as gym

    space = env.observation_space
    if not isinstance(space, gym.spaces.Dict):
        raise ValueError(f"{env_id} observations must be a Dict of views, got {space}")
    view_names = [k for k, s in space.spaces.items() if len(s.shape) == 3]
    extra_names = [k for k in space.spaces if k not in view_names]
    return view_names, extra_names, list(space.spaces[view_names[0]].shape)


def _stream_episodes(
    env: Any,
    out: Path,
    keys: Sequence[str],
    episodes: int,
    noise_std: float,
    seed: int,
    only_successful: bool,
    max_attempts: int,
    progress: bool,
) -> dict[str, Any]:
    """Run attempts until ``episodes`` are kept, each written as it ends; ``meta.json``'s counts of them."""
    from tqdm import tqdm

    from bwgym.agents.expert import LiftExpert

    expert = LiftExpert(env, noise_std=0.0)  # noise added here, so the clean label is known
    seeds: list[int] = []
    lengths: list[int] = []
    successes = attempts = 0
    bar = tqdm(total=episodes, desc="collecting demos", unit="ep", disable=not progress)
    while len(seeds) < episodes:
        if attempts >= max_attempts:
            raise RuntimeError(
                f"only {len(seeds)} of {episodes} successful episodes after {attempts} attempts "
                f"(noise_std={noise_std}); lower the noise or pass only_successful=False"
            )
        episode_seed = seed + attempts
        attempts += 1
        record = _run_episode(env, expert, episode_seed, noise_std, keys)
        successes += int(record["success"])
        if only_successful and not record["success"]:
            continue
        target = out / _episode_name(len(seeds))
        atomic_write(target, lambda f, r=record: np.savez_compressed(f, **r))
        seeds.append(episode_seed)
        lengths.append(int(record["actions"].shape[0]))
        bar.update(1)
        bar.set_postfix(success=f"{successes}/{attempts}", refresh=False)
    bar.close()
    return {
        "seeds": seeds,
        "lengths": lengths,
        "attempts": attempts,
        "expert_success_rate": successes / attempts,
    }


class ExpertLabeller:
    """An :class:`~bwgym.agents.base.Agent` that has the scripted expert label every state it acts on.

    Per step it keeps the observation (``frames``), the expert's noise-free action (``labels``) and
    the action executed (``executed``): the ``policy``'s when one is given (DAgger: the learner
    drives, the expert labels), else the label plus N(0, ``noise_std``) noise clipped to [-1, 1]
    (demonstrations). The noise of episode ``seed`` comes from ``np.random.default_rng([seed, 1])``.
    The lists grow over every episode played; the expert is called exactly once per step, since
    its grasp counter follows the trajectory.

    Args:
        expert: a :class:`~bwgym.agents.expert.LiftExpert` without noise of its own.
        keys: observation keys to keep.
        noise_std: action noise when there is no ``policy``.
        policy: the agent that drives the env, or None for the expert.
    """

    def __init__(self, expert: Any, keys: Sequence[str], noise_std: float = 0.0, policy: Any = None) -> None:
        self.expert, self.keys, self.noise_std, self.policy = expert, list(keys), noise_std, policy
        self.frames: dict[str, list[np.ndarray]] = {k: [] for k in self.keys}
        self.labels: list[np.ndarray] = []
        self.executed: list[np.ndarray] = []
        self.rng = np.random.default_rng()

    def reset(self, seed: int | None = None) -> None:
        """Start an episode: reset the expert (and the policy), seed the noise."""
        self.expert.reset()
        if self.policy is not None:
            self.policy.reset(seed)
        self.rng = np.random.default_rng(None if seed is None else [seed, 1])

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Record ``obs`` and the expert's label; return the executed action."""
        for k in self.keys:
            self.frames[k].append(obs[k])
        label = action = self.expert.act(obs)
        if self.policy is not None:
            action = self.policy.act(obs)
        elif self.noise_std:
            noise = self.rng.normal(0.0, self.noise_std, size=label.shape)
            action = np.clip(label + noise, -1.0, 1.0).astype(np.float32)
        self.labels.append(label)
        self.executed.append(action)
        return action


def _run_episode(
    env: Any, expert: Any, seed: int, noise_std: float, keys: Sequence[str]
) -> dict[str, np.ndarray]:
    """One expert episode: observations before each action, clean labels, executed actions."""
    agent = ExpertLabeller(expert, keys, noise_std)
    rewards: list[float] = []  # step 0 is the reset (reward 0), dropped below
    result = rollout(env, agent, seed, on_step=lambda _t, _o, _a, reward, _i: rewards.append(reward))
    record = {k: np.stack(v) for k, v in agent.frames.items()}
    record.update(
        actions=np.asarray(agent.labels, dtype=np.float32),
        executed_actions=np.asarray(agent.executed, dtype=np.float32),
        rewards=np.asarray(rewards[1:], dtype=np.float32),
        success=np.asarray(result.success),
        seed=np.asarray(seed, dtype=np.int64),
    )
    return record


def spec_text(env_id: Any, views: Any, image_shape: Any) -> str:
    """``env_id=..., views=[...], image_shape=[...]``: a spec as error messages show it."""
    return f"env_id={env_id!r}, views={list(views) if views is not None else None}, image_shape={image_shape}"


class DemoDataset:
    """A demonstration folder written by :func:`collect_demos`, read lazily episode by episode.

    Opening it reads only ``meta.json``; episodes are decompressed when asked for. Optional
    expectations (``env_id``, ``views``, ``image_shape``) are checked against the metadata, so a
    dataset of another env or camera setup fails here with a clear message instead of later
    with a shape error.

    Args:
        path: the dataset folder (or its ``meta.json``).
        env_id: expected env id, or None to accept any.
        views: expected view names (order matters: it is the agent's input order), or None.
        image_shape: expected (H, W) or (H, W, 3), or None.

    Raises:
        DemoFormatError: (a ``ValueError``) no dataset there, an unreadable ``meta.json``, a
            missing episode file, or metadata that does not match the expectations.

    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        env_id: str | None = None,
        views: Sequence[str] | None = None,
        image_shape: Sequence[int] | None = None,
    ) -> None:
        path = Path(path)
        self.path = path.parent if path.name == _META else path
        meta_path = self.path / _META
        if not meta_path.is_file():
            hint = (
                " (it holds episode files: the collection did not finish)"
                if any(self.path.glob("episode_*.npz"))
                else ""
            )
            raise DemoFormatError(
                f"{meta_path} not found: {self.path} is not a finished demonstration "
                f"dataset{hint}; write one with `bwgym collect`"
            )
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DemoFormatError(
                f"{meta_path} is not valid JSON ({err}); collect the dataset again"
            ) from err
        required = ("format", "env_id", "view_names", "image_shape", "action_shape", "seeds", "lengths")
        missing = [k for k in required if k not in meta] if isinstance(meta, dict) else list(required)
        if missing:
            raise DemoFormatError(f"{meta_path} lacks {missing}: not a bwgym demonstration dataset")
        if meta["format"] != FORMAT:
            raise DemoFormatError(f"{meta_path} has format {meta['format']!r}, this bwgym reads {FORMAT!r}")
        if len(meta["seeds"]) != len(meta["lengths"]):
            raise DemoFormatError(
                f"{meta_path} lists {len(meta['seeds'])} seeds but {len(meta['lengths'])} lengths"
            )
        self.meta: dict[str, Any] = meta

        want_shape = None if image_shape is None else tuple(int(v) for v in image_shape)
        have_shape = tuple(self.image_shape)
        mismatch = (
            (env_id is not None and env_id != self.env_id)
            or (views is not None and list(views) != self.view_names)
            or (want_shape is not None and want_shape != have_shape[: len(want_shape)])
        )
        if mismatch:
            raise DemoFormatError(
                f"{meta_path} does not match: the dataset has "
                f"{spec_text(self.env_id, self.view_names, list(have_shape))}, expected "
                f"{spec_text(env_id, views, None if want_shape is None else list(want_shape))}"
            )
        for i in range(self.n_episodes):
            if not self.episode_path(i).is_file():
                raise DemoFormatError(
                    f"{self.episode_path(i)} is missing ({meta_path} lists {self.n_episodes} episodes)"
                )

    # ------------------------------------------------------------------ metadata
    @property
    def env_id(self) -> str:
        """The env id the demonstrations come from."""
        return str(self.meta["env_id"])

    @property
    def env_kwargs(self) -> dict[str, Any]:
        """The keyword arguments the env was made with."""
        return dict(self.meta.get("env_kwargs", {}))

    @property
    def view_names(self) -> list[str]:
        """Image views, in the env's order."""
        return list(self.meta["view_names"])

    @property
    def extra_names(self) -> list[str]:
        """Non-image observation keys stored too (e.g. ``proprio``)."""
        return list(self.meta.get("extra_names", []))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, 3) of every view."""
        h, w, c = self.meta["image_shape"]
        return int(h), int(w), int(c)

    @property
    def n_episodes(self) -> int:
        """Number of stored episodes."""
        return len(self.meta["lengths"])

    @property
    def n_steps(self) -> int:
        """Number of (observation, action) pairs over all episodes."""
        return int(sum(self.meta["lengths"]))

    @property
    def seeds(self) -> list[int]:
        """Env reset seed of each stored episode."""
        return [int(s) for s in self.meta["seeds"]]

    def __len__(self) -> int:
        return self.n_episodes

    def __repr__(self) -> str:
        return (
            f"DemoDataset({str(self.path)!r}: {self.n_episodes} episodes, {self.n_steps} steps, "
            f"{spec_text(self.env_id, self.view_names, list(self.image_shape))})"
        )

    # ------------------------------------------------------------------ data
    def episode_path(self, index: int) -> Path:
        """File of episode ``index``."""
        return self.path / _episode_name(index)

    def episode(self, index: int) -> dict[str, np.ndarray]:
        """Every array of one episode (views, extras, actions, executed_actions, rewards, success, seed).

        Raises:
            IndexError: ``index`` out of range.
            DemoFormatError: the file is truncated, corrupt or does not match ``meta.json``.

        """
        if not 0 <= index < self.n_episodes:
            raise IndexError(f"episode {index} out of range: {self.path} has {self.n_episodes} episodes")
        file = self.episode_path(index)
        try:
            with np.load(file, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
            raise DemoFormatError(
                f"{file} is truncated or corrupt ({type(err).__name__}: {err}); "
                "delete the dataset and collect it again"
            ) from err
        length = int(self.meta["lengths"][index])
        expected = {v: (length, *self.image_shape) for v in self.view_names}
        expected["actions"] = (length, *self.meta["action_shape"])
        for key, shape in expected.items():
            got = arrays.get(key)
            if got is None or got.shape != shape:
                raise DemoFormatError(
                    f"{file}: {key!r} has shape {None if got is None else got.shape}, "
                    f"{self.path / _META} says {shape}"
                )
        for key in self.view_names:
            if arrays[key].dtype != np.uint8:
                raise DemoFormatError(f"{file}: view {key!r} is {arrays[key].dtype}, expected uint8")
        return arrays

    def iter_episodes(self, episodes: Sequence[int] | None = None) -> Iterator[dict[str, np.ndarray]]:
        """Yield :meth:`episode` for each index (all by default), one in memory at a time."""
        for i in range(self.n_episodes) if episodes is None else episodes:
            yield self.episode(int(i))

    def arrays(
        self, episodes: Sequence[int] | None = None, progress: bool = False
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """All steps of the chosen episodes, concatenated.

        Args:
            episodes: episode indices (all by default).
            progress: show a tqdm progress bar while decompressing.

        Returns:
            ``(obs, actions, episode_index)``: ``obs`` maps each view to ``uint8 (N, H, W, 3)``
            (and each extra key such as ``proprio`` to ``float32 (N, P)``), ``actions`` is the
            noise-free expert label ``float32 (N, 4)``, ``episode_index`` is ``int64 (N,)``.

        """
        from tqdm import tqdm

        ids = list(range(self.n_episodes)) if episodes is None else [int(i) for i in episodes]
        lengths = [int(self.meta["lengths"][i]) if 0 <= i < self.n_episodes else 0 for i in ids]
        n = sum(lengths)
        keys = self.view_names + self.extra_names
        # Preallocated, filled episode by episode: peak memory is the result plus one episode.
        obs: dict[str, np.ndarray] = {v: np.empty((n, *self.image_shape), np.uint8) for v in self.view_names}
        actions = np.empty((n, *self.meta["action_shape"]), np.float32)
        episode_index = np.empty(n, np.int64)
        start = 0
        for i, length in tqdm(
            list(zip(ids, lengths, strict=True)), desc="loading demos", unit="ep", disable=not progress
        ):
            data = self.episode(i)
            for key in keys:
                if key not in obs:
                    obs[key] = np.empty((n, *data[key].shape[1:]), data[key].dtype)
                obs[key][start : start + length] = data[key]
            actions[start : start + length] = data["actions"]
            episode_index[start : start + length] = i
            start += length
        return obs, actions, episode_index

    def split(self, val_fraction: float = 0.1, seed: int = 0) -> tuple[list[int], list[int]]:
        """Split the episodes (not the steps) into train and validation sets.

        Steps of one episode are strongly correlated, so validating on held-out *episodes* is what
        measures generalisation to a new brick position.

        Args:
            val_fraction: share of episodes held out, in [0, 1); at least one episode when > 0
                and the dataset has two or more.
            seed: seed of the shuffle.

        Returns:
            ``(train_episode_ids, val_episode_ids)``, each sorted.

        """
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        order = np.random.default_rng(seed).permutation(self.n_episodes)
        n_val = int(round(val_fraction * self.n_episodes))
        if val_fraction > 0 and self.n_episodes >= 2:
            n_val = min(max(n_val, 1), self.n_episodes - 1)
        return sorted(int(i) for i in order[n_val:]), sorted(int(i) for i in order[:n_val])
