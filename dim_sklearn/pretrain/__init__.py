"""The Deep InfoMax pretraining loop.

Separate AdamW optimisers for the local and the global parts; a held-out share
of the structures whose DIM loss is computed (with the means, no sampling)
after every epoch; stop at ``max_epochs`` or when the held-out loss has not
improved for ``patience`` epochs
([`EarlyStopping`][dim_sklearn.training.EarlyStopping]), and keep the best
held-out weights. Labels are never seen. A training loss that turns NaN or
infinite stops the run with a warning, keeping the best weights seen before
([`diverged`][dim_sklearn.training.diverged]). With a ``checkpoint_dir`` the
full state is written after every epoch, with a checksum of its contents
(``dim_sklearn.pretrain.checkpoint``), and a later call with the same data and
settings resumes from it; a damaged or non-finite checkpoint raises
[`IncompatibleModelError`][dim_sklearn.IncompatibleModelError].

Inside a torch.distributed process group (started by ``torchrun``, see
``dim_sklearn.pretrain.distributed``) the same loop runs data-parallel: the model is
wrapped in ``DistributedDataParallel``, every step's batch of ``batch_sites``
sites is shared out among the ranks
([`DistributedSiteBudgetBatchSampler`][dim_sklearn.pointsets.DistributedSiteBudgetBatchSampler]),
gradients and losses are summed over the ranks, and rank 0 writes the
checkpoints.

Two extension points change a run without touching the loop:
[`PretrainCallback`][dim_sklearn.pretrain.PretrainCallback] hooks
(``callbacks=``) are called at the start, after every batch and epoch, and at
the end; ``batch_sampler=`` makes the training batches (by default a
[`DistributedSiteBudgetBatchSampler`][dim_sklearn.pointsets.DistributedSiteBudgetBatchSampler]).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from .._utils import Rule, check_fields, derive_seed, integer, real, resolve_device
from ..exceptions import IncompatibleModelError
from ..nn import CHANCE, DeepInfoMax
from ..nn.compiled import CompileOption, resolve_compile, set_compiled
from ..pointsets import PointSet
from ..pointsets.batching import (
    DistributedSiteBudgetBatchSampler,
    PointSetBatch,
    SiteBudgetBatchSampler,
    collate_point_sets,
    merge_small_batches,
)
from ..training import (
    EarlyStopping,
    diverged,
    flat_groups,
    link_flat_groups,
    site_counts,
    unlink_flat_groups,
    warn_diverged,
)
from .checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from .distributed import all_gather_objects, all_reduce_sum, barrier, broadcast_object, rank_and_world

__all__ = ["PretrainCallback", "PretrainSettings", "pretrain"]

History = list[dict[str, float]]


@dataclass(frozen=True)
class PretrainSettings:
    """Optimisation settings of [`pretrain`][dim_sklearn.pretrain.pretrain].

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

    FIELD_RULES: ClassVar[dict[str, Rule]] = {
        "max_epochs": integer(0),
        "patience": integer(1),
        "batch_sites": integer(1),
        "lr": real(0, low_open=True),
        "weight_decay": real(0),
        "validation_fraction": real(0, 1, high_open=True),
    }
    """What each field must be; the featurizer and saved encoders' settings are checked by the same rules."""

    def __post_init__(self) -> None:
        check_fields(self, **self.FIELD_RULES)


def _fingerprint(model: DeepInfoMax, point_sets: Sequence[PointSet], settings: PretrainSettings) -> str:
    digest = hashlib.blake2b(digest_size=16)
    fixed = {k: v for k, v in asdict(settings).items() if k not in ("max_epochs", "patience")}
    digest.update(
        json.dumps(
            [
                fixed,
                model.encoder.config.to_dict(),
                model.kl_weight,
                model.domain_negatives,
                model.local_scrambled,
                model.batch_negatives,
            ]
        ).encode()
    )
    for p in point_sets:
        digest.update(p.site_features.tobytes())
        digest.update(p.distances.tobytes())
    return digest.hexdigest()


