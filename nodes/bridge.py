"""Everything this pack needs from ComfyUI. The V3 node API (``comfy_api.latest``: ``io``, ``ui``,
``ComfyExtension``) is imported here for every node module; without ComfyUI the tests and the locale and
workflow builders provide it (tests/comfy_standin, see tools/load_pack.py). The rest is imported lazily with
a fallback so the nodes also run (and are tested) without ComfyUI: model folders, progress + preview,
cancellation, devices.

Files: a workflow names a file only by its name in one of ComfyUI's folders (a combo of that folder's files,
resolved through ``folder_paths``); a name that is absolute or holds '..' is refused, and in the folders that
ordinary users can write to (``CONFINED``) so is a link leading out of the folder. The History Pool's disk files
go to a server-side folder (``pool_directory``), never to one a workflow names."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

from ..core.model.block_swap import swap_blocks, unswap_blocks
from comfy_api.latest import ComfyExtension, io, ui  # noqa: F401  (re-exported to the node modules)

ENCODER_FOLDER = "retrieval_encoders"
ENCODER_EXTENSIONS = {".pt", ".pth", ".safetensors"}
EMBEDS_FOLDER = "prompt_embeds"        # ComfyUI's input folder + models/prompt_embeds
EMBEDS_EXTENSIONS = {".safetensors"}
# Folders a link may not lead out of. The model folders may (ComfyUI follows links there: weights are often
# linked from a shared store, and only the server's owner puts files there); the input folder is filled by uploads.
CONFINED = {EMBEDS_FOLDER}
POOL_DIR_ENV = "LONGLIVE_RAG_POOL_DIR"     # the History Pool's disk folder, set by the server's owner
POOL_FOLDER = "longlive_rag_pool"          # or this key in extra_model_paths.yaml


def _folder_paths():
    try:
        import folder_paths
        return folder_paths
    except ImportError:
        return None


def _add_folder(fp, kind: str, defaults: list[str], extensions: set[str]) -> None:
    paths, known = fp.folder_names_and_paths.get(kind, ([], set()))
    # extra_model_paths.yaml may have declared the folder already (without extensions)
    fp.folder_names_and_paths[kind] = (paths + [d for d in defaults if d not in paths], set(known) | extensions)


def register_model_folders() -> None:
    """Add ComfyUI/models/retrieval_encoders (where ae_latent_mem.pt goes) and the prompt_embeds folder (ComfyUI's
    input folder, then models/prompt_embeds) to ComfyUI's folders."""
    fp = _folder_paths()
    if fp is None:
        return
    _add_folder(fp, ENCODER_FOLDER, [os.path.join(fp.models_dir, ENCODER_FOLDER)], ENCODER_EXTENSIONS)
    _add_folder(fp, EMBEDS_FOLDER, [fp.get_input_directory(), os.path.join(fp.models_dir, EMBEDS_FOLDER)],
                EMBEDS_EXTENSIONS)


def _fallback_dirs(kind: str) -> list[Path]:
    """Without ComfyUI: $LONGLIVE_RAG_MODELS/<kind> (default ./models/<kind>)."""
    return [Path(os.environ.get("LONGLIVE_RAG_MODELS", "models")) / kind]


def folder_roots(kind: str) -> list[str]:
    """The folders of ComfyUI's ``kind`` (``folder_paths``), or the fallback ones without ComfyUI."""
    fp = _folder_paths()
    if fp is None:
        return [str(d) for d in _fallback_dirs(kind)]
    try:
        return fp.get_folder_paths(kind)
    except KeyError:
        return []


def list_models(kind: str, extensions=(".pt", ".pth", ".safetensors", ".sft")) -> list[str]:
    """The file names a node's combo offers from ComfyUI's ``kind`` folder; none that a node would refuse."""
    fp = _folder_paths()
    if fp is not None:
        try:
            names = [f for f in fp.get_filename_list(kind) if f.lower().endswith(tuple(extensions))]
        except KeyError:
            return []
    else:
        names = sorted({str(p.relative_to(d)) for d in _fallback_dirs(kind) if d.is_dir() for p in d.rglob("*")
                        if p.suffix.lower() in extensions})
    if kind in CONFINED:
        names = [n for n in names if _link_out(n, folder_roots(kind)) is None]
    return names


