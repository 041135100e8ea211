"""Make a transfer-sized copy of a collected split for the device machine (not a project tool):
frames area-pooled to the model size (what ContextVideoDataset does on load), only the T path
frames the loader uses, boxes at the model size, index frame_size = model size; plus the MiniLM
states of every instruction (valid tokens, fp16: ``world_model.text_encoder.save_text_states``,
read by ``TrainConfig.text_states``). Items read from the copy equal the original's
(tests/test_wm_gpu_recipe.py).

    python scripts/device/slim_data.py SRC DST SIZE T [N_SHARDS]
"""
import json
import sys
from pathlib import Path

import numpy as np


def slim_split(src, dst, size: int = 32, num_target: int = 4, n_shards: int | None = None) -> list[str]:
    """Write the copy of ``src``'s first ``n_shards`` shards (all: None) to ``dst``; returns their instructions."""
    from world_model.data import subsample_path
    from world_model.frames import area_resize

    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    index = json.loads((src / "index.json").read_text())
    index["shards"] = index["shards"][:n_shards]
    index["num_samples"] = sum(s["num_samples"] for s in index["shards"])
    f = int(index["frame_size"]) // int(size)
    if f < 1 or f * int(size) != int(index["frame_size"]):
        raise ValueError(f"size {size} must divide the collected frame size {index['frame_size']}")
    instr: list[str] = []
    for sh in index["shards"]:
        with np.load(src / sh["file"]) as z:
            d = {k: z[k] for k in z.files if k != "bbox_rgb"}
        po = d["path_offsets"]
        keep = np.concatenate([po[j] + subsample_path(int(po[j + 1] - po[j]), num_target) for j in range(len(po) - 1)])
        d["path_rgb"], d["path_poses"] = d["path_rgb"][keep], d["path_poses"][keep]
        d["path_offsets"] = np.arange(len(po)) * int(num_target)
        for k in ("tour_rgb", "agent_rgb", "path_rgb"):
            d[k] = area_resize(d[k], int(size))
        d["box"] = (d["box"] // f).astype(d["box"].dtype)
        np.savez_compressed(dst / sh["file"], **d)
        instr += list(map(str, d["instruction"]))
    index["frame_size"] = int(size)
    index["slim_of"] = str(src)
    (dst / "index.json").write_text(json.dumps(index, indent=1))
    return instr


def write_text_states(dst, instructions, max_length: int = 32, encoder=None) -> int:
    """``dst/text_states.pt``: the MiniLM states of every distinct instruction; returns how many."""
    from world_model.text_encoder import load_text_encoder, save_text_states

    encoder = encoder or load_text_encoder("minilm", max_length=max_length)
    return save_text_states(Path(dst) / "text_states.pt", instructions, encoder, encoder_name="minilm")


if __name__ == "__main__":
    src, dst, size, T = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    n = int(sys.argv[5]) if len(sys.argv) > 5 else None
    names = slim_split(src, dst, size, T, n)
    print(write_text_states(dst, names), "instructions,", len(names), "samples")
