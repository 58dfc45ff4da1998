"""The Wan VAEs (core/formats/vae.py).

The Wan2.1 VAE: both on-disk layouts, model-space input, seamless chunked decoding, clear errors. A tiny
AutoencoderKLWan (base_dim 4, the real Wan2.1 block structure) saved under the real names: diffusers' ``vae/``
folder and Wan's ``Wan2.1_VAE.pth`` (names written out in tests/tiny_files.py from Wan's module tree, so the
loader's conversion is checked, not reused). References are built by hand from the
written model itself and the latent statistics in its diffusers config, never from ``core``.

The Wan2.2 VAE (48 channels, 16× spatial) behind the same WanVAE: decoding in pieces equals diffusers' own decode,
encoding gives model-space 48-channel latents, and a VAE of the other kind is refused.
"""
import socket

import pytest
import torch
from safetensors.torch import save_file

from core.latents.format import WAN21, WAN22, to_raw_space
from core.formats.text_encoder import MissingModelFiles
from core.formats.vae import WanVAE, load_vae

from tiny_files import BASE_DIM, write_tiny_vae, write_tiny_vae22

pytestmark = pytest.mark.usefixtures("one_thread")


# Every way to point at the weights → the path load_vae should report as its source.
PATH_FORMS = {
    "wan .pth": ("wan/Wan2.1_VAE.pth", "wan/Wan2.1_VAE.pth"),
    "folder with the wan .pth": ("wan", "wan/Wan2.1_VAE.pth"),
    "diffusers vae/ folder": ("diffusers/vae", "diffusers/vae"),
    "folder with a diffusers vae/": ("diffusers", "diffusers/vae"),
    "ComfyUI safetensors (wan names)": ("wan_2.1_vae.safetensors", "wan_2.1_vae.safetensors"),
    "safetensors with diffusers names": ("diffusers_names.safetensors", "diffusers_names.safetensors"),
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("vae")
    model, wan_sd = write_tiny_vae(root)
    assert len(wan_sd) == len(model.state_dict())
    save_file({k: v.contiguous() for k, v in wan_sd.items()}, str(root / "wan_2.1_vae.safetensors"))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(root / "diffusers_names.safetensors"))
    return {"root": root, "model": model, "wan_sd": wan_sd,
            "z": torch.randn(1, 16, 5, 3, 4, generator=torch.Generator().manual_seed(2))}


@pytest.fixture(scope="module")
def vae(tiny) -> WanVAE:
    return load_vae(tiny["root"] / "wan" / "Wan2.1_VAE.pth")


def latent_stats(model) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (mean, std) [1, 16, 1, 1, 1] of raw Wan2.1 latents, from the diffusers config."""
    view = (1, -1, 1, 1, 1)
    return (torch.tensor(model.config.latents_mean).view(view), torch.tensor(model.config.latents_std).view(view))


def reference_decode(model, z_model: torch.Tensor) -> torch.Tensor:
    """The written model's own whole-video decode of model-space latents, in [0, 1]."""
    mean, std = latent_stats(model)
    with torch.no_grad():
        video = model.decode(z_model * std + mean).sample
    return (video.clamp(-1, 1) + 1) / 2


def assert_weights_equal(loaded: dict, written: dict, dtype: torch.dtype = torch.float32) -> None:
    assert sorted(loaded) == sorted(written)
    for k, v in written.items():
        assert loaded[k].shape == v.shape and loaded[k].dtype == dtype, k
        assert torch.equal(loaded[k], v.to(dtype)), k


@pytest.mark.parametrize("form", PATH_FORMS)
def test_every_path_form_loads_the_written_weights_key_by_key(tiny, form):
    path, source = PATH_FORMS[form]
    loaded = load_vae(tiny["root"] / path)
    assert loaded.source == tiny["root"] / source
    assert loaded.device == torch.device("cpu") and loaded.dtype == torch.float32     # the defaults
    assert_weights_equal(loaded.model.state_dict(), tiny["model"].state_dict())


