"""Which latent space keeps the 64x64 render: pixel space at 32/16 or the small autoencoder?

    python -m research.latent_spaces [autoencoder=runs/ae/autoencoder] data_dir=runs/ae/data/val
        [n=2000] [n_boxes=200] [threads=1] [out=FILE.json]

Reconstruction PSNR/SSIM of held-out frames through each latent space
(:func:`evaluate_latent_spaces`) and whether the bbox frames' red box survives it
(:func:`box_recall`). The autoencoder itself and its training are the library's
(``world_model.autoencoder``); measured: docs/experiments/2026-12-01-latent-space-autoencoder.md.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from world_model.autoencoder import FrameAutoencoder, FrameBank, to_tensor, to_uint8
from world_model.boxes import box_iou, find_box
from world_model.data import ContextVideoDataset
from world_model.metrics import psnr, ssim


@torch.no_grad()
def evaluate_latent_spaces(autoencoder: FrameAutoencoder | None, frames: np.ndarray,
                           pixel_sizes: tuple[int, ...] = (32, 16), batch: int = 256) -> list[dict[str, Any]]:
    """Reconstruction quality of each latent space on ``frames`` (N, S, S, 3) uint8, judged at S x S.

    Pixel space at size ``p``: area-downsample to p x p, then bicubic upsampling back (the best a
    p x p pixel model could show at S x S). The autoencoder: encode then decode. Each row has
    PSNR and SSIM (``world_model.metrics``), the latent shape and the tokens per frame at the
    patch that keeps 64 tokens for the 32x32 pixel model.
    """

    s = frames.shape[1]
    x = to_tensor(frames)
    rows = []
    for p in pixel_sizes:
        rec = []
        for i in range(0, len(x), batch):
            lo = F.interpolate(x[i:i + batch], size=(p, p), mode="area")
            rec.append(F.interpolate(lo, size=(s, s), mode="bicubic", align_corners=False))
        out = to_uint8(torch.cat(rec))
        rows.append({"latent": f"pixel {p}x{p}", "latent_shape": [3, p, p], "values_per_frame": 3 * p * p,
                     "tokens_per_frame": (p // 4) ** 2, "patch": [1, 4, 4],
                     "psnr": psnr(out, frames), "ssim": ssim(out, frames)})
    if autoencoder is not None:
        autoencoder.eval()
        t0 = time.perf_counter()
        z = torch.cat([autoencoder._norm(autoencoder.encode_raw(x[i:i + batch])) for i in range(0, len(x), batch)])
        t_enc = time.perf_counter() - t0
        t0 = time.perf_counter()
        rec = torch.cat([autoencoder.decode_raw(autoencoder._denorm(z[i:i + batch])) for i in range(0, len(z), batch)])
        t_dec = time.perf_counter() - t0
        out = to_uint8(rec)
        c, h, w = z.shape[1:]
        rows.append({"latent": f"autoencoder {c}x{h}x{w}", "latent_shape": [c, h, w], "values_per_frame": c * h * w,
                     "tokens_per_frame": (h // 2) * (w // 2), "patch": [1, 2, 2],
                     "psnr": psnr(out, frames), "ssim": ssim(out, frames),
                     "latent_std": float(z.std()), "encode_ms_per_frame": 1e3 * t_enc / len(x),
                     "decode_ms_per_frame": 1e3 * t_dec / len(x)})
    return rows


@torch.no_grad()
def box_recall(autoencoder: FrameAutoencoder | None, data_dir: str | os.PathLike, n: int = 200,
               pixel_sizes: tuple[int, ...] = (32,), min_iou: float = 0.5) -> list[dict[str, Any]]:
    """Does the red box of a bbox frame survive the latent space? (The world model's bbox frames
    carry the goal; a latent that blurs the 2 px outline away loses it.)

    For ``n`` held-out samples of ``data_dir`` the loader draws the bbox frame at each size, as the
    training data does. Pixel space at size p keeps that frame exactly; the autoencoder's frame is
    encoded and decoded first. A box counts as found when ``world_model.boxes.find_box`` returns one
    with IoU >= ``min_iou`` against the drawn box. Rows: ``found`` (fraction), ``iou`` (mean over found).
    """

    cases = [(f"pixel {p}x{p}", p, None) for p in pixel_sizes]
    if autoencoder is not None:
        c, s = autoencoder.config.latent_channels, int(autoencoder.config.frame_size)
        k = autoencoder.compression
        cases.append((f"autoencoder {c}x{s // k}x{s // k}", s, autoencoder.eval()))
    rows = []
    for name, size, ae in cases:
        ds = ContextVideoDataset(data_dir, num_context=1, num_target=1, num_bbox=1, frame_size=size, seed=0)
        idx = np.linspace(0, len(ds) - 1, min(n, len(ds))).astype(np.int64)
        items = [ds[int(i)] for i in idx]
        frames = np.stack([it["target"][-1] for it in items])
        if ae is not None:
            frames = to_uint8(ae.decode_raw(ae.encode_raw(to_tensor(frames))))
        ious = []
        for f, it in zip(frames, items):
            det = find_box(f)
            ious.append(0.0 if det is None else box_iou(det, it["box"]))
        ious = np.asarray(ious)
        ok = ious >= min_iou
        rows.append({"latent": name, "frame_size": size, "n": len(items), "found": float(ok.mean()),
                     "iou": float(ious[ok].mean()) if ok.any() else 0.0})
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    argv = sys.argv[1:] if argv is None else argv
    args = OmegaConf.to_container(OmegaConf.from_dotlist(list(argv)), resolve=True) or {}
    known = {"autoencoder", "data_dir", "n", "n_boxes", "out", "threads"}
    if set(args) - known:
        raise ValueError(f"unknown key(s) {sorted(set(args) - known)}; known: {sorted(known)}")
    if "data_dir" not in args:
        raise ValueError("research.latent_spaces needs data_dir=DIR (held-out frames, e.g. a collected val split)")
    torch.set_num_threads(int(args.get("threads", 1)))
    ae = None
    if args.get("autoencoder"):
        if not (Path(args["autoencoder"]) / "config.json").exists():
            raise FileNotFoundError(f"no autoencoder at {args['autoencoder']} (config.json missing): train one with "
                                    "`python -m world_model.autoencoder train ...`")
        ae = FrameAutoencoder.from_pretrained(args["autoencoder"])
    frames = FrameBank(args["data_dir"]).spread(int(args.get("n", 2000)))
    rows = evaluate_latent_spaces(ae, frames)
    boxes = {r["latent"]: r for r in box_recall(ae, args["data_dir"], n=int(args.get("n_boxes", 200)))}
    for r in rows:
        b = boxes.get(r["latent"])
        if b is not None:
            r["box_found"], r["box_iou"], r["box_n"] = b["found"], b["iou"], b["n"]
        box = f"  box found {r['box_found']:.3f} (IoU {r['box_iou']:.2f})" if b is not None else ""
        print(f"{r['latent']:>24}  tokens/frame {r['tokens_per_frame']:>3}  PSNR {r['psnr']:.2f} dB  "
              f"SSIM {r['ssim']:.3f}{box}")
    if args.get("out"):
        Path(args["out"]).parent.mkdir(parents=True, exist_ok=True)
        Path(args["out"]).write_text(json.dumps({"n": len(frames), "data_dir": args["data_dir"], "rows": rows},
                                                indent=1))
    return rows


if __name__ == "__main__":
    main()
