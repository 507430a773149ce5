"""One rank of a data-parallel pretraining run on 80 real structures, for tests/pretrain/test_distributed.py.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/pretrain/ddp_worker.py \
        RESULT SETTINGS_JSON [CHECKPOINT_DIR [DIE_AFTER_EPOCH]]

SETTINGS_JSON holds the PretrainSettings. Rank 0 writes the history and the final weights to RESULT (torch.save).
With DIE_AFTER_EPOCH, rank 1 exits abruptly once that epoch's checkpoint is written, as a killed process would.
"""

import json
import os
import sys

import torch

from dim_sklearn import build_point_sets, load_dataset
from dim_sklearn.nn import DeepInfoMax, SiteNetEncoder
from dim_sklearn.pretrain import PretrainCallback, PretrainSettings, pretrain
from dim_sklearn.pretrain.distributed import init_from_env, rank_and_world


class DieAfterEpoch(PretrainCallback):
    """Exit abruptly, as a killed process would, once epoch ``epoch`` is saved."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, model, history):
        if len(history) == self.epoch:
            os._exit(1)


result, settings = sys.argv[1], PretrainSettings(**json.loads(sys.argv[2]))
checkpoint_dir = sys.argv[3] if len(sys.argv) > 3 else None
die_after = int(sys.argv[4]) if len(sys.argv) > 4 else None

device = init_from_env()
rank, world = rank_and_world()
point_sets = build_point_sets(load_dataset("mp_cs419")[0][:80])
torch.manual_seed(0)
model = DeepInfoMax(SiteNetEncoder())
callbacks = [DieAfterEpoch(die_after)] if die_after is not None and rank == 1 else []

history, best_epoch = pretrain(
    model, point_sets, settings, random_state=0, device=device, checkpoint_dir=checkpoint_dir, callbacks=callbacks
)
if rank == 0:
    torch.save({"world": world, "history": history, "best_epoch": best_epoch, "weights": model.state_dict()}, result)