@pytest.mark.parametrize("form", ["wan .pth", "diffusers vae/ folder", "ComfyUI safetensors (wan names)"])
def test_decode_of_a_known_latent_equals_the_written_models_decode(tiny, form):
    loaded = load_vae(tiny["root"] / PATH_FORMS[form][0])
    want = reference_decode(tiny["model"], tiny["z"])
    assert want.std() > 0.05                                       # a real picture, not a constant
    torch.testing.assert_close(loaded.decode(tiny["z"]), want, rtol=0, atol=1e-5)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize("layout", ["wan/Wan2.1_VAE.pth", "diffusers/vae"])
@pytest.mark.parametrize("device, dtype", [
    ("cpu", torch.bfloat16),
    (torch.device("cpu"), torch.float64),
    ("meta", torch.float16),               # a device other than the CPU on machines without a GPU
    pytest.param("cuda", torch.bfloat16, marks=CUDA),
])
def test_load_puts_every_weight_on_the_device_and_dtype_asked_for(tiny, layout, device, dtype):
    loaded = load_vae(tiny["root"] / layout, device=device, dtype=dtype)
    device = torch.device(device)
    assert loaded.device.type == device.type and loaded.dtype == dtype
    state = loaded.model.state_dict()
    assert all(v.device.type == device.type and v.dtype == dtype for v in state.values())
    if device.type != "meta":
        assert_weights_equal({k: v.cpu() for k, v in state.items()}, tiny["model"].state_dict(), dtype)


def test_a_bfloat16_vae_still_returns_float32_cpu_video_close_to_the_reference(tiny):
    video = load_vae(tiny["root"] / "wan", dtype=torch.bfloat16).decode(tiny["z"])
    assert video.dtype == torch.float32 and video.device.type == "cpu"
    torch.testing.assert_close(video, reference_decode(tiny["model"], tiny["z"]), rtol=0, atol=0.05)


def test_decoded_video_has_4t_minus_3_frames_8x_size_in_unit_range_on_cpu(tiny, vae):
    video = vae.decode(tiny["z"])
    b, _, t, h, w = tiny["z"].shape
    assert video.shape == (b, 3, WAN21.latent_to_video_frames(t), 8 * h, 8 * w) == (1, 3, 17, 24, 32)
    assert video.device.type == "cpu" and video.dtype == torch.float32
    assert video.min() >= 0 and video.max() <= 1 and video.std() > 0.05


@pytest.mark.parametrize("split", [[1, 1, 1, 1, 1], [3, 2], [2, 3], [1, 4]])
def test_streamed_chunks_join_without_seams(tiny, vae, split):
    whole = vae.decode(tiny["z"])
    stream, pieces, start = vae.stream(), [], 0
    for n in split:
        pieces.append(stream.push(tiny["z"][:, :, start:start + n]))
        start += n
    assert [p.shape[2] for p in pieces] == [1 + 4 * (split[0] - 1)] + [4 * n for n in split[1:]]
    assert torch.equal(torch.cat(pieces, dim=2), whole)


def test_iter_decode_yields_cpu_pieces_that_make_the_whole_video(tiny, vae):
    pieces = list(vae.iter_decode(tiny["z"], chunk_frames=2))
    assert len(pieces) == 3 and all(p.device.type == "cpu" for p in pieces)
    assert torch.equal(torch.cat(pieces, dim=2), vae.decode(tiny["z"]))


def test_batch_items_decode_independently(tiny, vae):
    z2 = torch.cat([tiny["z"], tiny["z"].flip(2)])
    both = vae.decode(z2)
    torch.testing.assert_close(both[:1], vae.decode(tiny["z"]), rtol=0, atol=1e-5)
    torch.testing.assert_close(both[1:], vae.decode(tiny["z"].flip(2)), rtol=0, atol=1e-5)


