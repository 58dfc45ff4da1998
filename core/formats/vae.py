"""The Wan VAE decoder (and encoder): model-space latents [B, C, T, H, W] ↔ video in [0, 1].

Two VAEs (core/latents/format.py): Wan2.1's (16 channels, 8× spatial) for the Wan2.1 backbones and
Wan2.2's (48 channels, 16× spatial: a 2×2 patchified residual VAE) for Wan2.2-TI2V-5B / LongLive 2.0.
Runs as diffusers' ``AutoencoderKLWan``. Loads, never downloads:

- Wan's original ``Wan2.1_VAE.pth`` (or ComfyUI's ``wan_2.1_vae.safetensors``, the same names):
  renamed with diffusers' own ``convert_wan_vae_to_diffusers``;
- the diffusers layout: a ``vae/`` folder (config.json + diffusion_pytorch_model.safetensors),
  or a single .safetensors file with diffusers names (Wan2.1 or Wan2.2, the sizes read from the weights);
- Wan2.2's original ``Wan2.2_VAE.pth`` (ComfyUI's ``wan2.2_vae.safetensors``, the same names): renamed
  here (``wan22_vae_to_diffusers``).

The decoder is causal in time with a feature cache (the last two frames of every causal conv), so a
video is decoded one latent frame at a time — exactly as Wan and ``AutoencoderKLWan.decode`` do —
and every decoded piece goes to the CPU at once: the device only ever holds one latent frame's
activations and the cache. ``StreamingDecoder`` keeps that cache between calls, so latents can be
decoded block by block as the AR loop produces them, with no seams.
"""
from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Iterator

import torch

from ..files.safe_reader import read_state_dict, why_unreadable
from ..latents.format import WAN21, WAN22, LatentFormat, format_for_channels, to_model_space, to_raw_space
from .text_encoder import MissingModelFiles

WAN_VAE_FILE = WAN21.vae_original
DIFFUSERS_VAE_WEIGHTS = "diffusion_pytorch_model.safetensors"
WAN_REPO = "Wan-AI/Wan2.1-T2V-1.3B"
DIFFUSERS_REPO = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
WAN22_REPO = "Wan-AI/Wan2.2-TI2V-5B"
WAN22_DIFFUSERS_REPO = "Wan-AI/Wan2.2-TI2V-5B-Diffusers"
REPOS = {WAN21: WAN_REPO, WAN22: WAN22_REPO}          # where each VAE's original file is published
_WAN22_PROBE = "decoder.upsamples.0.upsamples.0.residual.0.gamma"   # only Wan2.2's original names have it
_WAN_PROBE = "decoder.middle.0.residual.0.gamma"          # a key only Wan's names have
_DIFFUSERS_PROBE = "decoder.mid_block.resnets.0.norm1.gamma"
_PREFIXES = ("model.", "vae.", "first_stage_model.")


# ---------------------------------------------------------------------------------------------
# Finding and reading the weights

def _missing(path: Path, missing: list[Path]) -> MissingModelFiles:
    folder = path if path.suffix == "" else path.parent
    either = " (one of the two layouts is enough)" if len(missing) == 3 else ""
    lines = [f"Wan2.1 VAE not found at '{path}'. Missing{either}:"] + [f"  {p}" for p in missing]
    lines += ["Put it there in one of the two layouts:",
              f"  (a) original Wan file {folder}/{WAN_VAE_FILE}:",
              f"      hf download {WAN_REPO} {WAN_VAE_FILE} --local-dir {folder}",
              f"  (b) diffusers folder {folder}/vae/ (config.json + {DIFFUSERS_VAE_WEIGHTS}):",
              f"      hf download {DIFFUSERS_REPO} --include 'vae/*' --local-dir {folder}",
              f"  (ComfyUI's models/vae/{WAN21.vae_file} also works: pass the file itself.)",
              f"Wan2.2 backbones (LongLive 2.0) need the Wan2.2 VAE instead: {WAN22.vae_original} "
              f"(hf download {WAN22_REPO} {WAN22.vae_original}), ComfyUI's models/vae/{WAN22.vae_file}, or the "
              f"diffusers vae/ folder of {WAN22_DIFFUSERS_REPO}."]
    return MissingModelFiles("\n".join(lines), missing)


