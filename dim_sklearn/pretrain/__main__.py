"""``python -m dim_sklearn.pretrain INPUT... OUT [options]``: ``dim-sklearn pretrain`` as a module, for ``torchrun``.

    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m dim_sklearn.pretrain mp_crysxpp out/ --cache-dir /shared/cache --checkpoint-dir /shared/run
"""

import sys

from dim_sklearn.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["pretrain", *sys.argv[1:]]))
