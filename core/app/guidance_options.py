"""The command line's shot and guidance options (LongLive 2.0): what a cut does, and classifier-free guidance with
a negative prompt over a second KV cache (core/sampling/guidance.py)."""
from __future__ import annotations

import argparse

FAMILY = "(default: the backbone family's: {})"


def add_shot_and_guidance_options(p: argparse.ArgumentParser, per_family) -> None:
    """``per_family(fn)``: each family's value of ``fn(FamilyDefaults)`` as text (the CLI's help helper)."""
    w = p.add_argument_group("shots and guidance (LongLive 2.0)")
    w.add_argument("--shot-rope-offset", type=float, help="a 'cut' prompt (new shot) moves the RoPE position of later "
                   "frames by this many frames " + FAMILY.format(per_family(lambda d: f"{d.shots.rope_offset:g}")))
    w.add_argument("--multi-shot-sink", action=argparse.BooleanOptionalAction, default=None,
                   help="native mode: a new shot's first block is kept behind the sink "
                        + FAMILY.format(per_family(lambda d: "on" if d.shots.sink else "off")))
    w.add_argument("--shot-clean-recache", action=argparse.BooleanOptionalAction, default=None,
                   help="with the multi-shot sink: at a cut, clear the cache down to the sink before the new shot's "
                        "first block is cached, so the new shot forgets the old one (LongLive 2.0's "
                        "shot_clean_recache; default off, as published)")
    w.add_argument("--guidance-scale", type=float, default=None,
                   help="classifier-free guidance: 1 = none (default, as published: one forward per step); otherwise "
                        "each step runs the model on the prompt and on the negative prompt, each over its own KV "
                        "cache (twice the cache memory and the time), mixed as uncond + scale·(cond − uncond). "
                        "LongLive 2.0 trains with 3. Not with retrieval (rag)")
    w.add_argument("--negative-prompt", default=None,
                   help="text runs with --guidance-scale: the negative prompt (default: the backbone family's, for "
                        "LongLive 2.0 Wan's published one). --embeds runs read 'negative_prompt_embeds' [1, L, D] "
                        "from the embeddings file")


def negative_text(args, defaults) -> str | None:
    """The negative prompt a guided text run encodes (None: the run is not guided, or reads its own from --embeds)."""
    if args.negative_prompt is not None and getattr(args, "embeds", None) is not None:
        raise ValueError("--negative-prompt is text: an --embeds run reads its negative prompt from the file "
                         "('negative_prompt_embeds' [1, L, D]); save it there, or generate from text")
    if args.guidance_scale is None or args.guidance_scale == 1:
        if args.negative_prompt is not None:
            raise ValueError("--negative-prompt is used only with guidance: add --guidance-scale (LongLive 2.0 "
                             "trains with 3) or drop it")
        return None
    return args.negative_prompt if args.negative_prompt is not None else defaults.negative_prompt
