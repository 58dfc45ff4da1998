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

I2V = ("**{title}**\n\nStarts from a picture: Load Image → Upscale Image (to the sampler's width × height) → VAE "
       "Encode (Wan2.1 VAE) → the sampler's `start`. The picture is the video's first frame, kept as encoded, and "
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


def note_for(wf: dict) -> str:
    title = wf["extra"]["info"]["title"]
    kinds = {n["type"] for n in wf["nodes"]}
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