def check_name(kind: str, name: str) -> None:
    """Refuse a file name that is not a plain relative name inside a folder: absolute, a drive, or with '..'."""
    parts = str(name).replace("\\", "/").split("/")
    if not str(name).strip() or os.path.isabs(name) or str(name).startswith(("/", "\\")) \
            or os.path.splitdrive(name)[0] or ".." in parts:
        raise PermissionError(f"'{name}' is not a file name inside ComfyUI's '{kind}' folder: a name there is "
                              "relative and holds no '..'; choose a file from the list (put the file in the "
                              "folder first)")


def _link_out(name: str, roots: list[str]) -> str | None:
    """The first of ``roots`` in which ``name`` exists (even as a broken link) but leads outside it, else None."""
    for root in roots:
        candidate = os.path.join(root, name)
        if os.path.lexists(candidate) and not _inside(os.path.realpath(candidate), os.path.realpath(root)):
            return root
    return None


def _inside(path: str, folder: str) -> bool:
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:          # another drive
        return False


def model_path(kind: str, name: str) -> str:
    """Full path of the file a node's combo chose in ComfyUI's ``kind`` folder. Refused: a name that is not a plain
    relative name (``check_name``) and, in a ``CONFINED`` folder, a link leading out of the folder. Errors name
    only ``name`` and the folder's name, never what lies outside the folder."""
    check_name(kind, name)
    if kind in CONFINED and _link_out(name, folder_roots(kind)) is not None:
        raise PermissionError(f"'{name}' in ComfyUI's '{kind}' folder is a link that leads outside the folder, "
                              "which this node does not follow; copy the file itself into the folder")
    fp = _folder_paths()
    if fp is not None:
        path = fp.get_full_path(kind, name)
        if path is None:
            raise FileNotFoundError(f"'{name}' is not in ComfyUI's '{kind}' folder; put the file there and "
                                    "refresh the page (R)")
        return path
    for d in _fallback_dirs(kind):
        if (d / name).is_file():
            return str(d / name)
    raise FileNotFoundError(f"'{name}' is not in the '{kind}' folder ($LONGLIVE_RAG_MODELS/{kind} without "
                            "ComfyUI); put the file there")


def pool_directory() -> str:
    """The History Pool's disk folder: $LONGLIVE_RAG_POOL_DIR, else the ``longlive_rag_pool`` folder of
    extra_model_paths.yaml, else ComfyUI's temp folder (emptied when ComfyUI starts and stops; the system temp
    folder without ComfyUI). A folder the server's owner set must exist: nothing is created outside it."""
    fp = _folder_paths()
    chosen, setting = os.environ.get(POOL_DIR_ENV, "").strip(), POOL_DIR_ENV
    if not chosen and fp is not None and fp.folder_names_and_paths.get(POOL_FOLDER, ([],))[0]:
        chosen, setting = fp.folder_names_and_paths[POOL_FOLDER][0][0], f"extra_model_paths.yaml '{POOL_FOLDER}'"
    if chosen:
        if not os.path.isdir(chosen):
            raise FileNotFoundError(f"the History Pool folder set by {setting} on the server is not an existing "
                                    "folder; create it, or unset it to use ComfyUI's temp folder")
        return os.path.abspath(chosen)
    if fp is None:
        return tempfile.gettempdir()
    os.makedirs(fp.get_temp_directory(), exist_ok=True)       # ComfyUI's own folder (it makes it at start)
    return fp.get_temp_directory()


def compute_device() -> torch.device:
    try:
        import comfy.model_management as mm
        return mm.get_torch_device()
    except ImportError:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def offload_device() -> torch.device:
    try:
        import comfy.model_management as mm
        return mm.unet_offload_device()
    except ImportError:
        return torch.device("cpu")


def device_room(device: torch.device) -> int | None:
    """The most a run may use on ``device`` inside ComfyUI: a GPU's whole memory (ComfyUI unloads its own models
    to make room), or None (without ComfyUI, or on the CPU: what is free is measured)."""
    if torch.device(device).type != "cuda":
        return None
    try:
        import comfy.model_management as mm
    except ImportError:
        return None
    return int(mm.get_total_memory(device))


def make_room(bytes_needed: int, device: torch.device) -> None:
    """Ask ComfyUI to unload its own models (e.g. the text encoder) until ``bytes_needed`` fit on device;
    our backbone is not managed by ComfyUI, so it would not do this by itself."""
    if device.type != "cuda":
        return
    try:
        import comfy.model_management as mm
    except ImportError:
        return
    mm.free_memory(bytes_needed, device)


