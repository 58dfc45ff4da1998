"""Markdown tables and lists of ``facts.py``'s numbers for help pages and the README, in English and Chinese
(``BLOCKS``), and ``render``: any fragment or block by the name a generated-block marker gives."""
from __future__ import annotations

from typing import Callable

from ..context.strategies import describe
from . import facts as F
from .fact_text import EN, START, STORAGE, SWITCH, ZH, common, duration, fragment, gpu, number, passes, size, \
    steps_text, strategy_defaults_text, tr


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(str(c) for c in line) + " |" for line in lines)


def _column(family) -> str:
    others = [p for p in family.presets if p != F.label(family) and p not in family.variants]
    return F.label(family) + (f" ({', '.join(others)})" if others else "")


def family_table(lang: str = EN) -> str:
    """What the sampler takes from each family, and each variant that runs otherwise (frame-wise), at auto."""
    fams = [c for f in F.families() for c in (f, *(f.as_variant(p) for p in f.variants))]

    def row(en: str, zh: str, value: Callable) -> list[str]:
        return [tr(lang, en, zh)] + [value(f.defaults, f) for f in fams]

    def shots(d) -> str:
        cut = d.shots.on
        return SWITCH[lang][d.switch] + (tr(lang, "; a `cut` line starts a new shot", "；`cut` 行开始新镜头") if cut else "")

    rows = [
        row("width × height", "宽 × 高", lambda d, f: "{} × {}".format(*F.size_px(d))
            + tr(lang, f" (multiples of {F.size_step(f)})", f"（{F.size_step(f)} 的倍数）")),
        row("frame rate of `length`", "`length` 的帧率", lambda d, f: f"{d.latent.fps} fps"),
        row("one block", "一个块", lambda d, f: tr(lang, f"{d.frames_per_block} latent frame{'s' * (d.frames_per_block != 1)} = {F.block_video_frames(d)} "
                                                       f"video frames = {number(F.block_seconds(d))} s",
                                              f"{d.frames_per_block} 个潜空间帧 = {F.block_video_frames(d)} 个视频帧 = "
                                              f"{number(F.block_seconds(d))} 秒")),
        row("frames_per_block / local_attn_size / sink_size", "每块帧数 / 注意力窗口 / sink 帧数",
            lambda d, f: f"{d.frames_per_block} / {d.window} / {d.sink}"),
        row("steps / shift", "时间步 / 偏移", lambda d, f: f"{steps_text(d, lang)} / {d.shift:g}"),
        row("latent", "latent", lambda d, f: "{0.name}: `[B, {0.channels}, T, H/{0.stride}, W/{0.stride}]`".format(d.latent)),
        row("a prompt change", "提示词切换", lambda d, f: shots(d)),
        row("an image `start`", "图像 `start`", lambda d, f: START[lang][d.start_block]),
    ]
    return table([""] + [_column(f) for f in fams], rows)


def strategy_table(lang: str = EN) -> str:
    """Every strategy's defaults on every family, and its own options."""
    fams = F.families()
    rows = []
    for name in F.STRATEGIES:
        options = common(lambda f: ", ".join(f"`{k}={v}`" for k, v in F.strategy_defaults(name, f)["options"].items())
                         or "—", lang)
        head = tr(lang, f"**{name}** ({describe(name)['title']})", f"**{name}**")
        rows.append([head] + [strategy_defaults_text(name, f, lang) for f in fams] + [options])
    return table([tr(lang, "strategy", "策略")] + [F.label(f) for f in fams] + [tr(lang, "options", "选项")], rows)


def strategy_memory(lang: str = EN) -> str:
    """Device memory of each strategy's window at each family's published size (bf16), weights apart."""
    fams = [f for f in F.families() if F.released(f) is not None]

    def cell(name, f) -> str:
        m = F.device_memory(f, name)
        if m is None:
            return "—"
        return size(m.cache) + (tr(lang, f" + {size(m.buffers)} buffers", f" + 缓冲 {size(m.buffers)}") if m.buffers else "")

    head = [tr(lang, "strategy", "策略")] + [tr(lang, "{}, {}×{}", "{}，{}×{}").format(F.label(f), *F.size_px(f.defaults))
                                            for f in fams]
    return table(head, [[f"**{name}**"] + [cell(name, f) for f in fams] for name in F.STRATEGIES])


def pool_memory(lang: str, family) -> str:
    """History pool bytes per frame and after each of DURATIONS, per storage."""
    d, pool = family.defaults, F.pool_table(family)
    head = [tr(lang, "History Pool storage", "历史池存储"), tr(lang, "per frame", "每帧")] + [
        tr(lang, f"{duration(t)} ({F.pooled_frames(d, t)} frames)", f"{duration(t, ZH)}（{F.pooled_frames(d, t)} 帧）")
        for t in F.DURATIONS]
    return table(head, [[STORAGE[lang][s]] + [size(b) for b in pool[s]] for s in pool])


