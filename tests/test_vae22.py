"""The Wan2.2 VAE (48 channels, 16× spatial) behind the same WanVAE: decoding in pieces equals diffusers'
own decode, encoding gives model-space 48-channel latents, and a VAE of the other kind is refused."""
import pytest
import torch
from safetensors.torch import save_file

from core.latents.format import WAN21, WAN22, to_raw_space
from core.formats.vae import load_vae

from test_vae import write_tiny_vae


def write_tiny_vae22(root):
    """A random tiny Wan2.2-style AutoencoderKLWan (residual, 2×2 patches) saved as root/vae22/ (diffusers)."""
    from diffusers import AutoencoderKLWan
    torch.manual_seed(0)
    model = AutoencoderKLWan(base_dim=16, decoder_base_dim=24, z_dim=48, is_residual=True, in_channels=12,
                             out_channels=12, patch_size=2, scale_factor_spatial=16,
                             temperal_downsample=[False, True, True]).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    model.save_pretrained(str(root / "vae22" / "vae"))
    return model


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
    from conftest import DATA
    folder = DATA / "wan22_vae_tiny"
    io = load_file(str(folder / "io.safetensors"))
    vae = load_vae(folder / "wan2.2_vae_tiny_fp16.safetensors", latent=WAN22)
    assert (vae.decode(io["z_model"]) - io["video"]).abs().max() < 1e-5
    assert (vae.encode(io["pixels"]) - io["z_encoded"]).abs().max() < 1e-5
