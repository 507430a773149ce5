"""The file format of a trained encoder (``PretrainedEncoder``): writing it, and reading it safely.

A saved encoder is a folder with two files:

- ``encoder.safetensors``: the weights (safetensors: plain tensors, nothing
  executed on load);
- ``config.json``: the format and its version, the versions of dim-sklearn,
  torch and pymatgen that wrote the file, and three sections, none of which
  names an estimator's parameter:

  - ``encoder``: the encoder's widths and distance input
    (``dim_sklearn.nn.EncoderConfig``);
  - ``point_set``: how structures become the encoder's input
    ([`PointSetConfig`][dim_sklearn.PointSetConfig]: ``max_atoms``, ``max_sites``,
    ``oxidation``, ``min_distance``);
  - ``provenance``: where the weights came from: ``versions`` (of the run that
    trained them), ``settings`` (the pretraining settings, for information),
    ``history`` (per-epoch losses), ``best_epoch`` and ``metadata`` (free-form:
    corpus, timings, ...).

Loading treats both files as untrusted and checks them before anything is
allocated: the JSON's size and nesting depth are bounded before it is parsed;
the encoder and point-set sections are checked field by field by the rules of
``dim_sklearn.nn.EncoderConfig`` and [`PointSetConfig`][dim_sklearn.PointSetConfig],
which hold the package's caps (widths at most
``dim_sklearn.nn.encoder.MAX_WIDTH``, ``max_atoms`` at most
``dim_sklearn.pointsets.MAX_ATOMS``, ``max_sites`` at most
``dim_sklearn.pointsets.MAX_SITES``: a file cannot raise them); the
provenance is checked for type, and its recorded pretraining settings by the
rules ``DeepInfoMaxFeaturizer.fit`` applies to them
(``PRETRAINING_SETTINGS``); the names, shapes and dtypes of the tensors are
read from the safetensors header and compared with the encoder the JSON
describes; the weights must be finite. Any failure raises
[`IncompatibleModelError`][dim_sklearn.IncompatibleModelError] naming the file. Every loader
([`PretrainedEncoder.load`][dim_sklearn.PretrainedEncoder.load],
``DeepInfoMaxFeaturizer.load`` and ``from_pretrained``,
``SiteNetRegressor(encoder=folder)``) reads through ``load_encoder``, so
each applies the same checks.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._utils import Rule, is_int, seed, write_atomically
from ..exceptions import IncompatibleModelError
from ..nn import EncoderConfig, ObjectiveSettings, SiteNetEncoder
from ..nn.encoder import MAX_RBF, MAX_WIDTH
from ..pointsets import PointSetConfig
from ..pretrain import PretrainSettings

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_CONFIG_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_RBF",
    "MAX_WIDTH",
    "PRETRAINING_SETTINGS",
    "IncompatibleModelError",
    "encoder_document",
    "encoder_from_state",
    "load_encoder",
    "provenance_problems",
    "read_document",
    "save_encoder",
    "versions",
]

FORMAT = "dim-sklearn Site-Net encoder"
FORMAT_VERSION = 2
WEIGHTS = "encoder.safetensors"
CONFIG = "config.json"
PROVENANCE_FIELDS = ("versions", "settings", "history", "best_epoch", "metadata")
"""The entries of the provenance section."""

PRETRAINING_SETTINGS: dict[str, Rule] = {
    **ObjectiveSettings.FIELD_RULES,
    **PretrainSettings.FIELD_RULES,
    "random_state": seed,
}
"""The pretraining settings a saved encoder records, each with what it must be: ``DeepInfoMaxFeaturizer`` checks
its parameters of these names by these rules, and loading checks a file's recorded settings by them. Settings of
other names are kept as information, unchecked."""
MAX_CONFIG_BYTES = 4 * 2**20
"""Largest ``config.json`` read (one with 100 epochs of history takes about 100 kB)."""
MAX_JSON_DEPTH = 32
"""Deepest nesting of lists and objects accepted in ``config.json``."""
_HEADER_BYTES = 2**20
"""Allowance for the safetensors header on top of the tensors' own bytes."""
_SAFETENSORS_DTYPES = {
    torch.float32: "F32",
    torch.float64: "F64",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
}


