"""Saving and loading a trained Site-Net encoder, safely.

A saved encoder is a folder with two files:

- ``encoder.safetensors``: the weights (safetensors: plain tensors, nothing
  executed on load);
- ``config.json``: the format and its version, the encoder widths, the
  estimator's parameters and training history, and the versions of
  dim-sklearn, torch and pymatgen that wrote it.

Loading treats both files as untrusted and checks them before anything is
allocated: the JSON's size and nesting depth are bounded before it is parsed;
every field of the encoder section is checked for type and range (widths at
most :data:`MAX_WIDTH`); the names, shapes and dtypes of the tensors are read
from the safetensors header and compared with the encoder the JSON describes;
the weights must be finite. Any failure raises :class:`IncompatibleModelError`
naming the file.
"""

from __future__ import annotations

import json
import math
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .exceptions import IncompatibleModelError
from .nn import EncoderConfig, SiteNetEncoder

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_CONFIG_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_RBF",
    "MAX_WIDTH",
    "IncompatibleModelError",
    "load_encoder",
    "save_encoder",
]

FORMAT = "dim-sklearn Site-Net encoder"
FORMAT_VERSION = 1
WEIGHTS = "encoder.safetensors"
CONFIG = "config.json"

MAX_WIDTH = 1024
"""Largest width of any encoder layer a saved model may ask for (the compact encoder's largest is 128)."""
MAX_RBF = 256
"""Largest number of radial basis functions a saved model may ask for."""
MAX_CONFIG_BYTES = 4 * 2**20
"""Largest ``config.json`` read (one with 100 epochs of history takes about 100 kB)."""
MAX_JSON_DEPTH = 32
"""Deepest nesting of lists and objects accepted in ``config.json``."""
_HEADER_BYTES = 2**20
"""Allowance for the safetensors header on top of the tensors' own bytes."""
_SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
                       torch.int64: "I64"}


def _versions() -> dict[str, str]:
    out = {}
    for package in ("dim-sklearn", "torch", "pymatgen"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "unknown"
    return out


def save_encoder(path: str | os.PathLike, encoder: SiteNetEncoder, metadata: dict[str, Any]) -> Path:
    """Write ``encoder`` and JSON-serialisable ``metadata`` to the folder ``path`` (created if needed)."""
    from safetensors.torch import save_file

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "encoder": encoder.config.to_dict(),
        "versions": _versions(),
        **metadata,
    }
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in encoder.state_dict().items()}
    save_file(state, str(folder / WEIGHTS), metadata={"format": FORMAT})
    (folder / CONFIG).write_text(json.dumps(config, indent=2))
    return folder


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``, read with bounded size and nesting depth.

    Raises
    ------
    IncompatibleModelError
        Larger than :data:`MAX_CONFIG_BYTES`, nested deeper than
        :data:`MAX_JSON_DEPTH`, not UTF-8 JSON, or not an object.
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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _encoder_config(section: Any, where: Path) -> EncoderConfig:
    """The encoder section checked field by field (type, range) before anything is built."""
    if not isinstance(section, dict):
        raise IncompatibleModelError(f"{where} has no encoder section")
    fields = EncoderConfig.__dataclass_fields__
    unknown = sorted(set(section) - set(fields))
    if unknown:
        raise IncompatibleModelError(f"{where}: unknown encoder field(s) {', '.join(map(str, unknown))}")
    problems = []
    for name in ("n_site_features", "width", "local_dim", "global_width", "global_dim"):
        value = section.get(name, fields[name].default)
        if not (_is_int(value) and 1 <= value <= MAX_WIDTH):
            problems.append(f"{name} must be an integer from 1 to {MAX_WIDTH}, got {value!r}")
    n_rbf = section.get("n_rbf", 0)  # files written before the radial-basis option hold raw-distance encoders
    if not (_is_int(n_rbf) and (n_rbf == 0 or 2 <= n_rbf <= MAX_RBF)):
        problems.append(f"n_rbf must be 0 or an integer from 2 to {MAX_RBF}, got {n_rbf!r}")
    cutoff = section.get("rbf_cutoff", fields["rbf_cutoff"].default)
    if not (isinstance(cutoff, (int, float)) and not isinstance(cutoff, bool) and math.isfinite(cutoff) and cutoff > 0):
        problems.append(f"rbf_cutoff must be a finite number > 0, got {cutoff!r}")
    if problems:
        raise IncompatibleModelError(f"{where} has an unusable encoder section: {'; '.join(problems)}")
    return EncoderConfig(**{**section, "n_rbf": n_rbf})


