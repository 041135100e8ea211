"""Does the SSG prompt know *where* the instructed object is? CLIP relevance against the true masks.

    python -m research.ssg.localisation [ssg=DIR | clip=DIR] [data_dir=runs/wm/data/val] [n=200]
        [num_context=8] [top_m=8] [layers=[-3,-2,-1]] [seed=0] [threads=1] [out=FILE.json]

``ssg``: read the CLIP, the vision layers and the frame size from an SSG checkpoint; else
``clip`` (default: the shipped small CLIP) with the default prompter's layers; ``layers``
overrides either.

The SSG prompt is built from CLIP's text-to-patch relevance ``r[f, p]`` over the context's
cells (docs/ssg.md, step 1); with top-k pooling its M tokens *are* the M most relevant cells.
This measures, on held-out samples and with no training involved, how well ``r`` finds the
target. For every sample (the loader's seeded context draw, as ``research.ssg.heldout``),
the context frames are re-rendered at the collection's resolution with the renderer's
instance output, and each CLIP cell (``image_size / patch_size`` cells a side, mapped onto
the rendered frame) is labelled:

* target cell: at least ``min_cover`` of its pixels (default 1 pixel) show the target;
* distractor cell: ... show another instance of the target's category *and* colour (what a
  relation instruction must disambiguate), and no target pixel.

Per sample with the target visible in the context (``n_visible``):

* ``top_m_precision``: fraction of the M most relevant cells (the top-k prompt's cells) that
  are target cells; ``chance`` is the target cells' share of all cells;
* ``lift`` = top_m_precision / chance (1 = no localisation);
* ``auroc``: probability that a random target cell is more relevant than a random other cell;
* ``rank1_hit``: the most relevant cell is a target cell.

Per sample with both the target and a distractor visible: ``target_over_distractor``, whether
the target's most relevant cell beats the distractor's (0.5 = cannot tell them apart), and
``mean_margin``, the mean relevance of target cells minus that of distractor cells (in units
of the sample's relevance std).

``control`` repeats everything with every sample's instruction replaced by another sample's
(the same scene is not guaranteed): what the relevance finds *without* the instruction's
content is saliency, and the difference between the two rows is what the words add. Means come
with a 95% bootstrap interval over samples, for all samples and for those whose instruction
names a relation.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from research.heldout import heldout_items, relation_pattern
from world_model.metrics import bootstrap_ci
from world_model.ssg.oracle import OracleRelevance


def cell_labels(instance: np.ndarray, grid: int, target_id: int, distractor_ids, min_cover: int = 1):
    """(K, grid, grid) bool target cells and distractor cells of (K, H, W) instance masks.

    The frame is split into ``grid`` x ``grid`` equal blocks (H and W must be multiples of ``grid``),
    the layout of CLIP's patches after its resize. A distractor cell has no target pixel."""
    inst = np.asarray(instance)
    k, h, w = inst.shape
    if h % grid or w % grid:
        raise ValueError(f"instance masks {h}x{w} do not split into {grid}x{grid} cells")
    blocks = inst.reshape(k, grid, h // grid, grid, w // grid).transpose(0, 1, 3, 2, 4)
    tgt = (blocks == int(target_id)).sum(axis=(3, 4)) >= int(min_cover)
    dis = np.isin(blocks, np.asarray(list(distractor_ids), dtype=inst.dtype)).sum(axis=(3, 4)) >= int(min_cover)
    return tgt, dis & ~tgt


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties counted half; nan if a class is empty."""
    s, y = np.asarray(scores, np.float64).ravel(), np.asarray(positive, bool).ravel()
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


def sample_scores(rel: np.ndarray, tgt: np.ndarray, dis: np.ndarray, top_m: int) -> dict[str, float] | None:
    """Localisation scores of one sample's (K, g, g) relevance; None when the target is not visible."""
    r, t, d = rel.ravel(), tgt.ravel(), dis.ravel()
    if not t.any():
        return None
    top = np.argsort(-r, kind="stable")[:top_m]
    chance = float(t.mean())
    prec = float(t[top].mean())
    out = {"top_m_precision": prec, "chance": chance, "lift": prec / chance, "auroc": auroc(r, t),
           "rank1_hit": float(t[top[0]])}
    if d.any():
        sd = float(r.std()) or 1.0
        out["target_over_distractor"] = float(r[t].max() > r[d].max()) + 0.5 * float(r[t].max() == r[d].max())
        out["mean_margin"] = float((r[t].mean() - r[d].mean()) / sd)
    return out


def _aggregate(rows: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {"n_visible": len(rows)}
    for k in ("top_m_precision", "chance", "lift", "auroc", "rank1_hit", "target_over_distractor", "mean_margin"):
        v = np.array([r[k] for r in rows if k in r and np.isfinite(r[k])], np.float64)
        out[k] = float(v.mean()) if len(v) else float("nan")
        out[k + "_ci95"] = bootstrap_ci(v)
        if k == "target_over_distractor":
            out["n_with_distractor"] = int(len(v))
    return out


def distractors(scene, target_id: int) -> list[int]:
    """Ids of the other instances with the target's category and colour."""
    inst = {int(o.id): o for o in scene.instances}
    t = inst[int(target_id)]
    return [i for i, o in inst.items() if i != int(target_id) and o.category == t.category and o.color == t.color]


@torch.no_grad()
def localisation(prompter, data_dir: str, n: int = 200, num_context: int = 8, top_m: int = 8, seed: int = 0,
                 min_cover: int = 1, frame_size: int = 32) -> dict[str, Any]:
    """Score the prompter's CLIP relevance against rendered instance masks; see the module docstring.

    ``frame_size``: the context frames' size as the prompter sees them in ``imagine`` (the world
    model's, 32); the masks are rendered at the collection's size."""
    from envs.scenes import load_scene

    items = heldout_items(data_dir, n, num_context, 2, 0, int(frame_size), seed)  # the seeded context draws
    n = len(items)
    grid = int(prompter.clip.grid_size)
    masks = OracleRelevance(grid, ds_frame_size(data_dir), max_scenes=1)  # samples of a scene are stored together
    size = masks.size
    rel_re = relation_pattern()
    labels = []
    for it in items:
        inst = masks.instance_masks(it["scene_id"], it["context_poses"])
        labels.append(cell_labels(inst, grid, it["target_id"], distractors(load_scene(it["scene_id"]), it["target_id"]),
                                  min_cover))
    instr = [it["instruction"] for it in items]
    is_rel = np.array([bool(rel_re.search(s.lower())) for s in instr])
    shuffled = instr[1:] + instr[:1]  # each sample gets the next sample's instruction
    out: dict[str, Any] = {"n": n, "n_relation": int(is_rel.sum()), "grid": grid, "top_m": int(top_m),
                           "frame_size": int(frame_size), "mask_size": size,
                           "num_context": int(num_context), "min_cover": int(min_cover), "data_dir": str(data_dir)}
    for arm, texts in (("instruction", instr), ("control", shuffled)):
        rows, rel_rows = [], []
        for s in range(0, n, 16):
            batch = items[s:s + 16]
            frames = np.stack([it["context"] for it in batch])
            idx = torch.as_tensor(np.stack([it["context_indices"] for it in batch]))
            rel = prompter.prompt(frames, texts[s:s + 16], idx).relevance.float().cpu().numpy()
            for j, r in enumerate(rel):
                sc = sample_scores(r, *labels[s + j], top_m)
                if sc is not None:
                    rows.append(sc)
                    if is_rel[s + j]:
                        rel_rows.append(sc)
        out[arm] = {"all": _aggregate(rows), "relation": _aggregate(rel_rows)}
    return out


def ds_frame_size(data_dir: str) -> int:
    """The collection's frame size (the renderer's resolution for the masks)."""
    return int(json.loads((Path(data_dir) / "index.json").read_text())["frame_size"])


def _prompter(ssg: str | None, clip: str | None, layers=None):
    from world_model.ssg.checkpoint import DEFAULT_PROMPTER, build_prompter
    from world_model.ssg.clip import load_clip, resolve_clip

    kw, frame_size = dict(DEFAULT_PROMPTER), 32
    if ssg:
        cfg_path = Path(ssg) / "ssg_config.json"
        if not cfg_path.is_file():
            raise SystemExit(f"{ssg} is not an SSG checkpoint (no ssg_config.json)")
        cfg = json.loads(cfg_path.read_text())
        kw.update(cfg.get("prompter") or {})
        frame_size = int((cfg.get("frame_size") or [32])[0])
        if clip is None:
            own = Path(ssg) / "clip"
            clip = str(own) if own.is_dir() else cfg.get("clip")
    if layers is not None:
        kw["layers"] = [int(v) for v in layers]
    model = load_clip(resolve_clip(clip))
    # relevance does not depend on the trainable pooler: a fresh prompter with the checkpoint's layers suffices
    return build_prompter(model, 32, kw), clip, frame_size


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from omegaconf import OmegaConf

    args = {"ssg": None, "clip": None, "data_dir": "runs/wm/data/val", "n": 200, "num_context": 8, "top_m": 8,
            "layers": None, "seed": 0, "min_cover": 1, "threads": 1, "out": None}
    given = OmegaConf.to_container(OmegaConf.from_dotlist(list(sys.argv[1:] if argv is None else argv)))
    unknown = sorted(set(given) - set(args))
    if unknown:
        raise SystemExit(f"unknown option(s) {unknown}; known: {sorted(args)}")
    args.update(given)
    if not (Path(args["data_dir"]) / "index.json").is_file():
        raise SystemExit(f"no collected data in {args['data_dir']}: make some with "
                         f"`python -m world_model.collect split=val n=200 out_dir={args['data_dir']}`")
    torch.set_num_threads(int(args["threads"]))
    prompter, clip, frame_size = _prompter(args["ssg"], args["clip"], args["layers"])
    res = localisation(prompter, args["data_dir"], int(args["n"]), int(args["num_context"]), int(args["top_m"]),
                       int(args["seed"]), int(args["min_cover"]), frame_size)
    res.update(ssg=args["ssg"], clip=str(clip), layers=list(prompter.layers))
    if args["out"]:
        Path(args["out"]).parent.mkdir(parents=True, exist_ok=True)
        Path(args["out"]).write_text(json.dumps(res, indent=1) + "\n")
    for arm in ("instruction", "control"):
        for subset in ("all", "relation"):
            r = res[arm][subset]
            print(f"{arm:11s} {subset:8s} n={r['n_visible']:3d}  top-{res['top_m']} precision "
                  f"{r['top_m_precision']:.3f} (chance {r['chance']:.3f}, lift {r['lift']:.2f})  "
                  f"AUROC {r['auroc']:.3f}  rank-1 hit {r['rank1_hit']:.3f}  "
                  f"target>distractor {r['target_over_distractor']:.3f} (n={r['n_with_distractor']})  "
                  f"margin {r['mean_margin']:+.2f} sd")
    return res


if __name__ == "__main__":
    main()
