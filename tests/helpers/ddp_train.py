"""Run by `torchrun` from tests/test_trainer.py: train the toy task, save the parameters."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from tests.helpers.toy import ToyDims, ToyTask, ddp_comparison_config, toy_dataset  # noqa: E402
from training.trainer import Trainer  # noqa: E402

out_dir, batch_size = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(1)
task = ToyTask(ToyDims(dropout=0.0))
Trainer(task, ddp_comparison_config(out_dir, batch_size), toy_dataset()).fit()