def _is_diffusers_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("diffusion_pytorch_model*.safetensors"))


def resolve_vae_path(path: str | Path) -> tuple[str, Path]:
    """→ (kind, path) with kind "file" (a .pth/.safetensors state dict) or "diffusers" (a vae/ folder)."""
    path = Path(path).expanduser()
    if path.is_file():
        return "file", path
    if path.is_dir():
        for folder in (path, path / "vae"):
            if _is_diffusers_folder(folder):
                return "diffusers", folder
        if (path / WAN_VAE_FILE).is_file():
            return "file", path / WAN_VAE_FILE
        if (path / "config.json").is_file():
            raise _missing(path, [path / DIFFUSERS_VAE_WEIGHTS])
        if (path / "vae").is_dir():
            raise _missing(path, [p for p in (path / "vae" / "config.json", path / "vae" / DIFFUSERS_VAE_WEIGHTS)
                                  if not p.is_file()])
        raise _missing(path, [path / WAN_VAE_FILE, path / "vae" / "config.json",
                              path / "vae" / DIFFUSERS_VAE_WEIGHTS])
    raise _missing(path, [path])


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    state = read_state_dict(path, "VAE", containers=("state_dict",), expected=f"the Wan2.1 VAE ({WAN_VAE_FILE})")
    for prefix in _PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def wan_vae_to_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Wan's original VAE names → ``AutoencoderKLWan`` names (diffusers' own converter)."""
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
    return convert_wan_vae_to_diffusers(state)


def _architecture(state: dict[str, torch.Tensor], path: Path) -> dict:
    """AutoencoderKLWan arguments from diffusers-named weights: Wan2.1's VAE, or Wan2.2's (residual blocks,
    2×2 patchified pixels, a wider decoder)."""
    try:
        arch = {"base_dim": state["encoder.conv_in.weight"].shape[0], "z_dim": state["post_quant_conv.weight"].shape[0],
                "decoder_base_dim": state["decoder.conv_out.weight"].shape[1]}
        pixels = state["encoder.conv_in.weight"].shape[1]
    except KeyError as exc:
        raise ValueError(f"VAE '{path}' lacks {exc}; it is not a complete Wan VAE") from None
    if pixels != 3:                  # Wan2.2: pixels enter as 2×2 patches (12 channels)
        patch = int(round((pixels / 3) ** 0.5))
        arch.update(is_residual=True, in_channels=pixels, out_channels=pixels, patch_size=patch,
                    scale_factor_spatial=8 * patch)
    return arch


# Wan2.2's original VAE names → AutoencoderKLWan's (the residual Wan2.2 layout). Per stage the original keeps
# its resnets and the stage's resampler in one list (resnets 0..n−1, resampler n); diffusers splits them.
_WAN22_RENAMES = [(re.compile(a), b) for a, b in (
    (r"^conv1\.", "quant_conv."), (r"^conv2\.", "post_quant_conv."),
    (r"^(encoder|decoder)\.conv1\.", r"\1.conv_in."),
    (r"^(encoder|decoder)\.head\.0\.", r"\1.norm_out."), (r"^(encoder|decoder)\.head\.2\.", r"\1.conv_out."),
    (r"^(encoder|decoder)\.middle\.0\.", r"\1.mid_block.resnets.0."),
    (r"^(encoder|decoder)\.middle\.1\.", r"\1.mid_block.attentions.0."),
    (r"^(encoder|decoder)\.middle\.2\.", r"\1.mid_block.resnets.1."),
    (r"^encoder\.downsamples\.(\d+)\.downsamples\.(\d+)\.", r"encoder.down_blocks.\1.resnets.\2."),
    (r"^decoder\.upsamples\.(\d+)\.upsamples\.(\d+)\.", r"decoder.up_blocks.\1.resnets.\2."),
    (r"\.residual\.0\.", ".norm1."), (r"\.residual\.2\.", ".conv1."), (r"\.residual\.3\.", ".norm2."),
    (r"\.residual\.6\.", ".conv2."), (r"\.shortcut\.", ".conv_shortcut."),
)]
_RESAMPLER = re.compile(r"^(encoder\.down_blocks|decoder\.up_blocks)\.(\d+)\.resnets\.(\d+)\.(resample|time_conv)")


def wan22_vae_to_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Wan2.2's original VAE names (``Wan2.2_VAE.pth``, ComfyUI's ``wan2.2_vae.safetensors``) → AutoencoderKLWan's."""
    out = {}
    for key, value in state.items():
        for pattern, repl in _WAN22_RENAMES:
            key = pattern.sub(repl, key)
        m = _RESAMPLER.match(key)
        if m is not None:
            side = "downsampler" if m.group(1).startswith("encoder") else "upsampler"
            key = f"{m.group(1)}.{m.group(2)}.{side}.{m.group(4)}" + key[m.end():]
        out[key] = value
    return out


