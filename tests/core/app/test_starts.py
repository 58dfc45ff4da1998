"""Where a text run begins (core/app/starts.py): an image or clip of any size is fitted to the run's size —
centre-cropped to its aspect ratio, then scaled — and the CLI says so before any model loads."""
import numpy as np
from PIL import Image

from core.app.starts import StartFiles, fit_frames
from core.latents.format import WAN21


def _bands(h: int, w: int) -> np.ndarray:
    """[1, h, w, 3]: red left third, green middle, blue right third."""
    img = np.zeros((1, h, w, 3), np.uint8)
    for i in range(3):
        img[0, :, i * w // 3:(i + 1) * w // 3, i] = 255
    return img


def test_a_wider_image_loses_its_sides_and_keeps_its_centre():
    out = fit_frames(_bands(60, 180), (40, 40))                     # 3:1 → 1:1: only the green middle third is left
    assert out.shape == (1, 40, 40, 3)
    assert out[0, :, 3:-3, 1].min() > 200 and out[0, :, 3:-3, [0, 2]].max() < 60


def test_an_image_of_the_same_aspect_is_only_scaled():
    out = fit_frames(_bands(64, 96), (32, 48))
    assert out.shape == (1, 32, 48, 3)
    assert out[0, :, 2:14, 0].min() > 200 and out[0, :, 34:46, 2].min() > 200    # all three bands are still there


def test_an_image_of_the_run_size_is_left_as_it_is():
    frames = np.random.default_rng(0).integers(0, 256, (2, 32, 48, 3), dtype=np.uint8)
    assert fit_frames(frames, (32, 48)) is frames


def test_check_counts_the_image_and_says_it_will_be_fitted(tmp_path):
    Image.fromarray(_bands(100, 100)[0]).save(tmp_path / "start.png")
    said = []
    assert StartFiles(image=str(tmp_path / "start.png")).check((8, 12), WAN21, said.append) == 1
    assert said == ["start '" + str(tmp_path / "start.png") + "' is 100x100 px: centre-cropped to the run's aspect "
                    "ratio and scaled to its 96x64 px (latent 8x12; another size: --width/--height or --latent-size)"]
    said.clear()
    Image.fromarray(_bands(64, 96)[0]).save(tmp_path / "fits.png")
    StartFiles(image=str(tmp_path / "fits.png")).check((8, 12), WAN21, said.append)
    assert said == []
