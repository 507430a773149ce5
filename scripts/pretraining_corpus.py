"""Build the pretraining corpus of the shipped encoder: every data set, deduplicated, evaluation splits removed.

    python scripts/pretraining_corpus.py --data-home ../shared/data --out docs/results/pretraining_corpus

writes ``<out>.csv.gz`` (one row per corpus structure: data set, row position, id) and ``<out>.json``
(sizes, what was removed and why, the list's sha256). ``--exclude-set matbench_phonons`` also holds out every
row of that set (and every structure matching one): the corpus of an encoder that a Matbench phonons
submission may fine-tune on every fold, since it has seen none of the task's structures.

Rules, in order:

1. The same structure in two sets is one node: rows with the same Materials Project id (sets that have
   one), and, for the sets without MP ids (``matbench_phonons``, ``perov5``, ``carbon24``), rows that
   pymatgen's ``StructureMatcher`` (default tolerances) matches to a row of another set with the same
   reduced formula and the same number of sites in the primitive cell.
2. Held out, so every set keeps an untouched test split: the 20% test split of every set
   (``train_test_split(arange(n), test_size=0.2, random_state=0)`` over its rows as stored), Matbench
   phonons' fold-0 test set, and hence the embedded ``mp_crysxpp_2k`` set (drawn from mp_crysxpp's
   test split); with ``--exclude-set``, every row of the sets it names. A node is removed when any of its
   rows is held out.
3. Each remaining node enters the corpus once, as its row in the first set of ``SETS``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import time
from collections import defaultdict

import numpy as np
import pandas as pd
from pymatgen.analysis.structure_matcher import StructureMatcher
from sklearn.model_selection import train_test_split

from dim_sklearn import load_dataset

SETS = (
    "mp_crysxpp",
    "mp_cs419",
    "flla",
    "dielectric_constant",
    "elastic_tensor_2015",
    "piezoelectric_tensor",
    "matbench_phonons",
    "perov5",
    "carbon24",
)
MP_ID_SETS = frozenset(SETS[:6])


class _Nodes:
    """Union-find over (set, row) positions."""

    def __init__(self, keys: list[tuple[str, int]]):
        self.parent = {key: key for key in keys}

    def find(self, key):
        while self.parent[key] != key:
            self.parent[key] = self.parent[self.parent[key]]
            key = self.parent[key]
        return key

    def union(self, a, b) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb, key=_order)] = min(ra, rb, key=_order)


def _order(key: tuple[str, int]) -> tuple[int, int]:
    return SETS.index(key[0]), key[1]


def held_out_rows(name: str, frame: pd.DataFrame, excluded: frozenset[str] = frozenset()) -> set[int]:
    """Positions of ``frame`` that no pretraining may see: all of them when ``name`` is in ``excluded``."""
    if name in excluded:
        return set(range(len(frame)))
    test = set(train_test_split(np.arange(len(frame)), test_size=0.2, random_state=0)[1].tolist())
    if name == "matbench_phonons":
        from matbench.metadata import mbv01_validation

        position = {mbid: i for i, mbid in enumerate(frame.index)}
        test |= {position[m] for m in mbv01_validation.splits[name]["fold_0"]["test"]}
    return test


def structure_matches(structures: dict[str, list], log) -> list[tuple[tuple[str, int], tuple[str, int]]]:
    """Pairs of rows of different sets, one of them in a set without MP ids, that StructureMatcher joins."""
    by_formula: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for name, items in structures.items():
        for row, s in enumerate(items):
            by_formula[s.composition.reduced_formula].append((name, row))
    no_id = set(SETS) - MP_ID_SETS
    candidates = {
        f: keys for f, keys in by_formula.items() if any(k[0] in no_id for k in keys) and len({k[0] for k in keys}) > 1
    }
    n_rows = sum(len(k) for k in candidates.values())
    log(f"StructureMatcher: {len(candidates)} formulas shared by a set without MP ids and another set ({n_rows} rows)")
    primitive = {}
    for keys in candidates.values():
        for name, row in keys:
            primitive[name, row] = structures[name][row].get_primitive_structure()
    log(f"  primitive cells of {len(primitive)} rows done")
    matcher = StructureMatcher(primitive_cell=False)
    pairs, tried = [], 0
    for keys in candidates.values():
        by_size: dict[int, list[tuple[str, int]]] = defaultdict(list)
        for key in keys:
            by_size[len(primitive[key])].append(key)
        for group in by_size.values():
            for i, a in enumerate(group):
                for b in group[i + 1 :]:
                    if a[0] == b[0] or (a[0] not in no_id and b[0] not in no_id):
                        continue
                    tried += 1
                    if matcher.fit(primitive[a], primitive[b]):
                        pairs.append((a, b))
    log(f"  {tried} comparisons, {len(pairs)} matches")
    return pairs


def build(data_home: str | None, excluded: frozenset[str] = frozenset(), log=print) -> tuple[pd.DataFrame, dict]:
    """The corpus list (set, row, id) and a record of its making; ``excluded`` sets are held out entirely."""
    unknown = excluded - set(SETS)
    if unknown:
        raise ValueError(f"unknown data sets {sorted(unknown)}; the corpus is made of {list(SETS)}")
    start = time.perf_counter()
    structures, ids, held = {}, {}, {}
    for name in SETS:
        items, frame = load_dataset(name, data_home, download_if_missing=False)
        structures[name] = items
        ids[name] = (
            frame["material_id"].astype(str).tolist() if "material_id" in frame else [str(i) for i in frame.index]
        )
        held[name] = held_out_rows(name, frame, excluded)
        log(f"{name}: {len(items)} rows, {len(held[name])} held out")
    nodes = _Nodes([(name, row) for name in SETS for row in range(len(structures[name]))])
    first_with_id: dict[str, tuple[str, int]] = {}
    for name in SETS:
        if name in MP_ID_SETS:
            for row, mp_id in enumerate(ids[name]):
                key = first_with_id.setdefault(mp_id, (name, row))
                nodes.union(key, (name, row))
    pairs = structure_matches(structures, log)
    for a, b in pairs:
        nodes.union(a, b)

    members: dict[tuple[str, int], list[tuple[str, int]]] = defaultdict(list)
    for key in nodes.parent:
        members[nodes.find(key)].append(key)
    held_nodes = {root for root, keys in members.items() if any(row in held[name] for name, row in keys)}
    rows = sorted((root for root in members if root not in held_nodes), key=_order)
    corpus = pd.DataFrame(
        {"dataset": [r[0] for r in rows], "row": [r[1] for r in rows], "id": [ids[r[0]][r[1]] for r in rows]}
    )

    per_set = {}
    for name in SETS:
        keys = [(name, row) for row in range(len(structures[name]))]
        own = sum(row in held[name] for _, row in keys)
        by_match = sum(nodes.find(k) in held_nodes and k[1] not in held[name] for k in keys)
        kept = int((corpus.dataset == name).sum())
        per_set[name] = {
            "rows": len(keys),
            "held_out_own_test": own,
            "held_out_by_match": by_match,
            "merged_into_earlier_set": len(keys) - own - by_match - kept,
            "in_corpus": kept,
        }
    text = corpus.to_csv(index=False)
    held_out = "the 20% test split of every set, Matbench phonons fold 0"
    if excluded:
        held_out += ", every row of " + " and ".join(sorted(excluded))
    record = {
        "n_structures": len(corpus),
        "held_out": held_out + ", and every structure matching one of them (scripts/pretraining_corpus.py)",
        "excluded_sets": sorted(excluded),
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "sets": per_set,
        "structure_matcher_pairs": len(pairs),
        "rules": __doc__.split("Rules, in order:")[1].strip(),
        "seconds": round(time.perf_counter() - start, 1),
    }
    return corpus, record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-home", default=None, help="folder of the data files (default: $DIM_SKLEARN_DATA, then $MATMINER_DATA)"
    )
    parser.add_argument("--out", default="docs/results/pretraining_corpus", help="path prefix of the two outputs")
    parser.add_argument(
        "--exclude-set", action="append", default=[], choices=SETS, help="hold out every row of this set (repeatable)"
    )
    args = parser.parse_args()
    corpus, record = build(args.data_home, frozenset(args.exclude_set))
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as handle:
        handle.write(corpus.to_csv(index=False).encode())
    with open(f"{args.out}.csv.gz", "wb") as handle:
        handle.write(buffer.getvalue())
    with open(f"{args.out}.json", "w") as handle:
        json.dump(record, handle, indent=2)
    print(json.dumps({k: v for k, v in record.items() if k != "rules"}, indent=2))


if __name__ == "__main__":
    main()