def _model_from_state_dict(state: dict[str, torch.Tensor], path: Path, device: torch.device, dtype: torch.dtype):
    from diffusers import AutoencoderKLWan
    if _WAN22_PROBE in state:
        state = wan22_vae_to_diffusers(state)
    elif _WAN_PROBE in state:
        state = wan_vae_to_diffusers(state)
    elif _DIFFUSERS_PROBE not in state:
        raise ValueError(f"VAE '{path}' has neither Wan's nor diffusers' Wan VAE names (e.g. '{_WAN_PROBE}'); "
                         f"found {sorted(state)[:4]}…; expected the Wan2.1 VAE ({WAN_VAE_FILE}) or the Wan2.2 VAE "
                         f"(diffusers layout, {WAN22_DIFFUSERS_REPO} vae/)")
    with torch.device("meta"):   # weights come from the file: skip the random init
        model = AutoencoderKLWan(**_architecture(state, path))
    state = {k: v.to(device=device, dtype=dtype) for k, v in state.items()}
    result = model.load_state_dict(state, strict=False, assign=True)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"VAE '{path}': missing tensors {result.missing_keys[:6]}, unexpected "
                         f"{result.unexpected_keys[:6]}; expected the Wan2.1 or Wan2.2 VAE (dim_mult 1,2,4,4, 2 res "
                         "blocks)")
    return model


