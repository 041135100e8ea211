"""Make a transfer-sized copy of a collected split for the device machine (not a project tool):
frames area-pooled to the model size (what ContextVideoDataset does on load), only the T path
frames the loader uses, boxes at the model size, index frame_size = model size; plus the MiniLM
states of every instruction (valid tokens, fp16)."""
import json
import sys
from pathlib import Path

import numpy as np
import torch

from world_model.data import _pool, subsample_path

src, dst, size, T = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
n_shards = int(sys.argv[5]) if len(sys.argv) > 5 else None
dst.mkdir(parents=True, exist_ok=True)
index = json.loads((src / "index.json").read_text())
index["shards"] = index["shards"][:n_shards]
index["num_samples"] = sum(s["num_samples"] for s in index["shards"])
f = int(index["frame_size"]) // size
instr = set()
for sh in index["shards"]:
    with np.load(src / sh["file"]) as z:
        d = {k: z[k] for k in z.files if k != "bbox_rgb"}
    po = d["path_offsets"]
    keep = np.concatenate([po[j] + subsample_path(int(po[j + 1] - po[j]), T) for j in range(len(po) - 1)])
    d["path_rgb"], d["path_poses"] = d["path_rgb"][keep], d["path_poses"][keep]
    d["path_offsets"] = np.arange(len(po)) * T
    for k in ("tour_rgb", "agent_rgb", "path_rgb"):
        d[k] = _pool(d[k], f)
    d["box"] = (d["box"] // f).astype(d["box"].dtype)
    np.savez_compressed(dst / sh["file"], **d)
    instr |= set(map(str, d["instruction"]))
index["frame_size"] = size
index["slim_of"] = str(src)
(dst / "index.json").write_text(json.dumps(index, indent=1))

from world_model.text_encoder import load_text_encoder  # noqa: E402

te = load_text_encoder("minilm", max_length=32)
names = sorted(instr)
states = {}
for i in range(0, len(names), 256):
    chunk = names[i:i + 256]
    for s, e in zip(chunk, te.encode(chunk)):
        n = int((e.abs().sum(-1) > 0).sum())
        states[s] = e[:n].half().clone()
torch.save(states, dst / "text_states.pt")
print(len(names), "instructions")