def versions() -> dict[str, str]:
    """Installed versions of dim-sklearn, torch and pymatgen."""
    out = {}
    for package in ("dim-sklearn", "torch", "pymatgen"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "unknown"
    return out


def encoder_document(config: EncoderConfig, point_set: PointSetConfig, provenance: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON document (``config.json``) of an encoder, in the current format.

    ``provenance`` holds the entries of ``PROVENANCE_FIELDS``; ``versions``
    at the top records the versions writing the document.
    """
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "versions": versions(),
        "encoder": config.to_dict(),
        "point_set": point_set.to_dict(),
        "provenance": {name: provenance[name] for name in PROVENANCE_FIELDS},
    }


def save_encoder(
    path: str | os.PathLike, encoder: SiteNetEncoder, point_set: PointSetConfig, provenance: Mapping[str, Any]
) -> Path:
    """Write ``encoder`` with its point-set configuration and JSON-serialisable provenance to the folder ``path``.

    The folder is created if needed. Both files are written whole to scratch
    files before either replaces the file of its name, so a failed save leaves
    the folder as it was.

    Raises
    ------
    WriteError
        A file cannot be written (a full disk, no permission, ...); the message names it.
    """
    from safetensors.torch import save

    folder = Path(path)
    document = json.dumps(encoder_document(encoder.config, point_set, provenance), indent=2)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in encoder.state_dict().items()}
    write_atomically(
        {folder / WEIGHTS: save(state, metadata={"format": FORMAT}), folder / CONFIG: document.encode("utf-8")}
    )
    return folder


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``, read with bounded size and nesting depth.

    Raises
    ------
    IncompatibleModelError
        Larger than ``MAX_CONFIG_BYTES``, nested deeper than
        ``MAX_JSON_DEPTH``, not UTF-8 JSON, or not an object.
    """
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise IncompatibleModelError(f"{path} holds {size:,} bytes, more than the {MAX_CONFIG_BYTES:,} accepted")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise IncompatibleModelError(f"{path} is not valid JSON: {exc}") from exc
    depth = _nesting_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise IncompatibleModelError(f"{path} is nested {depth} levels deep, more than the {MAX_JSON_DEPTH} accepted")
    try:
        config = json.loads(text)
    except ValueError as exc:  # JSONDecodeError, and integers too long to convert
        raise IncompatibleModelError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise IncompatibleModelError(f"{path} does not hold a JSON object")
    return config


def _nesting_depth(text: str) -> int:
    """Deepest nesting of ``[`` and ``{`` outside JSON strings, in linear time and without parsing.

    A quote opens or closes a string unless an odd number of backslashes
    precedes it, which is how a JSON parser reads every prefix it accepts.
    """
    raw = np.frombuffer(text.encode(), dtype=np.uint8)
    index = np.arange(raw.size)
    last_plain = np.maximum.accumulate(np.where(raw == ord("\\"), -1, index))  # last non-backslash at or before i
    backslashes_before = index - 1 - np.concatenate(([-1], last_plain[:-1]))
    quotes = (raw == ord('"')) & (backslashes_before % 2 == 0)
    outside = np.cumsum(quotes) % 2 == 0
    opens = np.isin(raw, (ord("["), ord("{"))) & outside
    closes = np.isin(raw, (ord("]"), ord("}"))) & outside
    return int(np.cumsum(opens.astype(np.int64) - closes).max(initial=0))


def _encoder_config(section: Any, where: Path | str) -> EncoderConfig:
    """The encoder section checked field by field (by ``EncoderConfig``'s rules) before anything is built."""
    if not isinstance(section, dict):
        raise IncompatibleModelError(f"{where} has no encoder section")
    unknown = sorted(set(section) - {f.name for f in dataclasses.fields(EncoderConfig)})
    if unknown:
        raise IncompatibleModelError(f"{where}: unknown encoder field(s) {', '.join(map(str, unknown))}"[:400])
    try:  # files written before the radial-basis option hold raw-distance encoders: no n_rbf means 0
        return EncoderConfig(**{"n_rbf": 0, **section})
    except ValueError as exc:
        raise IncompatibleModelError(f"{where} has an unusable encoder section: {exc}"[:1000]) from exc


def _expected_tensors(config: EncoderConfig) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Name -> (shape, dtype) of the encoder's weights, from a skeleton on the meta device (nothing allocated)."""
    with torch.device("meta"):
        skeleton = SiteNetEncoder(config)
    return {name: (tuple(t.shape), t.dtype) for name, t in skeleton.state_dict().items()}


def _point_set_config(section: Any, where: Path | str) -> PointSetConfig:
    """The point-set section checked field by field (all four present; type and range as the dataclass checks them)."""
    if not isinstance(section, dict):
        raise IncompatibleModelError(f"{where} has no point_set section")
    fields = [f.name for f in dataclasses.fields(PointSetConfig)]
    unknown = sorted(set(section) - set(fields))
    if unknown:
        raise IncompatibleModelError(f"{where}: unknown point_set field(s) {', '.join(map(str, unknown))}"[:400])
    missing = [name for name in fields if name not in section]
    if missing:
        raise IncompatibleModelError(f"{where}: the point_set section lacks {', '.join(missing)}")
    try:
        return PointSetConfig(**section)
    except ValueError as exc:
        raise IncompatibleModelError(f"{where} has an unusable point_set section: {exc}"[:1000]) from exc


def provenance_problems(provenance: Mapping[str, Any]) -> list[str]:
    """What is wrong with the entries of a provenance (all of ``PROVENANCE_FIELDS``); empty when nothing is.

    Checks the type of each entry, and the recorded pretraining settings of
    ``PRETRAINING_SETTINGS`` by their constraints.
    """
    scalar = (bool, int, float, str, type(None))
    problems = []
    if not (
        isinstance(provenance["versions"], dict) and all(isinstance(v, str) for v in provenance["versions"].values())
    ):
        problems.append("versions is not an object of strings")
    settings = provenance["settings"]
    if not (isinstance(settings, dict) and all(isinstance(v, scalar) for v in settings.values())):
        problems.append("settings is not an object of numbers, strings, booleans and nulls")
    else:
        problems += _settings_problems(settings)
    if not (isinstance(provenance["history"], list) and all(isinstance(row, dict) for row in provenance["history"])):
        problems.append("the history is not a list of objects")
    if not is_int(provenance["best_epoch"]) or provenance["best_epoch"] < 0:
        problems.append(f"best_epoch is {provenance['best_epoch']!r:.40}, not an epoch")
    if not isinstance(provenance["metadata"], dict):
        problems.append("the metadata is not an object")
    return problems


def _settings_problems(settings: Mapping[str, Any]) -> list[str]:
    """The recorded settings of ``PRETRAINING_SETTINGS`` that break their rules, one message each."""
    return sorted(
        f"{name} must be {words}, got {settings[name]!r:.100}"
        for name, (words, ok) in PRETRAINING_SETTINGS.items()
        if name in settings and not ok(settings[name])
    )


def _provenance(section: Any, where: Path | str) -> dict[str, Any]:
    """The provenance section checked (``provenance_problems``); absent entries are empty."""
    if not isinstance(section, dict):
        raise IncompatibleModelError(f"{where} has no provenance section")
    unknown = sorted(set(section) - set(PROVENANCE_FIELDS))
    if unknown:
        raise IncompatibleModelError(f"{where}: unknown provenance field(s) {', '.join(map(str, unknown))}"[:400])
    out = {"versions": {}, "settings": {}, "history": [], "best_epoch": 0, "metadata": {}, **section}
    problems = provenance_problems(out)
    if problems:
        raise IncompatibleModelError(f"{where} has an unusable provenance section: {'; '.join(problems)}")
    return out


def read_document(document: Any, where: Path | str) -> tuple[EncoderConfig, PointSetConfig, dict[str, Any]]:
    """The encoder configuration, point-set configuration and provenance of a ``config.json`` document.

    ``where`` names the document in error messages.

    Raises
    ------
    IncompatibleModelError
        Not a dim-sklearn encoder, a newer format, a field out of range or of
        the wrong type, or a point-set configuration that gives a different
        number of site features than the encoder reads.
    """
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise IncompatibleModelError(f"{where} does not describe a {FORMAT}")
    format_version = document.get("format_version")
    if format_version == FORMAT_VERSION:
        encoder = _encoder_config(document.get("encoder"), where)
        point_set = _point_set_config(document.get("point_set"), where)
        provenance = _provenance(document.get("provenance"), where)
    else:
        writer = document.get("versions")
        writer = writer.get("dim-sklearn") if isinstance(writer, dict) else None
        writer = writer[:40] if isinstance(writer, str) else "an unknown version"
        raise IncompatibleModelError(
            f"{where} has format version {format_version!r:.40}; this dim-sklearn reads version "
            f"{FORMAT_VERSION} (written by {writer})"
        )
    if point_set.n_site_features != encoder.n_site_features:
        raise IncompatibleModelError(
            f"{where}: the point_set section gives {point_set.n_site_features} site features, the encoder reads "
            f"{encoder.n_site_features}"
        )
    return encoder, point_set, provenance


def _check_tensors(
    found: Mapping[str, tuple[tuple[int, ...], str]],
    expected: Mapping[str, tuple[tuple[int, ...], torch.dtype]],
    where: Path | str,
) -> None:
    """Names, shapes and safetensors dtype codes of ``found`` against those of the encoder."""
    problems = [f"{name} is missing" for name in expected if name not in found]
    problems += [f"unexpected tensor {name}" for name in found if name not in expected]
    for name, (shape, dtype) in expected.items():
        if name in found and found[name] != (shape, _SAFETENSORS_DTYPES[dtype]):
            problems.append(
                f"{name} is {found[name][1]} {list(found[name][0])}, expected "
                f"{_SAFETENSORS_DTYPES[dtype]} {list(shape)}"
            )
    if problems:
        raise IncompatibleModelError(
            f"the weights in {where} do not fit the encoder described by {CONFIG}: {'; '.join(problems[:5])}"
        )


def _read_weights(path: Path, expected: dict[str, tuple[tuple[int, ...], torch.dtype]]) -> dict[str, torch.Tensor]:
    """The tensors of ``path``, after checking their names, shapes and dtypes in its header."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    size = path.stat().st_size
    limit = _HEADER_BYTES + sum(math.prod(shape) * dtype.itemsize for shape, dtype in expected.values())
    if size > limit:
        raise IncompatibleModelError(f"{path} holds {size:,} bytes, more than the {limit:,} its encoder needs")
    try:
        with safe_open(str(path), framework="pt") as handle:
            found = {
                name: (tuple(handle.get_slice(name).get_shape()), handle.get_slice(name).get_dtype())
                for name in handle.keys()  # noqa: SIM118 (a safetensors handle, not a dict)
            }
    except (SafetensorError, OSError, ValueError) as exc:
        raise IncompatibleModelError(f"{path} is not a readable safetensors file: {exc}") from exc
    _check_tensors(found, expected, path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise IncompatibleModelError(f"{path} is not a readable safetensors file: {exc}") from exc


def encoder_from_state(config: EncoderConfig, state: Mapping[str, torch.Tensor], where: Path | str) -> SiteNetEncoder:
    """The encoder ``config`` describes, holding the weights ``state`` (CPU, eval mode).

    Raises
    ------
    IncompatibleModelError
        A tensor missing, unexpected, of another shape or dtype, or not finite;
        ``where`` names the weights in the message.
    """
    found = {name: (tuple(t.shape), _SAFETENSORS_DTYPES.get(t.dtype, str(t.dtype))) for name, t in state.items()}
    _check_tensors(found, _expected_tensors(config), where)
    not_finite = [name for name, tensor in state.items() if not torch.isfinite(tensor).all()]
    if not_finite:
        raise IncompatibleModelError(f"{where} holds NaN or infinite weights in {', '.join(not_finite[:5])}")
    encoder = SiteNetEncoder(config)
    encoder.load_state_dict(state, strict=True)
    return encoder.eval()


def load_encoder(path: str | os.PathLike) -> tuple[SiteNetEncoder, PointSetConfig, dict[str, Any]]:
    """Read a folder written by ``save_encoder``.

    Returns the encoder (CPU, eval mode), its point-set configuration and its
    provenance (the entries of ``PROVENANCE_FIELDS``).

    Raises
    ------
    FileNotFoundError
        ``path`` is not a folder holding both files.
    IncompatibleModelError
        Not a dim-sklearn encoder, a newer format, an oversized or too deeply
        nested config, a section out of range or of the wrong type, weights
        that do not fit the encoder the config describes, non-finite weights,
        or a damaged file.
    """
    folder = Path(path)
    for name in (CONFIG, WEIGHTS):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} is not a saved dim-sklearn encoder: {name} is missing")
    config, point_set, provenance = read_document(_read_json(folder / CONFIG), folder / CONFIG)
    state = _read_weights(folder / WEIGHTS, _expected_tensors(config))
    return encoder_from_state(config, state, folder / WEIGHTS), point_set, provenance