class PretrainCallback:
    """Hooks that [`pretrain`][dim_sklearn.pretrain.pretrain] calls; override the ones you need (these do nothing).

    The counterpart of skorch's ``Callback`` for the pretraining loop. Every
    hook receives the ``DeepInfoMax`` being trained (not
    its ``DistributedDataParallel`` wrapper) and is called on every rank of a
    process group. A hook that raises ends the run with that exception, the
    model holding the weights it has then; a checkpoint holds the last whole
    epoch.
    """

    def on_train_begin(self, model: DeepInfoMax, history: History) -> None:
        """Before the first epoch; after resuming from a checkpoint, ``history`` holds its epochs."""

    def on_batch_end(
        self, model: DeepInfoMax, batch: PointSetBatch, losses: dict[str, torch.Tensor], training: bool
    ) -> None:
        """After each training step (``training=True``) and each held-out batch, with the batch's mean losses."""

    def on_epoch_end(self, model: DeepInfoMax, history: History) -> None:
        """After each epoch: its row is ``history[-1]``, and with a ``checkpoint_dir`` it is saved."""

    def on_train_end(self, model: DeepInfoMax, history: History) -> None:
        """After the last epoch, the model holding the weights [`pretrain`][dim_sklearn.pretrain.pretrain] keeps."""


def _notify(callbacks: Sequence[PretrainCallback], hook: str, model: DeepInfoMax, **kwargs: Any) -> None:
    """Call ``hook`` of every callback, in order."""
    for callback in callbacks:
        getattr(callback, hook)(model, **kwargs)


def _run_epoch(model, batches, optimisers, device, autocast, generator, on_batch_end) -> dict[str, float]:
    """Mean losses per crystal over ``batches`` (over the batches of every rank in a process group)."""
    totals: dict[str, float] = {}
    crystals: float = 0
    training = optimisers is not None
    for batch in batches:
        batch = batch.to(device)
        with autocast:
            losses = model(batch, sample=training, generator=generator)
        if training:
            for optimiser in optimisers:
                optimiser.zero_grad(set_to_none=False)  # in place: the parameters' gradients are views into it
            losses["loss"].backward()
            for optimiser in optimisers:
                optimiser.step()
        on_batch_end(batch=batch, losses=losses, training=training)
        for name, value in losses.items():
            totals[name] = totals.get(name, 0.0) + float(value.detach()) * batch.n_crystals
        crystals += batch.n_crystals
    if rank_and_world()[1] > 1:  # a rank may hold no held-out batch: the names come from one that does
        names = next(names for names in all_gather_objects(list(totals)) if names)
        *sums, crystals = all_reduce_sum([totals.get(name, 0.0) for name in names] + [crystals], device)
        totals = dict(zip(names, sums))
    return {name: value / crystals for name, value in totals.items()}


def _held_out(model, batches, device, autocast, seed, on_batch_end) -> dict[str, float]:
    """The held-out losses (``valid_`` prefix) and ``valid_vector_std``, over the held-out batches of every rank."""
    model.eval()
    with torch.no_grad():
        generator = torch.Generator(device).manual_seed(derive_seed(seed, 3))
        valid = _run_epoch(model, batches, None, device, autocast, generator, on_batch_end)
        with autocast:
            vectors = [model.encoder(batch.to(device)).float().cpu() for batch in batches]
    if rank_and_world()[1] > 1:
        vectors = [v for rank_vectors in all_gather_objects(vectors) for v in rank_vectors]
    row = {f"valid_{k}": v for k, v in valid.items()}
    row["valid_vector_std"] = float(torch.cat(vectors).std(0).mean())
    return row


