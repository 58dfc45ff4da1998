"""The Markdown note of each shipped workflow (workflows/build.py puts it at the left, template_meta.py adds the
file list): what the workflow does, what to expect (memory, time), what to change first."""
from __future__ import annotations

MEMORY = ("**Expect** (Wan 1.3B, 480×832, bf16): ~6 GB of VRAM for the backbone and its cache; the History Pool "
          "keeps ~274 MB per latent frame that leaves the window (~29 GB for 30 s) in RAM — give it a budget to "
          "spill to disk. A 30 s video is 40 blocks of 5 forwards each.")
T2V = ("**{title}**\n\nWrites a long video from one prompt, block by block; before each block the most similar "
       "past frames are retrieved from the History Pool as extra context, so the video stays consistent.\n\n"
       + MEMORY + "\n\n**Change first:** the prompt, `length` (video frames at 16 fps: 477 ≈ 30 s, 957 ≈ 60 s) "
       "and the seed.")
AB = ("**{title}**\n\nThe same prompt and seed twice: with the plain sliding window (A) and with retrieval (B), "
      "side by side, plus the retrieval map (which past frame each block used).\n\n" + MEMORY
      + " Two videos are rendered: twice the time.\n\n**Change first:** the prompt{story}, `length` on both samplers.")
STORY = ("**{title}**\n\nA story: the **Prompt Schedule** lists timed prompts (`0s: …`, `12s: …`); at each "
         "switch LongLive re-encodes the recent frames under the new prompt (KV re-cache) so the scene follows "
         "without a cut. The preview below the schedule shows where each prompt begins after rounding to a "
         "block.\n\n" + MEMORY + "\n\n**Change first:** the schedule's lines, `length` (it must outlast the "
         "last prompt), the seed.")

I2V = ("**{title}**\n\nStarts from a picture: Load Image → Upscale Image (to the video's size, 832×480; the "
       "sampler's width and height are 0: the start's size) → VAE Encode (Wan2.1 VAE) → the sampler's `start`. The picture is the video's first frame, kept as encoded, and "
       "the backbone continues from it, with retrieval.\n\n" + MEMORY + "\n\n**Change first:** the image, the "
       "prompt (what happens next), `length` (the total, picture included: 477 ≈ 30 s) and the seed. The preview "
       "says how the length was rounded.")
EXTEND = ("**{title}**\n\nSampler 1 makes the first 10 s; sampler 2 takes its latent as `start` and continues it "
          "to 30 s with the same seed: exactly the video one 30 s run makes. Only sampler 2's video is saved (it "
          "begins with sampler 1's).\n\n" + MEMORY + "\n\n**Change first:** the prompt, the seed (the same on "
          "both), sampler 2's `length`. Queued again with a longer `length`, sampler 2 replays the frames it made "
          "instead of regenerating them.")


COMPARE = ("**{title}**\n\nThe same prompt and seed five times, once per long-context strategy, each with its "
           "published window and sink (set on its **Context Strategy** node): **native** sliding window (the "
           "baseline), **rag** (LongLive-RAG retrieval; its retrieval map is saved too), **infinity-rope** (∞-RoPE: "
           "block-relativistic RoPE, window 6), **memrope** (MemRoPE: evicted frames folded into two memory tokens) "
           "and **deep-forcing** (Deep Forcing: deep sink + the history tokens recent frames attend to most; "
           "implemented per its paper, no reference code). **Compare Grid** tiles the five decoded videos under their "
           "names.\n\n" + MEMORY + " Only rag keeps a pool; the other four keep a fixed cache. Five videos are "
           "rendered: five times the time (measured per strategy in the README).\n\n**Change first:** the prompt, "
           "`length` on every sampler (the same on all five), the seed.")


# LongLive 2.0 (Wan2.2-TI2V-5B) at 704×1280 in bf16; figures from README "Memory to expect"
LL2_AUTO = ("The sampler's widgets are left at auto (0, -1, `auto`): it takes LongLive 2.0's own settings — blocks of "
            "8 latent frames (32 video frames), window 32, sink 8, a UniPC solver of 4 steps per block, shift 5, "
            "1280×704 at 24 fps, shots (a `cut` line of a Prompt Schedule starts one) — and its `info` says what it "
            "used.")
