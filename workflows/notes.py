"""The Markdown note of each shipped workflow (workflows/build.py puts it at the left, template_meta.py adds the
file list): what the workflow does, what to expect (memory, time), what to change first. Every number in them
(sizes, rates, lengths, windows, memory) is asked of the pack's registries (core/app/facts.py), never typed here.
"""
from __future__ import annotations

import importlib

from load_pack import load_pack

_PACK = load_pack().__name__
F = importlib.import_module(f"{_PACK}.core.app.facts")
T = importlib.import_module(f"{_PACK}.core.app.fact_text")
LL2_BACKBONE = "model_bf16.pt"          # the workflows whose backbone is LongLive 2.0 (workflows/build.py)
CFPP_BACKBONE = "framewise-2step.pt"    # the frame-wise Causal Forcing++ workflow's (its preset: by the file name)
CFPP_PRESET = "Causal-Forcing++ 2-step"
ROLLING_BACKBONE = "rolling_forcing_dmd.pt"   # Rolling Forcing's release (its preset: by the file name)
ROLLING_PRESET = "Rolling Forcing"


def memory(family) -> str:
    """What a run of ``family`` at its published size takes: GPU bytes, the pool's growth, the work per block."""
    d, native, rag, pool = family.defaults, F.device_memory(family), F.device_memory(family, "rag"), F.pool_table(family)
    w, h = F.size_px(d)
    blocks = F.latent_frames_for(d, 30) // d.frames_per_block
    return (f"**Expect** ({F.label(family)} at {w}×{h}, bf16): {T.size(rag.weights)} of weights + "
            f"{T.size(rag.cache)} of KV cache ({d.window} frames) + {T.size(rag.buffers)} of context buffers with "
            f"retrieval (the window's K/V pre-rotated, the {F.RETRIEVAL.top_k} retrieved frames among them) = "
            f"{T.size(rag.weights + rag.cache + rag.buffers)} of VRAM before working space (the sampler asks ComfyUI "
            f"to free {T.size(rag.needed)}): a {T.gpu(rag.needed)} GB GPU or larger ({T.gpu(native.needed)} GB "
            "without retrieval); on a smaller GPU lower width/height (memory falls with the pixel count). The History "
            f"Pool keeps {T.size(pool['kv'][0])} per latent frame that leaves the window ({T.size(pool['kv'][1])} for "
            "30 s): its auto budget keeps in RAM what the rest of the run leaves free and spills the rest to disk; "
            "kv-half halves it. A 30 s video is "
            f"{blocks} blocks of {T.passes(d)} forwards each ({T.passes(d) - 1} denoising steps + 1 context pass).")


def lengths(family, durations=(30, 60)) -> str:
    """'video frames at 16 fps: 477 ≈ 30 s, 957 ≈ 60 s' (whole blocks)."""
    d = family.defaults
    return f"video frames at {d.latent.fps} fps: " + ", ".join(T.length_text(d, t) for t in durations)


def size(family) -> str:
    return "{}×{}".format(*F.size_px(family.defaults))


def t2v(family) -> str:
    return ("**{title}**\n\nWrites a long video from one prompt, block by block; before each block the most "
            "similar past frames are retrieved from the History Pool as extra context, so the video stays "
            f"consistent.\n\n{memory(family)}\n\n**Change first:** the prompt, `length` ({lengths(family)}) and "
            "the seed.")


def comfy_loaders(family) -> str:
    return ("**{title}**\n\nLongLive through ComfyUI's own loaders: **Load Diffusion Model** reads the base in "
            "ComfyUI's format, **LoraLoaderModelOnly** adds LongLive's LoRA (chain more style or motion LoRAs after "
            "it), and the MODEL goes straight into the sampler's `backbone`. ComfyUI keeps the weights and decides "
            "where they live (all on the GPU, partly, or streamed from RAM); fp8 and GGUF files work the same way. "
            "Same video as Load Backbone with the released files.\n\n**Make the two files once** (from the "
            "released `longlive_base.pt` and `longlive_lora.pt`): `python -m core convert --backbone longlive_base.pt "
            "--lora longlive_lora.pt --out ComfyUI/models/diffusion_models/ --lora-out ComfyUI/models/loras/` "
            "(add `--dtype fp8` for half the weight bytes). For Self-Forcing or Causal-Forcing convert the `.pt` "
            "alone and remove the LoRA node; for a frame-wise Causal Forcing++ put **Model as Backbone** (its "
            f"preset) between the model and the sampler.\n\n{memory(family)}\n\n**Change first:** the prompt, "
            f"`length` ({lengths(family)}), the LoRA stack.")


def ab(family) -> str:
    return ("**{title}**\n\nThe same prompt and seed twice: with the plain sliding window (A) and with retrieval "
            "(B), side by side, plus the retrieval map (which past frame each block used).\n\n" + memory(family)
            + " Two videos are rendered: twice the time.\n\n**Change first:** the prompt{story}, `length` on both "
              "samplers.")


