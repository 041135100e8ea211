"""``accelerate launch tests/ddp_train_rank_dump.py key=value ...``: ``world_model.train.main`` as the
command line runs it, then each rank saves the weights it trained to ``<out_dir>/rank<i>.safetensors``
(tests/test_wm_gpu_recipe.py compares the ranks)."""
import os

from safetensors.torch import save_file

from world_model.train import main

summary = main()
state = {k: v.detach().cpu().contiguous() for k, v in summary["model"].state_dict().items()}
save_file(state, os.path.join(summary["out_dir"], f"rank{os.environ.get('RANK', '0')}.safetensors"))