LL2_MEMORY = ("**Expect** (LongLive 2.0 5B, 704×1280, bf16): 9.3 GiB of weights + 9.7 GiB of KV cache (32 frames) "
              "+ 9.7 GiB of context buffers with retrieval (the window's K/V pre-rotated, the 6 retrieved frames "
              "among them) ≈ 28.7 GiB of VRAM before working space (the sampler asks ComfyUI to free ~36 GiB): a "
              "40 GB GPU or larger (32 GB without retrieval); on 24 GB lower width/height (memory falls with the "
              "pixel count; LongLive 2.0 was trained at 1280×704). The History Pool keeps 309 MiB per latent frame "
              "that leaves the window (~45 GiB for 30 s) in RAM — give it a budget to spill to disk, or kv-half "
              "(half). A 30 s video is 23 blocks of 5 forwards each (4 UniPC steps + 1 context pass).")
LL2_ENCODER = ("**Retrieval encoder:** none has been released for this backbone, so Load Latent Encoder uses "
               "**avg_pool** descriptors (each latent frame's spatial mean, no file; less precise than a trained "
               "encoder). To train one: `python -m core build-corpus --backbone model_bf16.pt --prompts prompts.txt "
               "--text-encoder Wan2.2-TI2V-5B/ --frames 96 --out corpus/` (the text encoder folder of Wan-AI/Wan2.2-TI2V-5B "
               "or Wan2.1-T2V-1.3B), then `python -m core train-encoder "
               "--data corpus/ --out runs/enc`; put `runs/enc/encoder_best.pt` in `models/retrieval_encoders/` and "
               "pick it here.")
LL2_T2V = ("**{title}**\n\nLongLive 2.0 writes a 720p video from one prompt, block by block; before each block the "
           "most similar past frames are retrieved from the History Pool as extra context. " + LL2_AUTO + "\n\n"
           + LL2_MEMORY + "\n\n" + LL2_ENCODER + "\n\n**Change first:** the prompt, `length` (video frames at 24 "
           "fps: 721 ≈ 30 s, 1441 ≈ 60 s, 2881 ≈ 2 min) and the seed. Decode uses `wan2.2_vae.safetensors`; "
           "CreateVideo is set to 24 fps.")
LL2_I2V = ("**{title}**\n\nImage to video: Load Image → Upscale Image (to 1280×704) → VAE Encode with the **Wan2.2 "
           "VAE** → the sampler's `start`. LongLive 2.0 holds the picture clean inside its first block (its own "
           "image-to-video) and continues from it, with retrieval. " + LL2_AUTO + " Width and height 0 take the "
           "picture's size.\n\n" + LL2_MEMORY + "\n\n" + LL2_ENCODER + "\n\n**Change first:** the image, the "
           "prompt (what happens next), `length` (the total, picture included: 721 ≈ 30 s at 24 fps) and the seed. "
           "The preview says how the length was rounded (whole blocks of 8 latent frames).")


def note_for(wf: dict) -> str:
    title = wf["extra"]["info"]["title"]
    kinds = {n["type"] for n in wf["nodes"]}
    if any(n["type"] == "LongLiveRAG_LoadBackbone" and n["widgets_values"][0] == "model_bf16.pt" for n in wf["nodes"]):
        return (LL2_I2V if "VAEEncode" in kinds else LL2_T2V).format(title=title)
    if "LongLiveRAG_CompareGrid" in kinds:
        return COMPARE.format(title=title)
    samplers = sum(n["type"] == "LongLiveRAG_ARBlockSampler" for n in wf["nodes"])
    story = "LongLiveRAG_PromptSchedule" in kinds
    if samplers > 1 and "ImageStitch" in kinds:
        return AB.format(title=title, story=" schedule" if story else "")
    if "VAEEncode" in kinds:
        return I2V.format(title=title)
    if samplers > 1:
        return EXTEND.format(title=title)
    return (STORY if story else T2V).format(title=title)