def story(family) -> str:
    return ("**{title}**\n\nA story: the **Prompt Schedule** lists timed prompts (`0s: …`, `12s: …`); at each "
            "switch LongLive re-encodes the recent frames under the new prompt (KV re-cache) so the scene follows "
            "without a cut. The preview below the schedule shows where each prompt begins after rounding to a "
            f"block.\n\n{memory(family)}\n\n**Change first:** the schedule's lines, `length` (it must outlast the "
            "last prompt), the seed.")


def i2v(family) -> str:
    return ("**{title}**\n\n" f"Starts from a picture: Load Image → Upscale Image (to the video's size, {size(family)}; "
            "the sampler's width and height are 0: the start's size) → VAE Encode (Wan2.1 VAE) → the sampler's "
            "`start`. The picture is the video's first frame, kept as encoded, and the backbone continues from it, "
            f"with retrieval.\n\n{memory(family)}\n\n**Change first:** the image, the prompt (what happens next), "
            f"`length` (the total, picture included; {lengths(family, (30,))}) and the seed. The preview says how "
            "the length was rounded.")


def extend(family) -> str:
    return ("**{title}**\n\nSampler 1 makes the first 10 s; sampler 2 takes its latent as `start` and continues it "
            "to 30 s with the same seed: exactly the video one 30 s run makes. Only sampler 2's video is saved (it "
            f"begins with sampler 1's).\n\n{memory(family)}\n\n**Change first:** the prompt, the seed (the same on "
            "both), sampler 2's `length`. Queued again with a longer `length`, sampler 2 replays the frames it made "
            "instead of regenerating them.")


def compare(family) -> str:
    def run(name: str) -> str:
        return T.strategy_defaults_text(name, family)
    return ("**{title}**\n\nThe same prompt and seed five times, once per long-context strategy, each with its "
            "published window and sink (set on its **Context Strategy** node): **native** sliding window (the "
            f"baseline; {run('native')}), **rag** (LongLive-RAG retrieval; {run('rag')}; its retrieval map is saved "
            f"too), **infinity-rope** (∞-RoPE: block-relativistic RoPE; {run('infinity-rope')}), **memrope** "
            f"(MemRoPE: evicted frames folded into two memory tokens; {run('memrope')}) and **deep-forcing** (Deep "
            "Forcing: deep sink + the history tokens recent frames attend to most; implemented per its paper, no "
            f"reference code; {run('deep-forcing')}). **Compare Grid** tiles the five decoded videos under their "
            f"names.\n\n{memory(family)} Only rag keeps a pool; the other four keep a fixed cache. Five videos are "
            "rendered: five times the time (measured per strategy in the README).\n\n**Change first:** the prompt, "
            "`length` on every sampler (the same on all five), the seed.")


def auto(family) -> str:
    """What the sampler takes from ``family`` with its widgets at auto."""
    d = family.defaults
    return (f"The sampler's widgets are left at auto (0, -1, `auto`): it takes {F.label(family)}'s own settings — "
            f"blocks of {d.frames_per_block} latent frames ({F.block_video_frames(d)} video frames), window "
            f"{d.window}, sink {d.sink}, {T.steps_text(d)}, shift {d.shift:g}, {size(family)} at {d.latent.fps} fps, "
            "shots (a `cut` line of a Prompt Schedule starts one) — and its `info` says what it used.")


LL2_ENCODER = ("**Retrieval encoder:** none has been released for this backbone, so Load Latent Encoder uses "
               "**avg_pool** descriptors (each latent frame's spatial mean, no file; less precise than a trained "
               "encoder). To train one: `python -m core build-corpus --backbone model_bf16.pt --prompts prompts.txt "
               "--text-encoder Wan2.2-TI2V-5B/ --frames 96 --out corpus/` (the text encoder folder of Wan-AI/Wan2.2-TI2V-5B "
               "or Wan2.1-T2V-1.3B), then `python -m core train-encoder "
               "--data corpus/ --out runs/enc`; put `runs/enc/encoder_best.pt` in `models/retrieval_encoders/` and "
               "pick it here.")


def ll2_t2v(family) -> str:
    return ("**{title}**\n\nLongLive 2.0 writes a 720p video from one prompt, block by block; before each block the "
            f"most similar past frames are retrieved from the History Pool as extra context. {auto(family)}\n\n"
            f"{memory(family)}\n\n{LL2_ENCODER}\n\n**Change first:** the prompt, `length` "
            f"({lengths(family, F.DURATIONS)}) and the seed. Decode uses `wan2.2_vae.safetensors`; CreateVideo is "
            f"set to {family.defaults.latent.fps} fps.")


