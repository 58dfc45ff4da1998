"""``python -m core demo`` from a fresh copy of the repository, then every command it prints, exactly as printed
(split as a shell would, run from the folder it names): each exits 0 and makes what it says, with no download."""
import os
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from core.context.strategies import NAMES as STRATEGIES
from core.files.video import read_video
from paths import ROOT

OFFLINE = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")


def fresh_copy(dest: Path) -> Path:
    """The files git tracks, as they are in the working tree: what a clone of this checkout holds (untracked
    files, caches and earlier outputs are left behind)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to tell the repository's files from the rest")
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, names.decode().split("\0")):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def printed_commands(stdout: str) -> tuple[Path, dict[str, list[str]]]:
    """(the folder the demo says to run them from, its commands by the feature they show)."""
    lines = [line for line in stdout.splitlines() if line.strip() and not line.startswith("#")]
    cwd = Path(shlex.split(lines[0])[1]) if lines[0].startswith("cd ") else None
    found = {}
    for line in lines[1:]:
        argv = shlex.split(line)
        kind = next(k for flag, k in (("--prompt-schedule", "schedule"), ("--image", "image"), ("--resume", "resume"),
                                      ("--continue-from", "extend"), ("--strategy", "strategies")) if flag in argv)
        found[kind] = argv
    return cwd, found


def test_every_printed_demo_command_runs_as_printed_from_a_fresh_copy(tmp_path):
    repo = fresh_copy(tmp_path / "repo")
    demo = subprocess.run([sys.executable, "-m", "core", "demo", "--out", "demo_out"], cwd=repo, capture_output=True,
                          text=True, env=OFFLINE, timeout=600)
    assert demo.returncode == 0, demo.stderr[-3000:]
    cwd, found = printed_commands(demo.stdout)
    assert cwd == repo and sorted(found) == ["extend", "image", "resume", "schedule", "strategies"]
    assert all(argv[:3] == [sys.executable, "-m", "core"] for argv in found.values())
    readme = re.sub(r" \\\n\s+", " ", (repo / "README.md").read_text())        # continuation lines joined
    for kind, argv in found.items():                  # the README lists them (with the venv's Python, as it says)
        assert shlex.join([".venv/bin/python", *argv[1:]]) in readme, f"README lacks the demo's {kind} command"

    def run(argv):
        return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=OFFLINE, timeout=600)
    with ThreadPoolExecutor(2) as pool:                                    # one thread each (conftest): 2 cores
        procs = dict(zip(found, pool.map(run, found.values())))
    for kind, proc in procs.items():
        assert proc.returncode == 0, f"{kind}: {proc.stderr[-3000:]}"

    out = repo / "demo_out"
    story = sorted(p.name for p in (out / "story").glob("*.mp4"))
    assert story == [f"story_a_red_cat_runs_in_the_snow_{m}.mp4" for m in ("grid", "native", "rag")]
    image = read_video(out / "image_start" / "0000_a_red_cat_runs_in_the_snow_rag.mp4")
    assert image.shape == (4 * 15 + 1, 64, 96, 3) and "centre-cropped" in procs["image"].stderr
    rag = load_file(str(out / "latents_rag.safetensors"))["latents"]
    extended = load_file(str(out / "latents_rag_extended.safetensors"))["latents"]
    assert extended.shape[2] == rag.shape[2] + 12 and torch.equal(extended[:, :, :rag.shape[2]], rag)
    assert torch.equal(load_file(str(out / "latents_rag_resumed.safetensors"))["latents"], rag)
    assert not (out / "latents_rag_resumed.partial.safetensors").exists()
    videos = {p.name.removeprefix("0000_a_red_cat_runs_in_the_snow_") for p in (out / "strategies").glob("*.mp4")}
    assert videos == {f"{name}.mp4" for name in STRATEGIES} | {"grid.mp4"}
