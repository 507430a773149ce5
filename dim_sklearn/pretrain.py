"""The Deep InfoMax pretraining loop.

Separate AdamW optimisers for the local and the global parts; a held-out share
of the structures whose DIM loss is computed (with the means, no sampling)
after every epoch; stop at ``max_epochs`` or when the held-out loss has not
improved for ``patience`` epochs, and keep the best held-out weights. Labels are
never seen. A training loss that turns NaN or infinite stops the run with a
warning, keeping the best weights seen before. With a ``checkpoint_dir`` the
full state is written after every epoch, with a checksum of its contents, and a
later call with the same data and settings resumes from it; a damaged or
non-finite checkpoint raises :class:`~dim_sklearn.io.IncompatibleModelError`.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import pickle
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ._utils import atomic_write, check_fields, derive_seed, integer, real, resolve_device
from .batching import SiteBudgetBatchSampler, collate_point_sets
from .exceptions import IncompatibleModelError
from .nn import CHANCE, DeepInfoMax
from .pointset import PointSet

__all__ = ["PretrainSettings", "pretrain"]

_CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class PretrainSettings:
    """Optimisation settings of :func:`pretrain`.

    ``batch_sites`` and ``lr`` were chosen on the mp_crysxpp training split (the
    paper's 1,200 and 1e-4 take 4x fewer and 10x smaller steps and leave the
    global DIM term near chance); the rest are the paper's.
    """

    max_epochs: int = 100
    patience: int = 10
    batch_sites: int = 300
    lr: float = 1e-3
    weight_decay: float = 1e-4
    validation_fraction: float = 0.05

    def __post_init__(self) -> None:
        check_fields(self, max_epochs=integer(0), patience=integer(1), batch_sites=integer(1),
                     lr=real(0, low_open=True), weight_decay=real(0), validation_fraction=real(0, 1, high_open=True))


def _pair_up(batches: list[list[int]]) -> list[list[int]]:
    """Merge every single-crystal batch into a neighbour (DIM needs two crystals per batch).

    A crystal larger than half the site budget can be alone in its batch; it
    then joins the batch before it (or, first in the pass, the one after), which
    passes the budget by at most that crystal's sites.
    """
    merged: list[list[int]] = []
    for batch in batches:
        if merged and (len(batch) < 2 or len(merged[-1]) < 2):
            merged[-1] = merged[-1] + batch
        else:
            merged.append(list(batch))
    return merged


def _fingerprint(model: DeepInfoMax, point_sets: Sequence[PointSet], settings: PretrainSettings) -> str:
    digest = hashlib.blake2b(digest_size=16)
    fixed = {k: v for k, v in asdict(settings).items() if k not in ("max_epochs", "patience")}
    digest.update(json.dumps([fixed, model.encoder.config.to_dict(), model.kl_weight, model.domain_negatives,
                              model.local_scrambled, model.batch_negatives]).encode())
    for p in point_sets:
        digest.update(p.site_features.tobytes())
        digest.update(p.distances.tobytes())
    return digest.hexdigest()


def _digest(obj: Any, digest: Any) -> None:
    """Feed a checkpoint's nested dicts, lists, tensors and plain values into ``digest``, in a fixed order."""
    if isinstance(obj, torch.Tensor):
        tensor = obj.detach().cpu().contiguous()
        digest.update(f"tensor {tensor.dtype} {tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        digest.update(f"dict {len(obj)}".encode())
        for key in sorted(obj, key=repr):
            digest.update(repr(key).encode())
            _digest(obj[key], digest)
    elif isinstance(obj, (list, tuple)):
        digest.update(f"{type(obj).__name__} {len(obj)}".encode())
        for item in obj:
            _digest(item, digest)
    else:
        digest.update(repr(obj).encode())


def _checksum(state: dict) -> str:
    digest = hashlib.blake2b(digest_size=16)
    _digest({k: v for k, v in state.items() if k != "checksum"}, digest)
    return digest.hexdigest()


def _non_finite(obj: Any) -> bool:
    """Whether any floating-point tensor inside ``obj`` holds NaN or infinity."""
    if isinstance(obj, torch.Tensor):
        return obj.is_floating_point() and not bool(torch.isfinite(obj).all())
    if isinstance(obj, dict):
        return any(_non_finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_non_finite(v) for v in obj)
    return False


def _finite_model(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _save_checkpoint(obj: dict, path: Path) -> None:
    with atomic_write(path) as handle:
        torch.save({**obj, "checksum": _checksum(obj)}, handle)


_CHECKPOINT_KEYS = frozenset(
    {"fingerprint", "seed", "model", "optimisers", "history", "best_loss", "best_epoch", "bad_epochs", "best_state",
     "checksum"}
)


def _load_checkpoint(path: Path, device: torch.device, fingerprint: str) -> dict:
    """The state in ``path``, after checking that it is whole, unaltered, of this run and finite."""
    damaged = f"{path} is not a usable pretraining checkpoint"
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, KeyError, AttributeError) as exc:
        # torch's own message may advise weights_only=False, which would execute code from the file
        raise IncompatibleModelError(
            f"{damaged}: it cannot be read ({type(exc).__name__}); delete it to start afresh"
        ) from None
    if isinstance(state, dict) and set(state) == _CHECKPOINT_KEYS - {"checksum"}:
        raise IncompatibleModelError(f"{damaged}: it was written without a checksum (by an older dim-sklearn) and "
                                     "cannot be verified; delete it to start afresh")
    if not isinstance(state, dict) or set(state) != _CHECKPOINT_KEYS:
        raise IncompatibleModelError(f"{damaged}: it does not hold a checkpoint's contents; delete it to start afresh")
    if state["checksum"] != _checksum(state):
        raise IncompatibleModelError(f"{damaged}: its checksum does not match (a damaged file); delete it")
    if state["fingerprint"] != fingerprint:
        raise ValueError(f"{path} holds a run on other data or settings; use another checkpoint_dir or delete it")
    if _non_finite([state["model"], state["best_state"], state["optimisers"]]):
        raise IncompatibleModelError(f"{damaged}: it holds NaN or infinite weights; delete it to start afresh")
    return state


def _run_epoch(model, batches, optimisers, device, autocast, generator) -> dict[str, float]:
    totals: dict[str, float] = {}
    crystals = 0
    for batch in batches:
        batch = batch.to(device)
        with autocast:
            losses = model(batch, sample=optimisers is not None, generator=generator)
        if optimisers is not None:
            for optimiser in optimisers:
                optimiser.zero_grad(set_to_none=True)
            losses["loss"].backward()
            for optimiser in optimisers:
                optimiser.step()
        for name, value in losses.items():
            totals[name] = totals.get(name, 0.0) + float(value.detach()) * batch.n_crystals
        crystals += batch.n_crystals
    return {name: value / crystals for name, value in totals.items()}


def _epoch_line(row: dict[str, float]) -> str:
    """One line of an epoch's DIM terms against chance, KL terms, vector spread and speed."""
    source = "valid_" if "valid_loss" in row else ""
    where = "held-out" if source else "training"
    return (
        f"epoch {row['epoch']:3d}: {where} DIM local {row[source + 'local_dim']:.4f}, "
        f"global {row[source + 'global_dim']:.4f} (chance {CHANCE:.4f}) | "
        f"KL local {row[source + 'local_kl']:.3f}, global {row[source + 'global_kl']:.3f}"
        + (f" | vector std {row['valid_vector_std']:.3f}" if source else "")
        + f" | train loss {row['loss']:.4f} | {row['crystals_per_second']:.0f} crystals/s"
    )


def pretrain(
    model: DeepInfoMax,
    point_sets: Sequence[PointSet],
    settings: PretrainSettings | None = None,
    *,
    random_state: int | np.random.Generator | None = None,
    device: str | torch.device = "auto",
    checkpoint_dir: str | os.PathLike | None = None,
    verbose: bool = False,
) -> tuple[list[dict[str, float]], int]:
    """Train ``model`` (in place) with Deep InfoMax on unlabelled point sets.

    Parameters
    ----------
    model : DeepInfoMax
    point_sets : sequence of PointSet
        At least four crystals.
    settings : PretrainSettings, optional
    random_state : int, Generator or None
        Seeds the held-out split, the batch order, the sampling noise and the
        scrambling; the same value on CPU gives bit-identical weights.
    device : str or torch.device, default="auto"
    checkpoint_dir : path, optional
        Write the state after each epoch; resume from it when it matches.
    verbose : bool, default=False
        Progress bar and one line of losses per epoch.

    Returns
    -------
    history : list of dict
        Per epoch: ``epoch``, training losses (``loss``, ``local``, ``global``,
        ``local_dim``, ``global_dim``, ``local_kl``, ``global_kl``, and the parts
        of the DIM terms: ``local_positive``, ``local_negative``,
        ``global_positive``, ``global_negative_<kind>``), the same with a
        ``valid_`` prefix, ``valid_vector_std`` (mean over dimensions of the
        standard deviation of the held-out crystal vectors: near 0 for a
        collapsed encoder), ``crystals_per_second`` and ``seconds``. A DIM term
        at :data:`~dim_sklearn.nn.CHANCE` (2 ln 2) means nothing was learnt.
    best_epoch : int
        The epoch whose weights the model holds at the end (0 when no epoch ran
        or the first diverged: the initial weights).

    Raises
    ------
    ValueError
        Fewer than 4 structures, fewer than 2 left for training, or a
        checkpoint of another run in ``checkpoint_dir``.
    IncompatibleModelError
        The checkpoint in ``checkpoint_dir`` is damaged (unreadable, altered,
        not a checkpoint) or holds NaN or infinite values.

    Warns
    -----
    RuntimeWarning
        When the training loss or the weights turn NaN or infinite; the run
        stops there.
    """
    settings = settings or PretrainSettings()
    n = len(point_sets)
    if n < 4:
        raise ValueError(f"Deep InfoMax pretraining needs at least 4 structures, got {n}")
    device = resolve_device(device)
    model.to(device)
    checkpoint_path = Path(checkpoint_dir) / _CHECKPOINT if checkpoint_dir is not None else None
    fingerprint = _fingerprint(model, point_sets, settings) if checkpoint_path else ""
    state = None
    if checkpoint_path is not None and checkpoint_path.is_file():
        state = _load_checkpoint(checkpoint_path, device, fingerprint)
    seed = state["seed"] if state else int(np.random.default_rng(random_state).integers(2**63))

    order = np.random.default_rng([seed, 0]).permutation(n)
    n_valid = max(2, round(settings.validation_fraction * n)) if settings.validation_fraction > 0 else 0
    if n - n_valid < 2:
        raise ValueError(
            f"validation_fraction={settings.validation_fraction} holds out {n_valid} of {n} structures, leaving "
            f"{n - n_valid} for training; Deep InfoMax needs at least 2"
        )
    valid_idx, train_idx = order[:n_valid], order[n_valid:]
    sizes = np.array([p.n_sites for p in point_sets])
    sampler = SiteBudgetBatchSampler(
        sizes[train_idx], settings.batch_sites, shuffle=True, random_state=derive_seed(seed, 1)
    )
    valid_batches = [
        collate_point_sets([point_sets[valid_idx[i]] for i in b])
        for b in _pair_up(list(SiteBudgetBatchSampler(sizes[valid_idx], settings.batch_sites, shuffle=False)))
    ] if n_valid else []

    optimisers = [
        torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay, eps=1e-7, amsgrad=True)
        for params in (model.local_parameters(), model.global_parameters())
    ]
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    )
    history: list[dict[str, float]] = []
    best_loss, best_epoch, best_state, bad_epochs = float("inf"), 0, None, 0
    initial_state = copy.deepcopy(model.state_dict())
    if state:
        model.load_state_dict(state["model"])
        for optimiser, saved in zip(optimisers, state["optimisers"]):
            optimiser.load_state_dict(saved)
        history, best_loss, best_epoch, bad_epochs = (
            state["history"], state["best_loss"], state["best_epoch"], state["bad_epochs"]
        )
        best_state = state["best_state"]

    epochs = tqdm(
        range(len(history) + 1, settings.max_epochs + 1), disable=not verbose, desc="DIM pretraining", unit="epoch"
    )
    for epoch in epochs:
        if bad_epochs >= settings.patience:
            break
        sampler.set_epoch(epoch)
        batches = (collate_point_sets([point_sets[train_idx[i]] for i in b]) for b in _pair_up(list(sampler)))
        generator = torch.Generator(device).manual_seed(derive_seed(seed, 2, epoch))
        model.train()
        start = time.perf_counter()
        train = _run_epoch(model, batches, optimisers, device, autocast, generator)
        seconds = time.perf_counter() - start
        if not (math.isfinite(train["loss"]) and _finite_model(model)):
            kept = f"the weights of epoch {best_epoch}" if best_state is not None else "the initial weights"
            warnings.warn(
                f"Deep InfoMax pretraining diverged in epoch {epoch} (training loss {train['loss']}); stopped, "
                f"keeping {kept}: lower lr", RuntimeWarning, stacklevel=2,
            )
            break
        row = {"epoch": epoch, **train, "crystals_per_second": len(train_idx) / seconds, "seconds": seconds}
        if valid_batches:
            model.eval()
            with torch.no_grad():
                generator = torch.Generator(device).manual_seed(derive_seed(seed, 3))
                valid = _run_epoch(model, valid_batches, None, device, autocast, generator)
                with autocast:
                    vectors = torch.cat([model.encoder(batch.to(device)) for batch in valid_batches]).float()
            row.update({f"valid_{k}": v for k, v in valid.items()})
            row["valid_vector_std"] = float(vectors.std(0).mean())
        history.append(row)

        monitored = row.get("valid_loss", row["loss"])
        if monitored < best_loss:
            best_loss, best_epoch, bad_epochs = monitored, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
        if verbose:
            epochs.write(_epoch_line(row) + (" *" if best_epoch == epoch else ""))
        if checkpoint_path is not None:
            checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
            _save_checkpoint(
                {
                    "fingerprint": fingerprint, "seed": seed, "model": model.state_dict(),
                    "optimisers": [o.state_dict() for o in optimisers], "history": history,
                    "best_loss": best_loss, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                    "best_state": best_state,
                },
                checkpoint_path,
            )
    model.load_state_dict(best_state if best_state is not None else initial_state)
    model.eval()
    return history, best_epoch

