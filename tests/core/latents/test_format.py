"""Latent formats (core/latents/format.py): each VAE's values stated once, and every frames / seconds /
pixels conversion asked of the format, for the Wan formats and for one with other strides and rate."""
import pytest
import torch

from core.latents import format as latent_format
from core.latents.format import WAN21, WAN22, LatentFormat, format_for_channels, to_model_space, to_raw_space
from factory import make_test_family

TEST = make_test_family().defaults.latent          # 8 channels, 4x spatial, 2x temporal, 12 fps


def test_the_wan_formats_state_their_vae_files_and_comfyui_names():
    assert (WAN21.channels, WAN21.stride, WAN21.time_stride, WAN21.fps) == (16, 8, 4, 16)
    assert (WAN22.channels, WAN22.stride, WAN22.time_stride, WAN22.fps) == (48, 16, 4, 24)
    assert (WAN21.vae_file, WAN21.vae_original, WAN21.comfy_latent) == \
           ("wan_2.1_vae.safetensors", "Wan2.1_VAE.pth", "Wan21")
    assert (WAN22.vae_file, WAN22.vae_original, WAN22.comfy_latent) == \
           ("wan2.2_vae.safetensors", "Wan2.2_VAE.pth", "Wan22")


def test_video_and_latent_frames_follow_the_time_stride():
    assert WAN21.video_to_latent_frames(477) == 120 and WAN21.latent_to_video_frames(120) == 477
    assert WAN22.video_to_latent_frames(721) == 181 and WAN22.video_to_latent_frames(1) == 1
    assert WAN21.video_to_latent_frames(478) == 121                  # rounded up
    assert TEST.video_to_latent_frames(23) == 12 and TEST.latent_to_video_frames(12) == 23
    assert TEST.whole_video_frames(24) == 23 and WAN21.whole_video_frames(20) == 17


def test_a_length_in_video_frames_rounds_up_to_whole_blocks_after_a_start():
    assert WAN21.latent_frames_for_video(477, 3) == 120
    assert WAN22.latent_frames_for_video(721, 8) == 184                # 181 latent frames → 23 blocks of 8
    assert WAN21.latent_frames_for_video(21, 3, start=1) == 7          # 6 latent frames after an image: 1 + 2·3
    assert TEST.latent_frames_for_video(23, 2) == 12 and TEST.latent_frames_for_video(25, 2) == 14


def test_seconds_are_read_at_the_formats_rate():
    assert WAN21.seconds_to_frame(10) == 40 and WAN22.seconds_to_frame(10) == 60 and TEST.seconds_to_frame(10) == 60
    assert WAN21.seconds_to_frame(0.3) == 2                            # the first latent frame at or after
    assert WAN21.frame_to_seconds(42) == 10.5 and TEST.frame_to_seconds(6) == 1.0
    assert WAN21.latent_frames_for_seconds(30, 3) == 120 and WAN22.latent_frames_for_seconds(30, 8) == 184   # at least 30 s, as the node rounds 721
    assert TEST.latent_frames_for_seconds(2, 2) == 12                  # 2 s · 12 fps / 2 = 12 latent frames
    with pytest.raises(ValueError, match="length 0 s must be > 0"):
        TEST.latent_frames_for_seconds(0, 2)


def test_pixels_and_latents_follow_the_spatial_stride():
    assert WAN21.latent_size_for_video(832, 480) == (60, 104) and WAN21.video_size((60, 104)) == (832, 480)
    assert WAN22.latent_size_for_video(1280, 704) == (44, 80) and TEST.latent_size_for_video(24, 16) == (4, 6)
    with pytest.raises(ValueError, match=r"width 840 and height 480 must be positive multiples of 32 \(e\.g\. 832x480\)"):
        WAN22.latent_size_for_video(840, 480)


def test_latents_are_told_apart_by_their_channel_count():
    assert format_for_channels(16) is WAN21 and format_for_channels(48) is WAN22 and format_for_channels(8) is None
    z = torch.randn(1, 48, 2, 2, 2)
    assert torch.allclose(to_raw_space(to_model_space(z)), z, atol=1e-6)
    with pytest.raises(ValueError, match=r"expected video latents \[B, 16 or 48, T, H, W\]"):
        to_model_space(torch.zeros(1, 8, 2, 2, 2))


def test_an_added_format_is_known_to_the_channel_lookups_until_removed():
    assert latent_format.add_format(TEST) and not latent_format.add_format(TEST)
    try:
        assert format_for_channels(8) is TEST and latent_format.channel_counts() == "16, 48 or 8"
        z = torch.zeros(1, 8, 1, 1, 1)
        assert torch.allclose(to_model_space(z)[0, :, 0, 0, 0], -torch.tensor(TEST.mean) / torch.tensor(TEST.std))
    finally:
        latent_format.remove_format(TEST)
    assert format_for_channels(8) is None and latent_format.formats() == (WAN21, WAN22)


def test_two_formats_with_one_channel_count_are_refused():
    clash = LatentFormat("Other16", "another VAE", WAN21.mean, WAN21.std, stride=8, time_stride=4, fps=30,
                         vae_file="o.safetensors", vae_original="o.pth", comfy_latent="Other")
    with pytest.raises(ValueError, match="latent format Other16 has 16 channels like Wan2.1"):
        latent_format.add_format(clash)
    assert latent_format.formats() == (WAN21, WAN22)


def test_a_format_needs_one_mean_and_std_per_channel():
    with pytest.raises(ValueError, match="2 means and 1 stds"):
        LatentFormat("Bad", "a VAE", (0.0, 0.0), (1.0,), stride=8, time_stride=4, fps=16, vae_file="b",
                     vae_original="b", comfy_latent="B")


def test_seconds_become_whole_blocks_of_latent_frames():
    assert WAN21.latent_frames_for_seconds(30, 3) == 120
    assert WAN21.latent_frames_for_seconds(60, 3) == 240
    assert WAN21.latent_frames_for_seconds(0.1, 3) == 3


def test_latent_normalisation_round_trip():
    z = torch.randn(2, 16, 5, 4, 6, dtype=torch.float64)
    assert torch.allclose(latent_format.to_raw_space(latent_format.to_model_space(z)), z)
    assert latent_format.WAN21.video_to_latent_frames(477) == 120
    assert latent_format.WAN21.latent_to_video_frames(120) == 477