def framewise_t2v(family) -> str:
    d = family.defaults
    return ("**{title}**\n\nCausal Forcing++ frame-wise makes the video one latent frame at a time (the first frame "
            f"in {len(d.first_steps)} steps, every later one in {len(d.steps)}), with retrieval before every frame. "
            f"The published setup stops at 81 video frames (a cache of {d.window} frames and no window); here the "
            f"window slides past it (sink {d.sink}), so the video can be long. The sampler's widgets are left at auto "
            f"(0, -1, `auto`): it takes these settings — blocks of 1 latent frame ({F.block_video_frames(d)} video "
            f"frames), window {d.window}, sink {d.sink}, {T.steps_text(d)} (the first frame "
            f"{','.join(map(str, d.first_steps))}), shift {d.shift:g} — and its `info` says what it used. The file name "
            f"`{CFPP_BACKBONE}` tells Load Backbone the variant (`framewise-1step.pt`: 1 step).\n\n{memory(family)}"
            f"\n\n**Change first:** the prompt, `length` ({lengths(family, F.DURATIONS)}) and the seed.")


def ll2_i2v(family) -> str:
    d = family.defaults
    return ("**{title}**\n\n" f"Image to video: Load Image → Upscale Image (to {size(family)}) → VAE Encode with the "
            "**Wan2.2 VAE** → the sampler's `start`. LongLive 2.0 holds the picture clean inside its first block (its "
            f"own image-to-video) and continues from it, with retrieval. {auto(family)} Width and height 0 take the "
            f"picture's size.\n\n{memory(family)}\n\n{LL2_ENCODER}\n\n**Change first:** the image, the prompt (what "
            f"happens next), `length` (the total, picture included; {lengths(family, (30,))}) and the seed. The "
            f"preview says how the length was rounded (whole blocks of {d.frames_per_block} latent frames).")


def rolling_memory(family, d) -> str:
    m = F.device_memory(family)
    return (f"**Expect** ({F.label(family)} at {size(family)}, bf16): {T.size(m.weights)} of weights + {T.size(m.cache)} "
            f"of KV cache (anchor + window: {d.sink + d.window} frames) + {T.size(m.buffers)} for the frames a call "
            f"attends = {T.size(m.weights + m.cache + m.buffers)} of VRAM before working space (the sampler asks "
            f"ComfyUI to free {T.size(m.needed)}): a {T.gpu(m.needed)} GB GPU or larger.")


def rolling(family) -> str:
    """The Rolling Forcing workflow (``family``: the Rolling Forcing variant): what the rolling sampler does and what
    the sampler takes at auto."""
    d = family.defaults
    n = len(d.steps)
    return ("**{title}**\n\nRolling Forcing writes a minute-long video from one prompt: a window of " f"{n} blocks of "
            f"{d.frames_per_block} latent frames is denoised together in one model call, each block one step less "
            "noisy than the next; the oldest leaves the window finished and a fresh block of noise enters. The "
            f"video's first block stays in the cache as an anchor ({d.sink} frames), so every call attends the anchor, "
            f"the newest clean frames and the window: {d.window} frames at most. Load Backbone recognises the file "
            f"by its name and the sampler's widgets at auto take {T.steps_text(d)}, window {d.window}, sink {d.sink} "
            f"(the `info` says what it used). One forward per block and one context pass, {size(family)} at "
            f"{d.latent.fps} fps. No retrieval (the rolling window has its own context), one prompt and no guidance.\n\n"
            f"{rolling_memory(family, d)}\n\n"
            f"**Change first:** the prompt, `length` ({lengths(family, (60, 120))}) and the seed. Causal-Forcing's "
            "`chunkwise/longvideo.pt` runs the same way (4 steps).")


def note_for(wf: dict) -> str:
    """The note of workflow ``wf``, by what it holds (its backbone decides the family it describes)."""
    title = wf["extra"]["info"]["title"]
    kinds = {n["type"] for n in wf["nodes"]}
    samplers = sum(n["type"] == "LongLiveRAG_ARBlockSampler" for n in wf["nodes"])
    has_story = "LongLiveRAG_PromptSchedule" in kinds
    backbones = {n["widgets_values"][0] for n in wf["nodes"] if n["type"] == "LongLiveRAG_LoadBackbone"}
    if ROLLING_BACKBONE in backbones:
        text = rolling(F.family_by_key("wan21").as_variant(ROLLING_PRESET))
    elif LL2_BACKBONE in backbones:
        text = (ll2_i2v if "VAEEncode" in kinds else ll2_t2v)(F.family_by_key("longlive2"))
    elif "UNETLoader" in kinds:
        text = comfy_loaders(F.family_by_key("wan21"))
    elif CFPP_BACKBONE in backbones:
        text = framewise_t2v(F.family_by_key("wan21").as_variant(CFPP_PRESET))
    else:
        family = F.family_by_key("wan21")
        if "LongLiveRAG_CompareGrid" in kinds:
            text = compare(family)
        elif samplers > 1 and "ImageStitch" in kinds:
            text = ab(family).replace("{story}", " schedule" if has_story else "")
        elif "VAEEncode" in kinds:
            text = i2v(family)
        elif samplers > 1:
            text = extend(family)
        else:
            text = (story if has_story else t2v)(family)
    return text.replace("{title}", title)
