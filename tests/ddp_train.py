"""Run train.py's main() with a callback that saves each rank's final weights and first batch to $XQ_DUMP_DIR.

Used by tests/test_training.py::test_ddp_ranks_end_identical. Lightning's DDP launcher starts the other rank by
running this same script again, so the callback exists in every rank."""

import hashlib
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from lightning.pytorch import Callback  # noqa: E402

from xiangqi_gpt.model.training import main  # noqa: E402


class DumpRank(Callback):
    def __init__(self, out: str):
        self.out = Path(out)
        self.first_batch = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.first_batch is None:
            self.first_batch = hashlib.sha256(batch.cpu().numpy().tobytes()).hexdigest()

    def on_train_end(self, trainer, pl_module):
        state = {k: v.detach().cpu().clone() for k, v in pl_module.model.state_dict().items()}
        torch.save({"state_dict": state, "first_batch": self.first_batch, "world_size": trainer.world_size,
                    "global_step": trainer.global_step}, self.out / f"rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], extra_callbacks=[DumpRank(os.environ["XQ_DUMP_DIR"])]))
