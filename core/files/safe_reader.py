"""The one place ``core/`` opens a weights file: safetensors, weights-only pickles, model folders, shards.

Loaders in core/ (backbone, LoRA, VAE, text encoder, retrieval encoder, corpus) read through ``read_weights`` /
``read_state_dict`` so the safety rule and the error messages exist once:

- pickles are read only with ``torch.load(..., weights_only=True)``: a pickle that needs code to run is
  refused before any of it runs;
- the kind of a file comes from its first bytes (``.pt`` / ``.pth`` / ``.ckpt`` / ``.bin`` are used for
  everything), read once per file;
- missing, empty, truncated, corrupt and GGUF files each fail with a ``CheckpointError`` that names the
  file, what was found, what was expected and the fix.
"""
from __future__ import annotations

import json
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open


class CheckpointError(ValueError):
    """A weights file that cannot be used; the message says which file, what is wrong and the fix."""


@dataclass
class WeightsFile:
    """What one read produced. ``content`` is a tensor dict for safetensors and folders, else whatever the
    weights-only pickle holds; ``metadata`` is the safetensors header metadata; ``config`` a folder's
    config.json (both ``{}`` when absent)."""
    path: Path
    kind: str                   # "safetensors" | "torch_zip" | "torch_legacy" | "unknown" | "folder"
    content: object
    metadata: dict[str, str] = field(default_factory=dict)
    config: dict = field(default_factory=dict)


def is_state_dict(obj) -> bool:
    """A non-empty flat ``{name: tensor}`` dict."""
    return isinstance(obj, dict) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def sniff(path: Path) -> str:
    """File kind from its first 16 bytes (extensions lie)."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head[:4] == b"GGUF":
        return "gguf"
    if head[:2] == b"PK":
        return "torch_zip"
    if len(head) > 8 and head[8:9] == b"{":     # 8-byte header length, then the JSON header
        return "safetensors"
    if head[:1] == b"\x80":                     # pickle protocol opcode of a legacy torch.save
        return "torch_legacy"
    return "safetensors" if path.suffix in (".safetensors", ".sft") else "unknown"


def why_unreadable(exc: BaseException, echo: bool = True) -> str:
    """Why a library could not read a file, as one short clause in this pack's words: a known kind of damage
    (truncated, not JSON, a zip without its end, a pickle of something else), else (``echo``) the first sentence
    of the library's message when it is short and plain, else only the error's type. Never a multi-line dump,
    never a message cut mid-sentence, never the advice to turn the weights-only loader off."""
    text = " ".join(str(exc).split())
    low = text.lower()
    for needles, clause in _DAMAGE:
        if any(n in low for n in needles):
            return clause
    if isinstance(exc, EOFError):
        return _TRUNCATED
    if isinstance(exc, pickle.UnpicklingError):
        return "its contents are not a pickle of tensors"
    mismatch = re.search(r"size mismatch for ([\w.]+)", text)     # load_state_dict's many-line report
    if mismatch:
        return f"its tensor {mismatch.group(1)} has another shape than the model's"
    if "missing key" in low or "unexpected key" in low:
        return "its tensor names are not the model's"
    sentence = re.split(r"(?<=[.;!?])\s", text)[0].rstrip(".;:! ")
    if not echo or not sentence or len(sentence) > 120 or re.search(r"weights[_ ]only|pickle|\bload\b", sentence, re.I):
        return f"it cannot be read ({type(exc).__name__})"
    return sentence


_TRUNCATED = "it is truncated (it ends before its data does)"
_DAMAGE = (   # (phrases of torch's, zipfile's or safetensors' messages, what they mean), first match wins
    (("central directory", "not a zip file", "zip archive", "zipfile"), "it is truncated (its zip archive has no "
                                                                       "end)"),
    (("unexpected eof", "ran out of input", "end of file", "file not fully covered", "incomplete metadata",
      "header too small", "truncated"), _TRUNCATED),
    (("invalid json", "expected value", "utf-8", "utf8", "key must be a string"), "its header is not valid JSON"),
    (("header too large", "metadata too large"), "its header states an impossible size"),
    (("unsupported operand", "unpickler", "invalid load key", "magic number"), "its contents are not a pickle of "
                                                                                 "tensors"),
)


# safetensors header dtypes → torch (others are read as float32 meta tensors: only their shapes matter)
_HEADER_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                  "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "I64": torch.int64,
                  "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}


def _meta(fh, key: str) -> torch.Tensor:
    part = fh.get_slice(key)
    return torch.empty(part.get_shape(), device="meta", dtype=_HEADER_DTYPES.get(part.get_dtype(), torch.float32))


def _read_safetensors(path: Path, what: str, shapes_only: bool) -> tuple[dict, dict[str, str]]:
    """(tensors, header metadata). shapes_only: meta tensors of the stored shapes and dtypes (reads the header
    only)."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            if shapes_only:
                tensors = {k: _meta(fh, k) for k in fh.keys()}
            else:
                tensors = {k: fh.get_tensor(k) for k in fh.keys()}
            return tensors, dict(fh.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{what} '{path}' is a damaged .safetensors file: {why_unreadable(exc, echo=False)}; "
                              "download it again") from exc


