"""Everything this pack needs from ComfyUI. The V3 node API (``comfy_api.latest``: ``io``, ``ui``,
``ComfyExtension``) is imported here for every node module; without ComfyUI the tests and the locale and
workflow builders provide it (tests/comfy_standin, see tools/load_pack.py). The rest is imported lazily with
a fallback so the nodes also run (and are tested) without ComfyUI: model folders, progress + preview,
cancellation, devices."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import torch
from comfy_api.latest import ComfyExtension, io, ui  # noqa: F401  (re-exported to the node modules)

ENCODER_FOLDER = "retrieval_encoders"
ENCODER_EXTENSIONS = {".pt", ".pth", ".safetensors"}


def _folder_paths():
    try:
        import folder_paths
        return folder_paths
    except ImportError:
        return None


def register_model_folders() -> None:
    """Add ComfyUI/models/retrieval_encoders (where ae_latent_mem.pt goes) to ComfyUI's folders."""
    fp = _folder_paths()
    if fp is None:
        return
    default = os.path.join(fp.models_dir, ENCODER_FOLDER)
    paths, extensions = fp.folder_names_and_paths.get(ENCODER_FOLDER, ([], set()))
    # extra_model_paths.yaml may have declared the folder already (without extensions)
    fp.folder_names_and_paths[ENCODER_FOLDER] = (paths + [default] * (default not in paths),
                                                 set(extensions) | ENCODER_EXTENSIONS)


def _fallback_dirs(kind: str) -> list[Path]:
    """Without ComfyUI: $LONGLIVE_RAG_MODELS/<kind> (default ./models/<kind>)."""
    return [Path(os.environ.get("LONGLIVE_RAG_MODELS", "models")) / kind]


def list_models(kind: str, extensions=(".pt", ".pth", ".safetensors", ".sft")) -> list[str]:
    fp = _folder_paths()
    if fp is not None:
        try:
            return [f for f in fp.get_filename_list(kind) if f.lower().endswith(tuple(extensions))]
        except KeyError:
            return []
    names = []
    for d in _fallback_dirs(kind):
        if d.is_dir():
            names += sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.suffix.lower() in extensions)
    return names


def model_path(kind: str, name: str) -> str:
    """Full path of a model file chosen in a node; clear error when it is gone."""
    fp = _folder_paths()
    if fp is not None:
        path = fp.get_full_path(kind, name)
        if path is None:
            raise FileNotFoundError(f"'{name}' is not in ComfyUI's '{kind}' model folder "
                                    f"({fp.get_folder_paths(kind)}); put the file there and refresh")
        return path
    for d in _fallback_dirs(kind):
        if (d / name).is_file():
            return str(d / name)
    raise FileNotFoundError(f"'{name}' not found in {[str(d) for d in _fallback_dirs(kind)]}")


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
def models_on_device(models: list, device: torch.device, bytes_needed: int, offload: bool):
    """Move ``models`` (None entries skipped) to ``device`` after asking ComfyUI for ``bytes_needed``;
    yield them; afterwards move them back to ComfyUI's offload device when ``offload`` and free the cache."""
    make_room(bytes_needed, device)
    moved = [m.to(device) if m is not None else None for m in models]
    try:
        yield moved
    finally:
        if offload:
            for m in moved:
                if m is not None:
                    m.to(offload_device())
        empty_cache()


def input_directory() -> str | None:
    """ComfyUI's input folder (relative node paths resolve there), or None without ComfyUI."""
    fp = _folder_paths()
    return fp.get_input_directory() if fp is not None else None


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