@contextmanager
def models_on_device(models: list, device: torch.device, bytes_needed: int, offload: bool, block_swap: int = 0):
    """Move ``models`` (None entries skipped) to ``device`` after asking ComfyUI for ``bytes_needed``;
    yield them; afterwards move them back to ComfyUI's offload device when ``offload`` and free the cache.
    ``block_swap``: the first model (the backbone) keeps that many blocks' weights in RAM, streamed to the device
    as they are used (core/model/block_swap.py); afterwards they all go back to the offload device."""
    make_room(bytes_needed, device)
    moved = [m if m is None else m.to(device) if i or not block_swap else _swapped(m, block_swap, device)
             for i, m in enumerate(models)]
    try:
        yield moved
    finally:
        for i, m in enumerate(moved):
            if m is None:
                continue
            if i == 0 and block_swap:
                unswap_blocks(m, offload_device())      # never every block onto a device too small for them
            elif offload:
                m.to(offload_device())
        empty_cache()


def _swapped(model, blocks: int, device: torch.device):
    swap_blocks(model, blocks, device)
    return model


class WanStreamingDecoder:
    """ComfyUI's causal Wan VAE decoder (Wan2.1 ``comfy.ldm.wan.vae``, Wan2.2 ``vae2_2``) run one latent frame at
    a time, its temporal cache carried from chunk to chunk: what its own ``decode`` does in one call."""

    def __init__(self, vae, conv3d_count: int, unpatchify=None):
        self.vae, self.fsm = vae, vae.first_stage_model
        self.conv3d_count, self.unpatchify = conv3d_count, unpatchify      # Wan2.2: 2x2 pixel patches, un-done here

    def new_cache(self) -> list:
        return [None] * self.conv3d_count

    def decode(self, z: torch.Tensor, cache: list, first: bool) -> torch.Tensor:
        """Raw latents [1, C, n, H, W] that follow what ``cache`` has seen (``first``: they begin the video) →
        pixels [1, 3, T, H', W'] in 0..1, float32 on the CPU."""
        x = self.fsm.conv2(z.to(self.vae.device, self.vae.vae_dtype))
        pieces = []
        for i in range(x.shape[2]):
            first_chunk = {"first_chunk": True} if self.unpatchify is not None and first and i == 0 else {}
            out = self.fsm.decoder(x[:, :, i:i + 1], feat_cache=cache, feat_idx=[0], **first_chunk)
            if self.unpatchify is not None:
                out = self.unpatchify(out, patch_size=2)
            pieces.append(self.vae.process_output(out.float()).cpu())
        return torch.cat(pieces, 2)


def wan_streaming_decoder(vae) -> WanStreamingDecoder | None:
    """A streaming decoder when ``vae`` is ComfyUI's causal Wan2.1 or Wan2.2 VAE, else None."""
    fsm = getattr(vae, "first_stage_model", None)
    if fsm is None or not all(hasattr(fsm, a) for a in ("decoder", "conv2")):
        return None
    try:
        from comfy.ldm.wan import vae as wan21, vae2_2 as wan22
    except ImportError:
        return None
    if isinstance(fsm, wan22.WanVAE):
        return WanStreamingDecoder(vae, wan22.count_conv3d(fsm.decoder), wan22.unpatchify)
    if isinstance(fsm, wan21.WanVAE):
        return WanStreamingDecoder(vae, wan21.count_conv3d(fsm.decoder))
    return None


def vae_latent_channels(vae) -> int | None:
    """The latent channels a ComfyUI VAE works in (16 Wan2.1, 48 Wan2.2), when it says."""
    channels = getattr(vae, "latent_channels", None)
    return channels if isinstance(channels, int) else None


def load_vae_for_decode(vae, latent_shape: tuple) -> None:
    """Ask ComfyUI to load the VAE on its device with room to decode a latent chunk of ``latent_shape``."""
    import comfy.model_management as mm
    mm.load_models_gpu([vae.patcher], memory_required=vae.memory_used_decode(latent_shape, vae.vae_dtype))


def empty_cache() -> None:
    try:
        import comfy.model_management as mm
        mm.soft_empty_cache()
    except ImportError:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def check_interrupted() -> None:
    """Raise ComfyUI's interrupt exception when the user pressed Cancel."""
    try:
        import comfy.model_management as mm
    except ImportError:
        return
    mm.throw_exception_if_processing_interrupted()