def test_encode_returns_model_space_latents(tiny, vae):
    video = torch.rand(1, 3, 9, 24, 32, generator=torch.Generator().manual_seed(3))
    z = vae.encode(video)
    assert z.shape == (1, 16, 3, 3, 4) and z.dtype == torch.float32
    mean, std = latent_stats(tiny["model"])
    with torch.no_grad():
        raw = tiny["model"].encode(video * 2 - 1).latent_dist.mode()
    torch.testing.assert_close(z, (raw - mean) / std, rtol=0, atol=1e-5)


def test_missing_vae_lists_the_files_and_download_commands(tmp_path):
    with pytest.raises(MissingModelFiles) as err:
        load_vae(tmp_path)
    assert err.value.missing == [tmp_path / "Wan2.1_VAE.pth", tmp_path / "vae/config.json",
                                 tmp_path / "vae/diffusion_pytorch_model.safetensors"]
    msg = str(err.value)
    assert "hf download Wan-AI/Wan2.1-T2V-1.3B Wan2.1_VAE.pth" in msg
    assert "hf download Wan-AI/Wan2.1-T2V-1.3B-Diffusers --include 'vae/*'" in msg
    with pytest.raises(MissingModelFiles) as err:
        load_vae(tmp_path / "Wan2.1_VAE.pth")
    assert err.value.missing == [tmp_path / "Wan2.1_VAE.pth"]


def test_a_foreign_or_incomplete_file_is_a_clear_error(tiny, tmp_path):
    torch.save({"first_stage_model.encoder.down.0.weight": torch.zeros(1)}, tmp_path / "a.pth")
    with pytest.raises(ValueError, match="neither Wan's nor diffusers'"):
        load_vae(tmp_path / "a.pth")
    partial = {k: v for k, v in tiny["wan_sd"].items() if not k.startswith("decoder.upsamples.3.")}
    torch.save(partial, tmp_path / "b.pth")
    with pytest.raises(ValueError, match="missing tensors .*up_blocks.0.upsamplers"):
        load_vae(tmp_path / "b.pth")


def test_a_damaged_file_is_a_clear_error(tmp_path):
    (tmp_path / "Wan2.1_VAE.pth").write_bytes(b"truncated download")
    with pytest.raises(ValueError, match=r"Wan2\.1_VAE\.pth' is not a checkpoint: .*download finished"):
        load_vae(tmp_path / "Wan2.1_VAE.pth")


def test_a_vae_without_16_latent_channels_is_refused(tmp_path):
    from diffusers import AutoencoderKLWan
    other = AutoencoderKLWan(base_dim=BASE_DIM, z_dim=4)
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(tmp_path / "z4.safetensors"))
    with pytest.raises(ValueError, match=r"z4\.safetensors' has z_dim 4 .*16 latent channels"):
        load_vae(tmp_path / "z4.safetensors")