def device_memory(lang: str, family) -> str:
    """One run's device bytes at the published size by what holds them, exact settings; then the compact settings."""
    r, rag, native = F.released(family), F.device_memory(family, "rag"), F.device_memory(family, "native")
    shared, fp8 = F.device_memory(family, "rag", F.SHARED), F.device_memory(family, "rag", F.COMPACT, "fp8")
    d, item = family.defaults, F.DTYPE.itemsize
    per_frame = tr(lang, f"{r.layers} layers × {r.tokens} tokens", f"{r.layers} 层 × {r.tokens} 个 token") + \
        f" × {r.heads * r.head_dim} × 2 (K, V) × {item}"
    if 2 * r.layers * r.tokens * r.heads * r.head_dim * item * d.window != rag.cache:
        raise ValueError(f"the KV cache of {family.name} is not {d.window} frames × {per_frame} bytes as "
                         "budget.py computes it; update device_memory's explanation")
    k = F.RETRIEVAL.top_k
    rows = [
        [tr(lang, "backbone weights", "主干权重"), size(rag.weights),
         tr(lang, f"{r.parameters:,} parameters × {item} bytes (fp8 weights: {size(fp8.weights)})",
            f"{r.parameters:,} 个参数 × {item} 字节（fp8 权重：{size(fp8.weights)}）")],
        [tr(lang, f"KV cache, {d.window}-frame window", f"KV 缓存，{d.window} 帧窗口"), size(rag.cache),
         tr(lang, f"{d.window} frames × {per_frame} bytes (fp8: {size(fp8.cache)})",
            f"{d.window} 帧 × {per_frame} 字节（fp8：{size(fp8.cache)}）")],
        [tr(lang, "context buffers (retrieval and the other relative-RoPE strategies)", "上下文缓冲（检索及其他相对 RoPE 策略）"),
         size(rag.buffers),
         tr(lang, f"per layer: the window's K/V again, pre-rotated; shared by all layers: {size(shared.buffers)}",
            f"每层一份：窗口的 K/V 再存一份（已旋转）；所有层共用：{size(shared.buffers)}")],
        [tr(lang, "retrieved frames", "检索到的帧"), size(rag.retrieved),
         tr(lang, f"{k} frames as read from the pool", f"从历史池读出的 {k} 帧")],
        [tr(lang, "the prompt's K/V and the largest transient", "提示词的 K/V 与最大的临时张量"),
         size(rag.text + rag.activations),
         tr(lang, "512 prompt rows in every layer; one block's feed-forward layer",
            "每层 512 行提示词；一个块的前馈层")],
        [tr(lang, "sum with retrieval", "检索时合计"), size(rag.total),
         tr(lang, f"the sampler asks ComfyUI to free 1.1 × this (native: {size(native.total)}); shared context "
                  f"buffers: {size(shared.total)}; + fp8 KV and fp8 weights: {size(fp8.total)}",
            f"采样器请求 ComfyUI 释放 1.1 × 此值（native：{size(native.total)}）；共用上下文缓冲：{size(shared.total)}；"
            f"再加 fp8 KV 与 fp8 权重：{size(fp8.total)}")],
    ]
    return table(["", tr(lang, "bytes", "字节"), ""], rows)