class Progress:
    """Per-block progress bar with a latent preview (ComfyUI) or nothing (headless)."""

    def __init__(self, total: int, latent_type: str):
        """``latent_type``: ComfyUI's latent format of the run (``LatentFormat.comfy_latent``, e.g. "Wan22"); a
        name ComfyUI does not know gives a bar without previews."""
        self.total = total
        try:
            import comfy.utils
            import latent_preview
            from comfy import latent_formats
            self.bar = comfy.utils.ProgressBar(total)
            # ComfyUI's own latent formats: their latent_rgb_factors (or a TAE) turn a latent frame into a preview
            fmt = getattr(latent_formats, latent_type, None)
            self.previewer = latent_preview.get_previewer(compute_device(), fmt()) if fmt is not None else None
        except ImportError:
            self.bar, self.previewer = None, None

    def update(self, done: int, x0_model_space: torch.Tensor | None = None) -> None:
        """x0 [B, C, F, H, W] in model space (what ComfyUI's Wan previewer expects); the last frame is shown."""
        if self.bar is None:
            return
        preview = None
        if self.previewer is not None and x0_model_space is not None:
            preview = self.previewer.decode_latent_to_preview_image("JPEG", x0_model_space[:1, :, -1:].float())
        self.bar.update_absolute(done, self.total, preview)

    def on_block(self, update) -> None:
        """``generate`` callback: advance, show the block's newest frame, stop if the user cancelled."""
        self.update(update.block + 1, update.x0.permute(0, 2, 1, 3, 4))
        check_interrupted()


# ------------------------------------------------------------------ a MODEL from ComfyUI's loaders
def diffusion_model(model):
    """The diffusion model inside a ComfyUI MODEL (a ModelPatcher), or None when ``model`` is not one."""
    inner = getattr(model, "model", None)
    return getattr(inner, "diffusion_model", None)


def model_compute(model) -> tuple[torch.device, torch.dtype]:
    """Where and in which dtype ComfyUI runs a MODEL: its load device, and its manual-cast dtype (fp8, GGUF and
    other stored dtypes are cast to it per layer) or else its weights' dtype."""
    inner = model.model
    dtype = getattr(inner, "manual_cast_dtype", None) or inner.get_dtype()
    return torch.device(model.load_device), dtype


def load_managed(model, extra_bytes: int) -> str:
    """Ask ComfyUI's model management to load the MODEL for a run that needs ``extra_bytes`` on the device
    besides the weights (cache, context, activations): it frees other models, loads the weights fully, partially
    (the rest cast from RAM per layer) or as its memory manager streams them. Returns what it did, in words."""
    try:
        import comfy.model_management as mm
    except ImportError:
        return "weights where the MODEL keeps them"
    mm.load_models_gpu([model], memory_required=extra_bytes)
    loaded, total = model.loaded_size(), model.model_size()
    device = torch.device(model.load_device)
    if getattr(model.model, "model_lowvram", False):
        how = (f"partially: {loaded / 2**30:.2f} of {total / 2**30:.2f} GiB on {device}, the other layers cast "
               "from RAM per call")
    elif device.type == "cpu":
        how = "in RAM (the CPU computes)"
    elif loaded >= total:
        how = f"fully on {device}"
    else:
        how = f"partially: {loaded / 2**30:.2f} of {total / 2**30:.2f} GiB on {device}, the rest cast from RAM per call"
    return f"ComfyUI loaded the MODEL {how}; asked to keep {extra_bytes / 2**30:.2f} GiB free for the run"


def model_identity(model) -> str:
    """What makes a MODEL's outputs differ: the diffusion model object and its patches (LoRAs and other weight
    patches, with their strengths), for the continue memo's run identity."""
    patches = getattr(model, "patches", None) or {}
    return (f"ComfyUI MODEL {id(diffusion_model(model)):x}, "
            + (f"patches {getattr(model, 'patches_uuid', '?')}" if patches else "no patches"))


def plain_linear(layer) -> bool:
    """Whether a ComfyUI Linear layer runs as a plain Linear would: its weight a plain tensor used as it is (no
    per-call cast, de-quantisation or weight patch), as after a full load with LoRA patches merged."""
    weight = getattr(layer, "weight", None)
    return (type(weight) in (torch.Tensor, torch.nn.Parameter) and not getattr(layer, "comfy_cast_weights", False)
            and not getattr(layer, "weight_function", None) and not getattr(layer, "bias_function", None))
