"""What made an evaluation's numbers: the run's fingerprint (``run.json``) and its provenance.

``run_fingerprint`` records everything that decides the numbers: the agent and its full
settings, seed, split, env settings, the episode set, the hashes of the learned weights the agent
acts with and the version of the code. A rerun into the same out_dir must match it
(``check_resume``; ``fingerprint_diff`` names each difference), so a resume never mixes episodes
of two configurations. ``provenance`` adds the git commit and the command to a summary.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Any

from agent.episode_log import EPISODES_FILE, RUN_FILE, write_json_atomic

REPO_ROOT = Path(__file__).resolve().parents[1]
CODE_PACKAGES = ("agent", "envs", "planners", "world_model")


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """sha1 (12 hex) of the project's Python source (agent, envs, planners, world_model): two runs
    with the same value ran the same code, whatever was committed in between (docs, tests).
    Hashed once per process, when it first asks: the code it runs is the code it loaded."""
    h = hashlib.sha1()
    for pkg in CODE_PACKAGES:
        for f in sorted((REPO_ROOT / pkg).rglob("*.py")):
            h.update(str(f.relative_to(REPO_ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def git_state() -> dict:
    """The checkout's commit and whether tracked files differ from it (None where git is missing)."""
    import subprocess

    def git(*args):
        try:
            r = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": None if dirty is None else bool(dirty)}


def module_fingerprint(module) -> str:
    """sha1 (12 hex) of a torch module's parameters and buffers (names, shapes, dtypes, bytes)."""
    import torch

    h = hashlib.sha1()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update((t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes())
    return h.hexdigest()[:12]


def _clip_of(agent):
    """The CLIP an agent scores views with: its own, or its value map's (the world-model agent's
    ``value_map``, Frontier+CLIP's; a guide that holds the value map)."""
    for holder in (agent, getattr(agent, "value_map", None), getattr(agent, "guide", None),
                   getattr(getattr(agent, "guide", None), "value_map", None)):
        clip = getattr(holder, "clip", None) if holder is not None else None
        if clip is not None:
            return clip
    return None


def agent_weights(agent) -> dict[str, str]:
    """Hashes of the learned weights an agent acts with: world model (with any SSG adapter installed
    in it), SSG prompter, instruction encoder, CLIP (its own or its value map's), goal check and
    inverse dynamics."""
    import torch

    found = {}
    pipe = getattr(agent, "pipeline", None)
    candidates = {
        "world_model": getattr(pipe, "model", None),
        "ssg_prompter": getattr(pipe, "ssg_prompter", None),
        "text_encoder": getattr(pipe, "_text_encoder", None),
        "clip": _clip_of(agent),
        "goal_check": getattr(agent, "goal_check", None),
        "inverse_dynamics": getattr(agent, "inverse_dynamics", None),
    }
    for k, m in candidates.items():
        m = getattr(m, "model", m) if m is not None and not isinstance(m, torch.nn.Module) else m
        if isinstance(m, torch.nn.Module):
            found[k] = module_fingerprint(m)
    return found


def _jsonable(v):
    """A JSON-friendly copy of a setting: containers recursively, other objects by their type name."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    return f"<{type(v).__name__}>"


def agent_settings(factory, agent_kwargs: dict | None) -> dict:
    """The agent's full settings: its constructor's defaults overridden by ``agent_kwargs``."""
    out: dict[str, Any] = {}
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    for name, p in params.items():
        if name in ("env", "seed", "self") or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        if p.default is not p.empty:
            out[name] = p.default
    out.update(agent_kwargs or {})
    return _jsonable(out)


def episode_source(episodes, split: str, episode_seed: int) -> dict:
    """What the episodes come from: a file (with its sha1), a list (sha1 of its content), or the
    procedural generator for ``split`` with ``episode_seed`` (reproducible for one code version)."""
    if episodes is None:
        return {"generated": str(split), "episode_seed": int(episode_seed)}
    if isinstance(episodes, (str, os.PathLike)):
        p = Path(episodes)
        return {"file": str(p), "sha1": hashlib.sha1(p.read_bytes()).hexdigest()[:12] if p.is_file() else None}
    items = [e.to_habitat() if hasattr(e, "to_habitat") else e for e in episodes]
    return {"list": len(items), "sha1": hashlib.sha1(json.dumps(_jsonable(items), sort_keys=True).encode()).hexdigest()[:12]}


ENV_SETTINGS = ("width", "height", "hfov_deg", "max_depth", "backend", "max_episode_steps", "success_distance",
                "episode_seed", "paraphrase", "paraphrase_seed", "instructions")


def run_fingerprint(agent_name: str, factory, agent_kwargs: dict | None, seed: int, split: str, episodes,
                    env, bot) -> dict:
    """Everything that decides an evaluation's numbers (``RUN_FILE``): a resume must match it."""
    sim = env.unwrapped
    return {
        "agent": agent_name,
        "agent_settings": agent_settings(factory, agent_kwargs),
        "seed": int(seed),
        "split": str(split),
        "env": {"class": type(sim).__name__, **{k: _jsonable(getattr(sim, k)) for k in ENV_SETTINGS if hasattr(sim, k)}},
        "episodes": episode_source(episodes, split, getattr(sim, "episode_seed", 0)),
        "weights": agent_weights(bot),
        "code_version": code_version(),
    }


def fingerprint_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``key: old -> new`` for every setting that differs (nested keys dotted)."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, "<unset>"), new.get(k, "<unset>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += fingerprint_diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


def check_resume(out: Path, fingerprint: dict, n_done: int) -> None:
    """Refuse to add episodes to an out_dir whose finished episodes came from another configuration
    (``fingerprint_diff`` names each difference); record the fingerprint in a fresh out_dir."""
    path = out / RUN_FILE
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e}); delete it together with {EPISODES_FILE} "
                             "or use another out_dir") from None
        diff = fingerprint_diff(old if isinstance(old, dict) else {}, fingerprint)
        if diff and n_done:
            raise ValueError(f"{out} holds {n_done} episode(s) of another configuration: " + "; ".join(diff)
                             + ". Use another out_dir (or delete that one) to evaluate this configuration")
        if not diff:
            return
    elif n_done:
        raise ValueError(f"{out} holds {n_done} episode(s) but no {RUN_FILE} saying which configuration made them "
                         "(written before runs were fingerprinted); use another out_dir or delete that one")
    write_json_atomic(path, fingerprint)


def provenance(fingerprint: dict | None = None, git: dict | None = None) -> dict:
    """Where a summary's numbers come from: git commit (and uncommitted changes), the code version,
    the weights' hashes and the command that ran. ``git``: the checkout's state when the run started
    (``git_state()`` then); the code version is the fingerprint's, taken when the agent was built. Both
    are read at the start because a long run may outlive a commit: read when the summary is written
    they would name code that did not run."""
    import sys

    out = dict(git) if git is not None else git_state()
    out["code_version"] = (fingerprint or {}).get("code_version") or code_version()
    out["command"] = " ".join([Path(sys.argv[0]).name] + sys.argv[1:]) if sys.argv else ""
    if fingerprint is not None:
        out["weights"] = fingerprint.get("weights", {})
    return out
