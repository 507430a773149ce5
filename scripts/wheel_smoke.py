"""What a user runs first, against an installed dim-sklearn, from a folder outside the repository.

``scripts/check_wheel.py`` copies this file into an empty folder and runs it with the python of a fresh virtual
environment that holds the wheel and its runtime dependencies only; no data folder is set. Each step prints what
it did; any failure stops it with a traceback and a non-zero status.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

N_CIFS = 8


def step(message: str, start: float) -> None:
    print(f"  ok  {message} ({time.perf_counter() - start:.1f} s)", flush=True)


def dim_sklearn_command(*args: str) -> subprocess.CompletedProcess:
    """Run the installed ``dim-sklearn`` console script; fail on a non-zero status."""
    result = subprocess.run(["dim-sklearn", *args], capture_output=True, text=True)
    if result.returncode:
        raise AssertionError(f"dim-sklearn {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def main() -> None:
    start = time.perf_counter()
    import dim_sklearn
    from dim_sklearn import DeepInfoMaxFeaturizer, PretrainedEncoder, SiteNetRegressor, load_dataset

    location = Path(dim_sklearn.__file__).resolve()
    checkout = Path(os.environ.get("DIM_SKLEARN_CHECKOUT", "/nonexistent")).resolve()
    assert location.is_relative_to(Path(sys.prefix).resolve()), f"dim_sklearn imported from {location}"
    assert not location.is_relative_to(checkout), f"dim_sklearn imported from the checkout: {location}"
    assert dim_sklearn.__version__ == version("dim-sklearn")
    step(f"import dim_sklearn {dim_sklearn.__version__} from {location.parent}", start)

    out = dim_sklearn_command("--version").stdout.strip()
    assert out == f"dim-sklearn {version('dim-sklearn')}", out
    step(f"dim-sklearn --version: {out}", start)

    structures, targets = load_dataset("mp_crysxpp_2k")
    assert len(structures) == 2000 and len(targets) == 2000
    step("load_dataset('mp_crysxpp_2k'): 2000 structures", start)

    cifs = Path("cifs")
    cifs.mkdir()
    for k, structure in enumerate(structures[:N_CIFS]):
        structure.to(filename=str(cifs / f"s{k}.cif"))
    (cifs / "broken.cif").write_text("not a crystal\n")
    shipped = DeepInfoMaxFeaturizer.from_pretrained()
    vectors = shipped.transform(structures[:N_CIFS])
    assert vectors.shape == (N_CIFS, 64) and np.isfinite(vectors).all()
    step("DeepInfoMaxFeaturizer.from_pretrained().transform", start)

    dim_sklearn_command("featurize", str(cifs), "-o", "shipped.csv")
    frame = pd.read_csv("shipped.csv", dtype={"id": str}).set_index("id")
    ids = [f"s{k}" for k in range(N_CIFS)]
    np.testing.assert_allclose(frame.loc[ids, shipped.feature_labels()].to_numpy(), vectors, atol=1e-4)
    assert "unreadable CIF" in frame.loc["broken", "reason"]
    step(f"dim-sklearn featurize on {N_CIFS + 1} CIFs (one unreadable, kept with its reason)", start)

    result = dim_sklearn_command("pretrain", str(cifs), "my-encoder", "--max-epochs", "2", "--random-state", "0")
    assert f"skipped 1 of {N_CIFS + 1} structures" in result.stderr and "broken.cif: unreadable CIF" in result.stderr
    own = DeepInfoMaxFeaturizer.load("my-encoder")
    assert len(own.history_) == 2 and own.metadata_["corpus"]["n_structures"] == N_CIFS
    assert PretrainedEncoder.load("my-encoder").config == shipped.encoder_.config
    dim_sklearn_command("featurize", str(cifs), "-o", "own.csv", "--encoder", "my-encoder")
    frame = pd.read_csv("own.csv", dtype={"id": str}).set_index("id")
    np.testing.assert_allclose(
        frame.loc[ids, own.feature_labels()].to_numpy(), own.transform(structures[:N_CIFS]), atol=1e-4
    )
    step("dim-sklearn pretrain on a folder of CIFs, then featurize --encoder", start)

    y = targets["formation_energy_per_atom"].to_numpy()
    reg = SiteNetRegressor(encoder="pretrained", max_epochs=3, random_state=0)
    reg.fit(structures[:40], y[:40])
    predictions = reg.predict(structures[40:50])
    assert predictions.shape == (10,) and np.isfinite(predictions).all()
    step("SiteNetRegressor fit on 40 structures, predict 10", start)

    reg_back = pickle.loads(pickle.dumps(reg))
    np.testing.assert_allclose(reg_back.predict(structures[40:50]), predictions, rtol=1e-5, atol=1e-6)
    feat_back = pickle.loads(pickle.dumps(shipped))
    np.testing.assert_allclose(feat_back.transform(structures[:N_CIFS]), vectors, rtol=1e-5, atol=1e-6)
    step("pickle round trip of the regressor and the featurizer", start)
    print(f"smoke test of the installed wheel passed in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