def test_loading_never_uses_the_network(tiny, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access while loading a local model")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    with socket.socket() as s, pytest.raises(AssertionError, match="network access"):
        s.connect(("127.0.0.1", 9))                                # the guard is in force
    for path in (tiny["root"] / "diffusers" / "vae", tiny["root"] / "wan"):
        assert_weights_equal(load_vae(path).model.state_dict(), tiny["model"].state_dict())


def test_decoded_chunks_stream_into_an_mp4(tiny, vae, tmp_path):
    from core.files.video import read_video, write_mp4
    chunks = (c[0].permute(1, 2, 3, 0) for c in vae.iter_decode(tiny["z"], chunk_frames=3))
    frames = read_video(write_mp4(tmp_path / "v.mp4", chunks, fps=16))
    assert frames.shape == (17, 24, 32, 3)
    got, want = torch.from_numpy(frames).float() / 255, vae.decode(tiny["z"])[0].permute(1, 2, 3, 0)
    # H.264 (yuv420) blurs this noise-like tiny video, but keeps each frame's colour and the picture
    assert (got.mean((1, 2)) - want.mean((1, 2))).abs().max() < 0.02
    assert torch.corrcoef(torch.stack([got.flatten(), want.flatten()]))[0, 1] > 0.85


# ------------------------------------------------------------------------------ the Wan2.2 VAE
@pytest.fixture(scope="module")
def tiny22(tmp_path_factory):
    root = tmp_path_factory.mktemp("vae22")
    return root, write_tiny_vae22(root)


def test_the_wan2_2_vae_streams_what_diffusers_decodes(tiny22):
    root, model = tiny22
    vae = load_vae(root / "vae22", latent=WAN22)
    assert vae.latent is WAN22
    z = torch.randn(1, 48, 5, 2, 3)
    want = ((model.decode(to_raw_space(z)).sample.clamp(-1, 1) + 1) / 2)
    got = vae.decode(z)
    assert got.shape == (1, 3, 17, 32, 48) == want.shape
    assert torch.allclose(got, want, atol=1e-5)
    pieces = torch.cat(list(vae.iter_decode(z, chunk_frames=2)), dim=2)
    assert torch.allclose(pieces, want, atol=1e-5)


def test_the_wan2_2_vae_in_one_safetensors_file_with_diffusers_names(tiny22, tmp_path):
    root, model = tiny22
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "wan22_vae_diffusers.safetensors"))
    vae = load_vae(tmp_path / "wan22_vae_diffusers.safetensors")
    z = torch.randn(1, 48, 2, 2, 3)
    assert vae.latent is WAN22 and torch.allclose(vae.decode(z), load_vae(root / "vae22").decode(z), atol=1e-6)


def test_encoding_an_image_gives_one_48_channel_latent_frame(tiny22):
    root, _ = tiny22
    z = load_vae(root / "vae22").encode(torch.rand(1, 3, 1, 32, 48))
    assert z.shape == (1, 48, 1, 2, 3) and z.dtype == torch.float32


def test_a_vae_of_the_other_kind_is_refused_naming_the_right_one(tiny22, tmp_path):
    root, _ = tiny22
    write_tiny_vae(tmp_path)
    with pytest.raises(ValueError, match=r"is the Wan2\.1 VAE \(16 latent channels\) but the backbone works in Wan2\.2 "
                                         r"latents \(48 channels\): use the Wan2\.2 VAE: ComfyUI.s "
                                         r"models/vae/wan2\.2_vae\.safetensors, or hf download Wan-AI/Wan2\.2-TI2V-5B "):
        load_vae(tmp_path / "diffusers" / "vae", latent=WAN22)
    with pytest.raises(ValueError, match=r"is the Wan2\.2 VAE \(48 latent channels\) but the backbone works in Wan2\.1"):
        load_vae(root / "vae22", latent=WAN21)


def test_an_incomplete_wan2_2_vae_in_original_names_is_reported(tmp_path):
    save_file({"decoder.upsamples.0.upsamples.0.residual.0.gamma": torch.ones(4, 1, 1, 1)},
              str(tmp_path / "wan2.2_vae.safetensors"))
    with pytest.raises(ValueError, match=r"wan2\.2_vae\.safetensors' lacks 'encoder\.conv_in\.weight'; it is not a "
                                         r"complete Wan VAE"):
        load_vae(tmp_path / "wan2.2_vae.safetensors")


def test_the_original_wan2_2_vae_names_reproduce_the_published_vae():
    """tests/data/wan22_vae_tiny: a tiny Wan2.2 VAE in Wan's own names and what Wan's own code made with it."""
    from safetensors.torch import load_file
    from paths import DATA
    folder = DATA / "wan22_vae_tiny"
    io = load_file(str(folder / "io.safetensors"))
    vae = load_vae(folder / "wan2.2_vae_tiny_fp16.safetensors", latent=WAN22)
    assert (vae.decode(io["z_model"]) - io["video"]).abs().max() < 1e-5
    assert (vae.encode(io["pixels"]) - io["z_encoded"]).abs().max() < 1e-5
