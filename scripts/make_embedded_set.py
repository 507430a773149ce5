"""Build the embedded data set ``dim_sklearn/data/mp_crysxpp_2k.json.gz`` from ``mp_crysxpp.json.gz``.

2,000 structures drawn with a fixed seed from the 20% test split of mp_crysxpp
(``train_test_split(arange(36737), test_size=0.2, random_state=0)[1]``, the split
the label-masking study and the demo use), in source order. Rows are copied
unchanged from the source file (no rounding: the structure dicts, formulas and
energies are the source's JSON values); a column ``mp_crysxpp_row`` holds each
row's position in mp_crysxpp. Written with gzip mtime 0, so the same source gives
the same bytes.

    python scripts/make_embedded_set.py /path/to/data    # the folder holding mp_crysxpp.json.gz
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

SOURCE = "mp_crysxpp.json.gz"
SOURCE_ROWS = 36737
SIZE = 2000
COLUMNS = ["material_id", "formula", "structure", "formation_energy_per_atom"]
OUT = Path(__file__).resolve().parents[1] / "dim_sklearn" / "data" / "mp_crysxpp_2k.json.gz"


def embedded_rows(n_rows: int = SOURCE_ROWS, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """Sorted positions of the embedded structures in mp_crysxpp: a seeded draw from its test split."""
    test = train_test_split(np.arange(n_rows), test_size=0.2, random_state=0)[1]
    return np.sort(np.random.default_rng(seed).choice(test, size, replace=False))


def build(data_home: Path, out: Path = OUT) -> str:
    """Write the embedded set to ``out`` and return its sha256."""
    with gzip.open(data_home / SOURCE, "rt") as f:
        source = json.load(f)  # pandas orient="split": index, columns, data
    if source["columns"] != COLUMNS or len(source["data"]) != SOURCE_ROWS:
        raise SystemExit(f"{data_home / SOURCE}: expected {SOURCE_ROWS} rows of {COLUMNS}")
    rows = embedded_rows()
    frame = {
        "index": [source["index"][i] for i in rows],
        "columns": [*COLUMNS, "mp_crysxpp_row"],
        "data": [[*source["data"][i], int(i)] for i in rows],
    }
    payload = json.dumps(frame, separators=(",", ":")).encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as f:
        f.write(payload)
    return hashlib.sha256(out.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_home", type=Path, help=f"folder holding {SOURCE}")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    digest = build(args.data_home, args.out)
    print(f"{args.out}: {SIZE} structures, {args.out.stat().st_size:,} bytes, sha256 {digest}")


if __name__ == "__main__":
    main()
