"""Frame-wise Causal Forcing++ (blocks of one latent frame) through both front ends, past its window: every
long-context strategy through the nodes (what the strategy comparison workflow wires: a Context Strategy node per
sampler, rag through Retrieve Context, the five videos tiled by Compare Grid), and ``python -m core generate
--strategy all`` from a prompt — the backbone told apart by its file name (``framewise-2step``)."""
import torch
from safetensors.torch import load_file

from core.app.cli import main as cli_main
from core.context.strategies import NAMES
from core.files.video import read_video

from pack import N
from paths import GOLDEN

FRAMES = 24                 # latent frames: past the window of 21 (and every strategy's published window)


def test_every_strategy_runs_on_the_frame_wise_backbone_through_the_nodes_and_tiles_in_the_grid(models_dir):
    state = {f"model.{k}": v for k, v in load_file(str(GOLDEN / "wan_tiny_t2v_bare.safetensors")).items()}
    torch.save({"generator_ema": state}, models_dir / "diffusion_models" / "framewise-2step.pt")
    backbone, info = N["LongLiveRAG_LoadBackbone"].execute("framewise-2step.pt", "none", 1.0, "float32", "cpu",
                                                           "offload after sampling", num_heads=2).args
    assert info.startswith("Causal-Forcing++ 2-step")
    emb = torch.randn(1, 20, 64, generator=torch.Generator().manual_seed(3))
    (enc,) = N["LongLiveRAG_LoadLatentEncoder"].execute("avg_pool (no file)").args
    videos, logs = [], {}
    for name in NAMES:
        kw = {}
        if name == "rag":
            kw["retrieval"] = N["LongLiveRAG_RetrieveContext"].execute(enc, 2, 0, None).args[0]
        else:
            kw["strategy"] = N["LongLiveRAG_ContextStrategy"].execute(name, 0, -1, "strategy default", "").args[0]
        latent, log, text = N["LongLiveRAG_ARBlockSampler"].execute(
            backbone, [[emb, {}]], 48, 32, 4 * (FRAMES - 1) + 1, 0, -1, 0, 0, "auto", 0.0, **kw).args
        assert latent["samples"].shape == (1, 16, FRAMES, 4, 6) and torch.isfinite(latent["samples"]).all()
        assert log.frames_per_block == 1 and log.strategy == name
        assert "steps 1000,500 (the first block 1000,750,500,250)" in text
        logs[name] = log
        videos.append(latent["samples"][0].permute(1, 2, 3, 0)[..., :3].clamp(-1, 1) * 0.5 + 0.5)   # a stand-in decode
    assert (logs["native"].window, logs["rag"].window, logs["deep-forcing"].window) == (21, 21, 21)
    assert (logs["infinity-rope"].window, logs["memrope"].window, logs["memrope"].sink) == (6, 12, 3)
    assert logs["rag"].records, "frames left the window of 21, so later frames retrieve"
    grid = N["LongLiveRAG_CompareGrid"].execute("\n".join(NAMES), 3, **{f"images_{i}": v for i, v in
                                                                         enumerate(videos, 1)}).args[0]
    assert grid.shape[0] == FRAMES


def test_strategy_all_from_a_prompt_on_the_frame_wise_backbone(assets, tmp_path, capsys):
    (tmp_path / "framewise-2step.safetensors").symlink_to(assets / "causal_forcing_tiny.safetensors")
    out = tmp_path / "all"
    rc = cli_main(["generate", "--prompt", "a red cat runs in the snow", "--frames", str(FRAMES), "--latent-size", "4x6",
                   "--backbone", str(tmp_path / "framewise-2step.safetensors"), "--num-heads", "2",
                   "--text-encoder", str(assets / "wan"), "--vae", str(assets / "wan" / "Wan2.1_VAE.pth"),
                   "--device", "cpu", "--strategy", "all", "--out-dir", str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err[-3000:]
    assert "Causal-Forcing++ 2-step backbone: 832x480 px" in err and "blocks of 1 latent frame, window 21" in err
    stem = "0000_a_red_cat_runs_in_the_snow"
    for name in NAMES:
        assert read_video(out / f"{stem}_{name}.mp4").shape == (4 * (FRAMES - 1) + 1, 32, 48, 3)
    assert (out / f"{stem}_grid.mp4").exists()