def _split(n: int, settings: PretrainSettings, seed: int, world: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the held-out and of the training structures.

    Raises
    ------
    ValueError
        Fewer than 2 structures (2 per rank) would be left for training.
    """
    order = np.random.default_rng([seed, 0]).permutation(n)
    n_valid = max(2, round(settings.validation_fraction * n)) if settings.validation_fraction > 0 else 0
    if n - n_valid < 2 * world:
        raise ValueError(
            f"validation_fraction={settings.validation_fraction} holds out {n_valid} of {n} structures, leaving "
            f"{n - n_valid} for training; Deep InfoMax needs at least 2"
            + (f" per rank ({world} ranks)" if world > 1 else "")
        )
    return order[:n_valid], order[n_valid:]


def _optimisers(model: DeepInfoMax, settings: PretrainSettings) -> list[torch.optim.Optimizer]:
    """One AdamW for the local and one for the global parameters, each holding them as one flat tensor."""
    named = list(model.named_parameters())
    return [
        torch.optim.AdamW(
            flat_groups([{"params": params}], named),
            lr=settings.lr,
            weight_decay=settings.weight_decay,
            eps=1e-7,
            amsgrad=True,
        )
        for params in (model.local_parameters(), model.global_parameters())
    ]


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


def _resume(
    state: dict,
    model: DeepInfoMax,
    optimisers: Sequence[torch.optim.Optimizer],
    stopping: EarlyStopping,
    path: Path | None,
) -> None:
    """Take up a checkpoint's weights, optimiser states and early-stopping state.

    Raises
    ------
    IncompatibleModelError
        Its contents do not fit the model (a file made to pass the checksum and
        the fingerprint); the message names it.
    """
    shapes = {name: tensor.shape for name, tensor in model.state_dict().items()}
    best = state["best_state"]
    try:
        if best is not None and {name: tensor.shape for name, tensor in best.items()} != shapes:
            raise ValueError("the best weights have other names or shapes than the model's")
        if len(state["optimisers"]) != len(optimisers):
            raise ValueError(f"{len(state['optimisers'])} optimiser states for {len(optimisers)} optimisers")
        model.load_state_dict(state["model"])
        for optimiser, saved in zip(optimisers, state["optimisers"]):
            optimiser.load_state_dict(saved)
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        reason = str(exc).splitlines()[0][:300]
        raise IncompatibleModelError(
            f"{path} is not a usable pretraining checkpoint: its contents do not fit the model ({reason}); "
            "delete it to start afresh"
        ) from exc
    stopping.load_state_dict(state)


def pretrain(
    model: DeepInfoMax,
    point_sets: Sequence[PointSet],
    settings: PretrainSettings | None = None,
    *,
    random_state: int | np.random.Generator | None = None,
    device: str | torch.device = "auto",
    checkpoint_dir: str | os.PathLike | None = None,
    verbose: bool = False,
    compile: CompileOption = "auto",
    callbacks: Sequence[PretrainCallback] = (),
    batch_sampler: Callable[..., DistributedSiteBudgetBatchSampler] = DistributedSiteBudgetBatchSampler,
) -> tuple[History, int]:
    """Train ``model`` (in place) with Deep InfoMax on unlabelled point sets.

    Inside a torch.distributed process group every rank calls it with the same
    point sets and settings; the ranks then train one model data-parallel (see
    the module's description), and every rank returns the same history and
    weights.

    Parameters
    ----------
    model : DeepInfoMax
        The model to train; it ends on ``device``, in eval mode.
    point_sets : sequence of PointSet
        At least four crystals. A [`CachedPointSets`][dim_sklearn.pointsets.CachedPointSets]
        is read batch by batch; only the held-out batches are kept in memory.
    settings : PretrainSettings, optional
        The optimisation settings; default ``PretrainSettings()``.
    random_state : int, Generator or None
        Seeds the held-out split, the batch order, the sampling noise and the
        scrambling; the same value on CPU gives bit-identical weights (for a
        given number of ranks; rank 0's seed is used by all).
    device : str or torch.device, default="auto"
        This rank's device.
    checkpoint_dir : path, optional
        Write the state after each epoch; resume from it when it matches.
    verbose : bool, default=False
        Progress bar and one line of losses per epoch.
    compile : bool or "auto", default="auto"
        Run the pair blocks compiled with ``torch.compile``
        (``dim_sklearn.nn.compiled``): about twice the crystals per second
        after a minute of compiling. "auto" compiles when ``max_epochs`` times
        the training structures reach
        ``AUTO_COMPILE_PASSES``; where compiling
        is impossible the run warns and goes on eagerly. The weights agree
        with an eager run to float32 rounding, not bit for bit.
    callbacks : sequence of PretrainCallback, default=()
        Hooks called, in order, at the start, after every batch and epoch,
        and at the end ([`PretrainCallback`][dim_sklearn.pretrain.PretrainCallback]).
    batch_sampler : callable, default=DistributedSiteBudgetBatchSampler
        Makes the training batches, once per run: called as
        ``batch_sampler(n_sites, batch_sites, num_replicas, rank,
        shuffle=True, random_state=seed)`` with the site counts of the
        training structures, like
        [`DistributedSiteBudgetBatchSampler`][dim_sklearn.pointsets.DistributedSiteBudgetBatchSampler]
        (the default), and returns such a sampler: ``set_epoch(epoch)``
        before every pass, then lists of positions in ``n_sites``. Every
        rank's sampler must give the same number of batches per epoch. A
        checkpoint does not record it: resume with the same one.

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
        at ``CHANCE`` (2 ln 2) means nothing was learnt.
    best_epoch : int
        The epoch whose weights the model holds at the end (0 when no epoch ran
        or the first diverged: the initial weights).

    Raises
    ------
    ValueError
        Fewer than 4 structures, fewer than 2 left for training (2 per rank),
        or a checkpoint of another run in ``checkpoint_dir``.
    IncompatibleModelError
        The checkpoint in ``checkpoint_dir`` is damaged (unreadable, altered,
        not a checkpoint), holds NaN or infinite values, or holds weights that
        do not fit the model; the message names the file.
    WriteError
        A checkpoint cannot be written (a full disk, ...); the message names
        the file and the cause. The previous checkpoint is left whole.

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
    rank, world = rank_and_world()
    device = resolve_device(device)
    model.to(device)
    checkpoint_path = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir is not None else None
    fingerprint = _fingerprint(model, point_sets, settings) if checkpoint_path else ""
    state = None
    if checkpoint_path is not None and checkpoint_path.is_file():
        state = load_checkpoint(checkpoint_path, device, fingerprint)
    seed = broadcast_object(state["seed"] if state else int(np.random.default_rng(random_state).integers(2**63)))

    valid_idx, train_idx = _split(n, settings, seed, world)
    sizes = site_counts(point_sets)
    sampler = batch_sampler(
        sizes[train_idx], settings.batch_sites, world, rank, shuffle=True, random_state=derive_seed(seed, 1)
    )
    # the held-out batches stay in memory; the ranks share them out whole
    valid_plan = merge_small_batches(SiteBudgetBatchSampler(sizes[valid_idx], settings.batch_sites, shuffle=False))
    valid_batches = [collate_point_sets([point_sets[valid_idx[i]] for i in b]) for b in valid_plan[rank::world]]

    optimisers = _optimisers(model, settings)
    history: History = []
    stopping = EarlyStopping(settings.patience)
    initial_state = copy.deepcopy(model.state_dict())
    if state:
        _resume(state, model, optimisers, stopping, checkpoint_path)
        history = state["history"]
    parameters = dict(model.named_parameters())
    for optimiser in optimisers:  # the parameters are views into the optimisers' flat tensors until the end
        link_flat_groups(optimiser, parameters)
    # what the training pass calls: under a process group, the model in DistributedDataParallel
    trainer: torch.nn.Module = model
    if world > 1:
        trainer = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None
        )
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    on_batch_end = functools.partial(_notify, callbacks, "on_batch_end", model)

    # eager again when the run ends: the trained model's later uses decide for themselves
    set_compiled(model, resolve_compile(compile, len(train_idx) * settings.max_epochs, device))
    _notify(callbacks, "on_train_begin", model, history=history)
    epochs = tqdm(
        range(len(history) + 1, settings.max_epochs + 1),
        disable=not verbose or rank != 0,
        desc="DIM pretraining",
        unit="epoch",
    )
    try:
        for epoch in epochs:
            if stopping.should_stop:
                break
            sampler.set_epoch(epoch)
            batches = (collate_point_sets([point_sets[train_idx[i]] for i in b]) for b in sampler)
            noise_seed = derive_seed(seed, 2, epoch) if world == 1 else derive_seed(seed, 2, epoch, rank + 1)
            generator = torch.Generator(device).manual_seed(noise_seed)
            model.train()
            start = time.perf_counter()
            train = _run_epoch(trainer, batches, optimisers, device, autocast, generator, on_batch_end)
            seconds = time.perf_counter() - start
            if diverged(train["loss"], model):
                warn_diverged("Deep InfoMax pretraining", epoch, train["loss"], stopping.best_epoch)
                break
            row = {"epoch": epoch, **train, "crystals_per_second": len(train_idx) / seconds, "seconds": seconds}
            if len(valid_idx):
                row.update(_held_out(model, valid_batches, device, autocast, seed, on_batch_end))
            history.append(row)

            stopping.update(epoch, row.get("valid_loss", row["loss"]), model)
            if verbose and rank == 0:
                epochs.write(_epoch_line(row) + (" *" if stopping.best_epoch == epoch else ""))
            if checkpoint_path is not None:
                if rank == 0:
                    save_checkpoint(
                        {
                            "fingerprint": fingerprint,
                            "seed": seed,
                            "model": model.state_dict(),
                            "optimisers": [o.state_dict() for o in optimisers],
                            "history": history,
                            **stopping.state_dict(),
                        },
                        checkpoint_path,
                    )
                barrier()  # every rank knows the epoch is saved
            _notify(callbacks, "on_epoch_end", model, history=history)
    finally:
        for optimiser in optimisers:
            unlink_flat_groups(optimiser, parameters)
    model.load_state_dict(stopping.best_state if stopping.best_state is not None else initial_state)
    set_compiled(model, False)
    model.eval()
    _notify(callbacks, "on_train_end", model, history=history)
    return history, stopping.best_epoch