def _read_pickle(path: Path, what: str, kind: str, mmap: bool):
    try:
        # mmap: a Self-Forcing file holds two full models; only the tensors used are ever read from disk.
        return torch.load(path, map_location="cpu", weights_only=True,
                          mmap=mmap and kind == "torch_zip" and zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        # weights_only refuses both Python objects (globals, reduce calls: code to run) and garbage opcodes.
        detail = str(exc).split("error:")[-1]
        if "weights only" in str(exc).lower() and re.search(r"global|reduce|class", detail, re.I):
            found = re.search(r"GLOBAL ([\w.]+)", str(exc))
            needs = f" (it references {found.group(1)})" if found else ""
            raise CheckpointError(
                f"{what} '{path}' is a pickle that needs Python code execution to load{needs}; refusing: only "
                "weights-only pickles are read. Re-save its state dict (torch.save(model.state_dict(), ...)) or "
                "convert it to .safetensors") from exc
        raise _damaged(path, what, kind, exc) from exc
    except Exception as exc:  # torch raises RuntimeError/EOFError/KeyError/zip errors for damaged files
        raise _damaged(path, what, kind, exc) from exc


def _damaged(path: Path, what: str, kind: str, exc: BaseException) -> CheckpointError:
    """A pickle that torch could not read: a file of no known format, or a damaged torch checkpoint."""
    if kind == "unknown":
        return CheckpointError(f"{what} '{path}' is not a checkpoint: its first bytes are neither a .safetensors "
                               "header nor a torch .pt/.pth file; check that the path names the model file and that "
                               "its download finished")
    return CheckpointError(f"{what} '{path}' is a damaged torch checkpoint: {why_unreadable(exc, echo=False)}; "
                           "download it again")


def _read_one_file(path: Path, what: str, mmap: bool, shapes_only: bool) -> WeightsFile:
    try:
        size, kind = path.stat().st_size, sniff(path)
    except OSError as exc:
        raise CheckpointError(f"{what} '{path}' cannot be opened ({type(exc).__name__}: {exc}); check that it is a "
                              "file you may read") from exc
    if size == 0:
        raise CheckpointError(f"{what} '{path}' is empty (0 bytes); the download was interrupted — "
                              "download it again")
    if kind == "gguf":
        raise CheckpointError(f"{what} '{path}' is a GGUF-quantised file, which is not supported; use the fp16, bf16 "
                              "or fp8 .safetensors of the same model")
    if kind == "safetensors":
        tensors, metadata = _read_safetensors(path, what, shapes_only)
        return WeightsFile(path, kind, tensors, metadata)
    return WeightsFile(path, kind, _read_pickle(path, what, kind, mmap))


def read_weights(path: str | Path, what: str, *, mmap: bool = False, shapes_only: bool = False,
                 hint: str = "") -> WeightsFile:
    """Read a weights file or a model folder once, safely.

    what: how the caller names the file in errors ("backbone", "LoRA", "VAE", ...). mmap: map a zip pickle's
    tensors instead of reading them (the caller must copy what it keeps). shapes_only: safetensors give
    meta tensors (no weight is read; pickles are read in full). hint: where such files usually live, added
    to the "does not exist" error.
    """
    path = Path(path)
    if not path.exists():
        where = f" ({hint})" if hint else ""
        raise CheckpointError(f"{what} '{path}' does not exist; check the path{where}")
    if path.is_dir():
        return _read_folder(path, what, mmap, shapes_only)
    return _read_one_file(path, what, mmap, shapes_only)


def read_json(path: Path, what: str) -> dict:
    """A small JSON side file (config.json, a shard index) of a model folder."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{what} '{path.parent}': {path.name} is not valid JSON ({exc}); restore it from the "
                              "model's download page") from exc


# ------------------------------------------------------------------------------------------ folders
def _folder_files(path: Path, what: str) -> tuple[Path, list[Path], dict, str | None]:
    """A Wan2.1 or diffusers model folder → (folder, weight files, index weight_map, index file name)."""
    folder = path / "transformer" if (path / "transformer").is_dir() else path
    index = sorted(folder.glob("*.safetensors.index.json")) or sorted(folder.glob("*.bin.index.json"))
    if index:
        weight_map = read_json(index[0], what).get("weight_map", {})
        files = [folder / name for name in sorted(set(weight_map.values()))]
        for f in files:
            if not f.exists():
                raise CheckpointError(f"{what} '{path}': shard '{f.name}' listed in {index[0].name} is missing; "
                                      "download the complete folder")
        return folder, files, weight_map, index[0].name
    files = (sorted(folder.glob("diffusion_pytorch_model*.safetensors")) or sorted(folder.glob("*.safetensors"))
             or sorted(folder.glob("diffusion_pytorch_model*.bin")))
    if not files:
        raise CheckpointError(f"{what} '{path}' is a folder without model weights; expected a Wan2.1 or diffusers "
                              "transformer folder (config.json + diffusion_pytorch_model*.safetensors)")
    return folder, files, {}, None


def _read_folder(path: Path, what: str, mmap: bool, shapes_only: bool) -> WeightsFile:
    """All shards of a model folder as one state dict, plus its config.json ({} when absent)."""
    folder, files, weight_map, index = _folder_files(path, what)
    config = read_json(folder / "config.json", what) if (folder / "config.json").is_file() else {}
    state: dict = {}
    for f in files:
        part = _read_one_file(f, what, mmap, shapes_only).content
        if not is_state_dict(part):
            raise CheckpointError(f"{what} '{path}': '{f.name}' does not hold a flat state dict of tensors; "
                                  "download the complete folder again")
        state.update(part)
    absent = sorted(set(weight_map) - set(state))
    if absent:
        raise CheckpointError(f"{what} '{path}': {len(absent)} tensors listed in {index} are absent from the "
                              f"shards (e.g. {absent[:3]}); download the complete folder")
    return WeightsFile(path, "folder", state, config=config)


def read_state_dict(path: str | Path, what: str, *, mmap: bool = False, containers: tuple[str, ...] = (),
                    expected: str = "a state dict") -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` dict from a file or folder; ``containers`` are top-level keys it may sit under
    (e.g. ``("state_dict",)``). Raises CheckpointError naming ``expected`` otherwise."""
    obj = read_weights(path, what, mmap=mmap).content
    for key in containers:
        if isinstance(obj, dict) and is_state_dict(obj.get(key)):
            obj = obj[key]
            break
    if not is_state_dict(obj):
        found = sorted(map(str, obj))[:6] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{what} '{path}' does not hold a flat state dict of tensors (found {found}); "
                              f"expected {expected}")
    return obj