def _model_from_diffusers(folder: Path, device: torch.device, dtype: torch.dtype):
    from diffusers import AutoencoderKLWan
    try:
        model = AutoencoderKLWan.from_pretrained(str(folder), torch_dtype=dtype, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ValueError(f"VAE folder '{folder}' could not be loaded as a diffusers AutoencoderKLWan "
                         f"({why_unreadable(exc)}); "
                         f"download it again: hf download {DIFFUSERS_REPO} --include 'vae/*'") from exc
    return model.to(device)   # device only: diffusers warns on every dtype cast through .to()


def _decoder_conv_count(model) -> int:
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d
    return sum(isinstance(m, WanCausalConv3d) for m in model.decoder.modules())


# ---------------------------------------------------------------------------------------------
# Decoding

class StreamingDecoder:
    """Decodes consecutive latent chunks of one video, keeping the decoder's causal cache between
    calls; ``push`` returns the new video frames on the CPU. Decoding a video in any split equals
    decoding it whole."""

    def __init__(self, vae: "WanVAE"):
        self.vae = vae
        self._cache: list = [None] * vae._conv_count
        self.latent_frames = 0

    @torch.inference_mode()
    def push(self, z_model: torch.Tensor) -> torch.Tensor:
        """z_model [B, C, t, H, W] (model space, the next t latent frames) → float32 CPU video
        [B, 3, t_v, sH, sW] in [0, 1] (s = the VAE's stride); t_v = 1 + 4(t − 1) for the video's first
        chunk, 4t after."""
        c = self.vae.latent.channels
        if z_model.dim() != 5 or z_model.shape[1] != c:
            raise ValueError(f"expected model-space latents [B, {c}, T, H, W] of {self.vae.latent.vae}; got "
                             f"{list(z_model.shape)}")
        model = self.vae.model
        patch = model.config.patch_size
        z = to_raw_space(z_model.to(self.vae.device, torch.float32)).to(self.vae.dtype)
        x = model.post_quant_conv(z)   # 1×1×1 conv: frame-local, needs no cache
        pieces = []
        for i in range(x.shape[2]):
            kwargs = {"first_chunk": self.latent_frames == 0} if self.vae._takes_first_chunk else {}
            out = model.decoder(x[:, :, i:i + 1], feat_cache=self._cache, feat_idx=[0], **kwargs)
            if patch is not None:
                from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify
                out = unpatchify(out, patch_size=patch)
            pieces.append(((out.float().clamp(-1.0, 1.0) + 1.0) / 2.0).cpu())
            self.latent_frames += 1
        return torch.cat(pieces, dim=2)


class WanVAE:
    """A loaded Wan2.1 or Wan2.2 VAE working in model-normalised latent space (``latent``: its format)."""

    def __init__(self, model, source: Path):
        self.model = model.eval().requires_grad_(False)
        self.source = source
        residual = bool(getattr(model.config, "is_residual", False))
        kinds = {(WAN21.channels, False): WAN21, (WAN22.channels, True): WAN22}     # the Wan2.2 VAE is residual
        self.latent: LatentFormat = kinds.get((model.config.z_dim, residual))
        if self.latent is None:
            raise ValueError(f"VAE '{source}' has z_dim {model.config.z_dim} (residual {residual}); this is neither "
                             f"{WAN21.vae} ({WAN21.channels} latent channels) nor {WAN22.vae} ({WAN22.channels}, "
                             "residual)")
        self._conv_count = _decoder_conv_count(model)
        self._takes_first_chunk = "first_chunk" in inspect.signature(model.decoder.forward).parameters

    @property
    def device(self) -> torch.device:
        return self.model.post_quant_conv.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.post_quant_conv.weight.dtype

    def stream(self) -> StreamingDecoder:
        """A decoder for one video fed chunk by chunk (e.g. each AR block as it is finished)."""
        return StreamingDecoder(self)

    def iter_decode(self, z_model: torch.Tensor, chunk_frames: int = 3) -> Iterator[torch.Tensor]:
        """Yield the video of z_model [B, C, T, H, W] in pieces of ``chunk_frames`` latent frames, each a
        float32 CPU tensor [B, 3, t_v, sH, sW] in [0, 1] (for writing long videos without holding them)."""
        stream = self.stream()
        for start in range(0, z_model.shape[2], chunk_frames):
            yield stream.push(z_model[:, :, start:start + chunk_frames])

    def decode(self, z_model: torch.Tensor) -> torch.Tensor:
        """z_model [B, C, T, H, W] (model space) → float32 CPU video [B, 3, 4(T − 1) + 1, sH, sW] in [0, 1]."""
        return torch.cat(list(self.iter_decode(z_model)), dim=2)

    @torch.inference_mode()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """video [B, 3, 4k + 1, sH, sW] in [0, 1] → model-space latents [B, C, k + 1, H, W] (posterior mean),
        on the VAE's device in float32."""
        x = (video.to(self.device, self.dtype) * 2.0 - 1.0)
        mean = self.model.encode(x).latent_dist.mode()
        return to_model_space(mean.float())


def load_vae(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
             latent: LatentFormat | None = None) -> WanVAE:
    """Load a Wan VAE from ``Wan2.1_VAE.pth`` / a .safetensors file / a diffusers ``vae/`` folder, or a
    folder holding one of them. ``latent``: the format the backbone works in (a VAE of the other kind is
    refused). Raises ``MissingModelFiles`` (what to put where, and the download command) or ``ValueError``
    for a damaged or foreign file. Only local files are read."""
    kind, resolved = resolve_vae_path(path)
    device = torch.device(device)
    if kind == "diffusers":
        model = _model_from_diffusers(resolved, device, dtype)
    else:
        model = _model_from_state_dict(_read_state_dict(resolved), resolved, device, dtype)
    vae = WanVAE(model, resolved)
    if latent is not None and vae.latent != latent:
        fix = f"ComfyUI's models/vae/{latent.vae_file}" + (
            f", or hf download {REPOS[latent]} {latent.vae_original}" if latent in REPOS else "")
        raise ValueError(f"VAE '{resolved}' is {vae.latent.vae} ({vae.latent.channels} latent channels) but the "
                         f"backbone works in {latent.name} latents ({latent.channels} channels): use {latent.vae}: "
                         f"{fix}")
    return vae