def _expected_tensors(config: EncoderConfig) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Name -> (shape, dtype) of the encoder's weights, from a skeleton on the meta device (nothing allocated)."""
    with torch.device("meta"):
        skeleton = SiteNetEncoder(config)
    return {name: (tuple(t.shape), t.dtype) for name, t in skeleton.state_dict().items()}


def _read_weights(path: Path, expected: dict[str, tuple[tuple[int, ...], torch.dtype]]) -> dict[str, torch.Tensor]:
    """The tensors of ``path``, after checking their names, shapes and dtypes in its header, and their values."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    size = path.stat().st_size
    limit = _HEADER_BYTES + sum(math.prod(shape) * dtype.itemsize for shape, dtype in expected.values())
    if size > limit:
        raise IncompatibleModelError(f"{path} holds {size:,} bytes, more than the {limit:,} its encoder needs")
    try:
        with safe_open(str(path), framework="pt") as handle:
            found = {name: (tuple(handle.get_slice(name).get_shape()), handle.get_slice(name).get_dtype())
                     for name in handle.keys()}  # noqa: SIM118 (a safetensors handle, not a dict)
    except (SafetensorError, OSError, ValueError) as exc:
        raise IncompatibleModelError(f"{path} is not a readable safetensors file: {exc}") from exc
    problems = [f"{name} is missing" for name in expected if name not in found]
    problems += [f"unexpected tensor {name}" for name in found if name not in expected]
    for name, (shape, dtype) in expected.items():
        if name in found and found[name] != (shape, _SAFETENSORS_DTYPES[dtype]):
            problems.append(f"{name} is {found[name][1]} {list(found[name][0])}, expected "
                            f"{_SAFETENSORS_DTYPES[dtype]} {list(shape)}")
    if problems:
        raise IncompatibleModelError(
            f"the weights in {path} do not fit the encoder described by {CONFIG}: {'; '.join(problems[:5])}"
        )
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise IncompatibleModelError(f"{path} is not a readable safetensors file: {exc}") from exc
    not_finite = [name for name, tensor in state.items() if not torch.isfinite(tensor).all()]
    if not_finite:
        raise IncompatibleModelError(f"{path} holds NaN or infinite weights in {', '.join(not_finite[:5])}")
    return state


def load_encoder(path: str | os.PathLike) -> tuple[SiteNetEncoder, dict[str, Any]]:
    """Read a folder written by :func:`save_encoder`; returns the encoder (CPU, eval mode) and the config dict.

    Only the format fields and the encoder section of the config are checked
    here; the caller checks the sections it reads (the estimator's parameters).

    Raises
    ------
    FileNotFoundError
        ``path`` is not a folder holding both files.
    IncompatibleModelError
        Not a dim-sklearn encoder, a newer format, an oversized or too deeply
        nested config, an encoder section out of range, weights that do not fit
        the encoder the config describes, non-finite weights, or a damaged file.
    """
    folder = Path(path)
    for name in (CONFIG, WEIGHTS):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} is not a saved dim-sklearn encoder: {name} is missing")
    config = _read_json(folder / CONFIG)
    if config.get("format") != FORMAT:
        raise IncompatibleModelError(f"{folder / CONFIG} does not describe a {FORMAT}")
    if config.get("format_version") != FORMAT_VERSION:
        versions = config.get("versions")
        writer = versions.get("dim-sklearn") if isinstance(versions, dict) else None
        writer = writer[:40] if isinstance(writer, str) else "an unknown version"
        raise IncompatibleModelError(
            f"{folder} has format version {config.get('format_version')!r:.40}; this dim-sklearn reads version "
            f"{FORMAT_VERSION} (written by {writer})"
        )
    encoder_config = _encoder_config(config.get("encoder"), folder / CONFIG)
    state = _read_weights(folder / WEIGHTS, _expected_tensors(encoder_config))
    encoder = SiteNetEncoder(encoder_config)
    encoder.load_state_dict(state, strict=True)
    return encoder.eval(), config