def sampler_memory(lang: str = EN) -> str:
    """Per family: time per block, blocks per 30 s, device memory, the pool's growth (the sampler's help page)."""
    lines = []
    for f in F.families():
        d, native, rag, pool = f.defaults, F.device_memory(f), F.device_memory(f, "rag"), F.pool_table(f)
        if native is None:
            continue
        shared, compact = F.device_memory(f, "rag", F.SHARED), F.device_memory(f, "rag", F.COMPACT, "fp8")
        blocks = F.latent_frames_for(d, 30) // d.frames_per_block
        head = tr(lang, "- **{}, {}×{}**: ", "- **{}，{}×{}**：").format(F.label(f), *F.size_px(d))
        lines.append(head + tr(
            lang,
            f"a block of {d.frames_per_block} latent frames costs {passes(d)} backbone passes ({passes(d) - 1} "
            f"denoising steps + 1 context pass); a 30 s video is {blocks} blocks. {size(native.weights)} of weights and "
            f"{size(native.cache)} of KV cache ({d.window} frames); retrieval and the other relative-RoPE strategies "
            f"keep context buffers of the window's size, per layer ({size(rag.buffers)}) or shared by all layers "
            f"({size(shared.buffers)}). The sampler asks for {size(native.needed)} ({size(rag.needed)} with "
            f"retrieval): a {gpu(native.needed)} GB GPU ({gpu(rag.needed)} GB with retrieval; with the memory settings "
            f"at auto, {gpu(shared.needed)} GB lossless, {gpu(compact.needed)} GB with fp8 weights and KV). None of this grows "
            f"with the length. With retrieval, the pool grows by {size(pool['kv'][0])} per latent frame in RAM by "
            f"default (30 s ≈ {size(pool['kv'][1])}).",
            f"每个 {d.frames_per_block} 个潜空间帧的块需要 {passes(d)} 次主干前向（{passes(d) - 1} 个去噪步 + 1 次上下文前向）；"
            f"30 秒视频为 {blocks} 个块。权重 {size(native.weights)}，KV 缓存 {size(native.cache)}（{d.window} 帧）；"
            f"检索及其他相对 RoPE 策略保留窗口大小的上下文缓冲：每层一份（{size(rag.buffers)}）或所有层共用（{size(shared.buffers)}）。"
            f"采样器请求 {size(native.needed)}（检索时 {size(rag.needed)}）：需要 {gpu(native.needed)} GB 显卡（检索时 "
            f"{gpu(rag.needed)} GB；显存设置为 auto 时无损 {gpu(shared.needed)} GB，fp8 权重与 KV 时 {gpu(compact.needed)} GB）。这些都不随长度增长。启用检索时，历史池默认在内存中每个潜空间帧增长 "
            f"{size(pool['kv'][0])}（30 秒 ≈ {size(pool['kv'][1])}）。"))
    return "\n".join(lines)


def backbone_memory(lang: str = EN) -> str:
    """Per family: weights, KV cache, context buffers (the Load Backbone page)."""
    lines = []
    for f in F.families():
        d, rag = f.defaults, F.device_memory(f, "rag")
        if rag is None:
            continue
        w, h = F.size_px(d)
        lines.append(tr(lang, f"- {F.label(f)}: {size(rag.weights)} of weights, plus the KV cache ({size(rag.cache)} for "
                              f"its {d.window}-frame window at {w}×{h}; with retrieval another {size(rag.buffers)} of "
                              "context buffers, one per layer, or less shared). fp8 weights (`weights`) halve the "
                              "weights.",
                        f"- {F.label(f)}：权重 {size(rag.weights)}，另加 KV 缓存（{w}×{h} 下 {d.window} 帧窗口为 "
                        f"{size(rag.cache)}；启用检索时再加 {size(rag.buffers)} 上下文缓冲，每层一份，共用时更少）。"
                        "fp8 权重（`weights`）使权重减半。"))
    return "\n".join(lines)


def decode_memory(lang: str = EN) -> str:
    """Per family: RAM of the decoded frames (float32), per frame and for 30 s / 2 min."""
    lines = []
    for f in F.families():
        d = f.defaults
        w, h = F.size_px(d)
        per = F.decoded_frame(d)
        spans = [(t, F.length_for(d, t)) for t in (F.DURATIONS[0], F.DURATIONS[-1])]
        lines.append(tr(lang, f"- {w}×{h} ({F.label(f)}): {size(per)} per frame. " + ", ".join(
                            f"{duration(t)} ({n} frames) ≈ {size(n * per)}" for t, n in spans) + ".",
                        f"- {w}×{h}（{F.label(f)}）：每帧 {size(per)}。" + "，".join(
                            f"{duration(t, ZH)}（{n} 帧）≈ {size(n * per)}" for t, n in spans) + "。"))
    return "\n".join(lines)


BLOCKS: dict[str, Callable[..., str]] = {
    "family-table": family_table, "strategy-table": strategy_table, "strategy-memory": strategy_memory,
    "pool-memory": pool_memory, "device-memory": device_memory, "sampler-memory": sampler_memory,
    "backbone-memory": backbone_memory, "decode-memory": decode_memory,
}
PER_FAMILY = ("pool-memory", "device-memory")       # these take a family key: pool-memory:wan21


def render(name: str, lang: str = EN) -> str:
    """A fragment (fact_text.FRAGMENTS) or a block by name, ``block:family-key`` for the per-family blocks."""
    base, _, arg = name.partition(":")
    if base in PER_FAMILY:
        if not arg:
            raise KeyError(f"block '{base}' needs a family: {base}:<{'|'.join(F.key(f) for f in F.families())}>")
        return BLOCKS[base](lang, F.family_by_key(arg))
    if arg:
        raise KeyError(f"'{base}' takes no family (got '{name}')")
    return BLOCKS[base](lang) if base in BLOCKS else fragment(base, lang)
