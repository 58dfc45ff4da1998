"""The numbers of ``facts.py`` as the words users read, in English and Chinese: named fragments for tooltips and
sentences (``fragment``); the Markdown tables and lists of help pages and the README are in ``fact_tables.py``.

Help pages and the README hold them between markers that ``python locales/build.py`` rewrites, so the prose
around them stays hand-written::

    <!-- generated:strategy-table -->            (a block: its own lines)
    ...
    <!-- /generated -->
    a block is <!-- generated:block-lengths -->...<!-- /generated --> long   (inline)

``fact_tables.render`` draws any fragment or block by the name a marker gives.
"""
from __future__ import annotations

from typing import Callable

from ..context.strategies import describe
from ..sampling import limits
from . import facts as F

EN, ZH = "en", "zh"
LANGS = (EN, ZH)
SWITCH = {EN: {"recache": "KV re-cache", "none": "the prompt only", "flush": "KV flush"},
          ZH: {"recache": "KV 重新缓存", "none": "只换提示词", "flush": "KV 清空"}}
START = {EN: {"short": "its own first block of 1 frame", "clamp": "held clean inside the first block"},
         ZH: {"short": "单独一个 1 帧的首块", "clamp": "在第一块之内保持干净"}}
STORAGE = {EN: {"kv": "kv (exact, the published behaviour)", "kv-half": "kv-half (half the bytes, approximate)",
                "kv-fp8": "kv-fp8 (fp8 with per-token scales, approximate)",
                "latent": "latent (K/V recomputed on retrieval, approximate)"},
           ZH: {"kv": "kv（精确，论文行为）", "kv-half": "kv-half（字节减半，近似）",
               "kv-fp8": "kv-fp8（fp8，每 token 一个缩放，近似）", "latent": "latent（检索时重算 K/V，近似）"}}
GPUS_GB = (8, 12, 16, 24, 32, 40, 48, 80, 96, 141, 192)     # common GPU memory sizes
GPU_SPARE = 2**30                                          # what the CUDA context and the decode need beside


def tr(lang: str, en: str, zh: str) -> str:
    return zh if lang == ZH else en


def size(n: int) -> str:
    """Bytes in binary units: 195 KiB, 274.2 MiB, 28.9 GiB."""
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{round(n / 2**10)} KiB"


def number(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


def duration(seconds: float, lang: str = EN) -> str:
    """30 s, 2 min / 30 秒, 2 分钟."""
    if seconds >= 120 and seconds % 60 == 0:
        return tr(lang, f"{seconds // 60:g} min", f"{seconds // 60:g} 分钟")
    return tr(lang, f"{number(seconds)} s", f"{number(seconds)} 秒")


def each(value: Callable, lang: str = EN, families=None) -> str:
    """One value per family, labelled: 'Wan 1.3B 832, LongLive 2.0 1280' / 'Wan 1.3B 为 832，LongLive 2.0 为 1280'.
    ``value(family)`` None leaves the family out."""
    items = [(F.label(f), v) for f in (families or F.families()) if (v := value(f)) is not None]
    nested = any("," in str(v) or "，" in str(v) for _, v in items)
    if lang == ZH:
        return "；".join(f"{name}：{v}" for name, v in items) if nested else "，".join(f"{name} 为 {v}" for name, v in items)
    return ("; " if nested else ", ").join(f"{name} {v}" for name, v in items)


def common(value: Callable, lang: str = EN) -> str:
    """The value every family shares, once ('4'); else one per family as ``each``."""
    values = {str(value(f)) for f in F.families()}
    return values.pop() if len(values) == 1 else each(value, lang)


def steps_text(d, lang: str = EN) -> str:
    """How a family denoises a block, in words (the one place the texts read the sampler's steps)."""
    if d.sampler == "unipc":
        return tr(lang, f"a UniPC solver of {d.sampling_steps} steps per block", f"每块 {d.sampling_steps} 步的 UniPC 求解器")
    if d.sampler == "rolling":
        return tr(lang, f"rolling: {len(d.steps)} blocks denoised together, timesteps ",
                  f"滚动：{len(d.steps)} 个块一起去噪，时间步 ") + ",".join(map(str, d.steps))
    first = getattr(d, "first_steps", ())
    return tr(lang, "timesteps ", "时间步 ") + ",".join(map(str, d.steps)) + \
        (tr(lang, " (the first block ", "（首块 ") + ",".join(map(str, first)) + tr(lang, ")", "）") if first else "")


def passes(d) -> int:
    """Backbone forwards per generated block: its denoising steps + 1 context pass."""
    return (d.sampling_steps if d.sampler == "unipc" else len(d.steps)) + 1


def length_text(d, seconds: float, lang: str = EN) -> str:
    """'477 ≈ 30 s': the length to type for about ``seconds`` (whole blocks, so nothing is rounded)."""
    n = F.length_for(d, seconds)
    actual = n / d.latent.fps
    return f"{n} ≈ " + duration(seconds if abs(actual - seconds) < 0.25 else round(actual, 1), lang)


def strategy_defaults_text(name: str, family, lang: str = EN) -> str:
    """'window 12, sink 1, 6 retrieved, switch recache': strategy ``name``'s defaults on ``family``."""
    d = F.strategy_defaults(name, family)
    parts = [tr(lang, f"window {d['window']}", f"窗口 {d['window']}"), f"sink {d['sink']}"]
    if d["top_k"]:
        parts.append(tr(lang, f"{d['top_k']} retrieved", f"检索 {d['top_k']} 帧"))
    parts.append(tr(lang, f"switch {d['switch']}", f"切换 {d['switch']}"))
    text = tr(lang, ", ", "，").join(parts)
    if not F.strategy_runs(name, family):
        fpb = family.defaults.frames_per_block
        text += tr(lang, f" (too small for blocks of {fpb}: set a larger window)", f"（放不下每块 {fpb} 帧：请设更大的窗口）")
    return text


def by_strategy(get: Callable, lang: str = EN) -> str:
    """One entry per strategy, a single value when every family has the same, else one per family:
    'native (Wan 1.3B 12, LongLive 2.0 32); infinity-rope 6; ...'. ``get(name, family)`` None skips it."""
    out = []
    for name in F.STRATEGIES:
        values = {F.label(f): get(name, f) for f in F.families()}
        if all(v is None for v in values.values()):
            continue
        if len(set(values.values())) == 1:
            out.append(f"{name} {next(iter(values.values()))}")
        else:
            inner = each(lambda f: get(name, f), lang)
            out.append(tr(lang, f"{name} ({inner})", f"{name}（{inner}）"))
    return tr(lang, "; ", "；").join(out)


def _options(name: str, family) -> str | None:
    options = F.strategy_defaults(name, family)["options"]
    return ", ".join(f"{k}={v}" for k, v in options.items()) or None


def _pool(storage: str, at: int | None = None):
    """family → the pool's bytes per frame (``at`` None) or after DURATIONS[at], as text."""
    def value(f):
        table = F.pool_table(f)
        return None if table is None else size(table[storage][0 if at is None else at + 1])
    return value


def _block_lengths(lang: str) -> str:
    def one(f):
        d = f.defaults
        return tr(lang, f"{d.frames_per_block} latent frames = {F.block_video_frames(d)} video frames = "
                        f"{number(F.block_seconds(d))} s",
                  f"{d.frames_per_block} 个潜空间帧 = {F.block_video_frames(d)} 个视频帧 = {number(F.block_seconds(d))} 秒")
    return tr(lang, "; ", "；").join(tr(lang, f"{F.label(f)}: {one(f)}", f"{F.label(f)}：{one(f)}") for f in F.families())


def _lengths(lang: str) -> str:
    def one(f):
        d = f.defaults
        return tr(lang, ", ", "，").join(length_text(d, t, lang) for t in F.DURATIONS)
    return tr(lang, "; ", "；").join(
        tr(lang, f"{F.label(f)} ({f.defaults.latent.fps} fps): {one(f)}", f"{F.label(f)}（{f.defaults.latent.fps} fps）：{one(f)}")
        for f in F.families())


def _timing(family, lang: str) -> str:
    d = family.defaults
    return tr(lang, f"{d.latent.fps} fps, blocks of {d.frames_per_block}", f"{d.latent.fps} fps，每块 {d.frames_per_block} 帧")


def _pool_grows(lang: str) -> str:
    def one(f):
        table = F.pool_table(f)
        if table is None:
            return None
        per, t30, t120 = size(table["kv"][0]), size(table["kv"][1]), size(table["kv"][3])
        return tr(lang, f"{per} per frame, {t30} for 30 s, {t120} for 2 min",
                  f"每帧 {per}，30 秒 {t30}，2 分钟 {t120}")
    return each(one, lang)


def _published(f, lang: str) -> str:
    d = f.defaults
    w, h = F.size_px(d)
    shots = d.shots.on
    return tr(lang, f"{w}×{h} at {d.latent.fps} fps, blocks of {d.frames_per_block}, window {d.window}, sink {d.sink}, "
                    f"{steps_text(d, lang)}" + (", shots" if shots else ""),
              f"{w}×{h}，{d.latent.fps} fps，每块 {d.frames_per_block} 帧，窗口 {d.window}，sink {d.sink}，"
              f"{steps_text(d, lang)}" + ("，多镜头" if shots else ""))


def _strategy_choices(lang: str) -> str:
    """One line per strategy: what it does, what it costs, its defaults on each family (the combo's tooltip)."""
    lines = []
    for name in F.STRATEGIES:
        d = describe(name)
        defaults = each(lambda f: strategy_defaults_text(name, f, lang), lang)
        lines.append(f"{name}: {d['summary']}. {d['tradeoffs']} Memory: {d['memory']} (defaults: {defaults})")
    return "\n".join(lines)


def _window_split(lang: str) -> str:
    """What one block attends to on the default family, natively and with retrieval (the window diagram)."""
    d, k = F.default_family().defaults, F.RETRIEVAL.top_k
    local, block = d.window - d.sink - d.frames_per_block, d.frames_per_block
    return tr(lang, f"both contexts are {d.window} frames: native sink {d.sink} + recent {local} + block {block}; "
                    f"LongLive-RAG sink {d.sink} + retrieved {k} + recent {local - k} + block {block}",
              f"两种模式的上下文都是 {d.window} 帧：原生：sink {d.sink} + 最近 {local} + 当前块 {block}；"
              f"LongLive-RAG：sink {d.sink} + 检索 {k} + 最近 {local - k} + 当前块 {block}")


def _retrieval_window(f) -> str:
    d, k = f.defaults, F.RETRIEVAL.top_k
    return f"{d.window} ≥ {d.sink} + {k} + {d.frames_per_block}"


def _weights(f):
    m = F.device_memory(f)
    return None if m is None else size(m.weights)


def _gpus(f, lang: str):
    """The smallest common GPU for a run at the published size, natively and with retrieval."""
    native, rag = F.device_memory(f), F.device_memory(f, "rag")
    if native is None:
        return None
    return tr(lang, f"{gpu(native.needed)} GB ({gpu(rag.needed)} GB with retrieval)",
              f"{gpu(native.needed)} GB（检索时 {gpu(rag.needed)} GB）")


def gpu(needed: int) -> int:
    """The smallest common GPU (GB) that holds ``needed`` bytes with GPU_SPARE to spare."""
    return next((g for g in GPUS_GB if g * 2**30 >= needed + GPU_SPARE), GPUS_GB[-1])


def _heads(f):
    r = F.released(f)
    return None if r is None else r.heads


FRAGMENTS: dict[str, Callable[[str], str]] = {
    "width": lambda lang: each(lambda f: F.size_px(f.defaults)[0], lang),
    "height": lambda lang: each(lambda f: F.size_px(f.defaults)[1], lang),
    "size": lambda lang: each(lambda f: "{}×{}".format(*F.size_px(f.defaults)), lang),
    "size-step": lambda lang: each(F.size_step, lang),
    "fps": lambda lang: each(lambda f: f"{f.defaults.latent.fps} fps", lang),
    "block": lambda lang: each(lambda f: f.defaults.frames_per_block, lang),
    "window": lambda lang: each(lambda f: f.defaults.window, lang),
    "sink": lambda lang: each(lambda f: f.defaults.sink, lang),
    "shift": lambda lang: common(lambda f: f"{f.defaults.shift:g}", lang),
    "steps": lambda lang: each(lambda f: steps_text(f.defaults, lang), lang),
    "channels": lambda lang: each(lambda f: f.defaults.latent.channels, lang),
    "latent-layout": lambda lang: each(lambda f: "{0.name} [B, {0.channels}, T, H/{0.stride}, W/{0.stride}]"
                                       .format(f.defaults.latent), lang),
    "published": lambda lang: each(lambda f: _published(f, lang), lang),
    "time-stride": lambda lang: common(lambda f: F.time_stride(f.defaults), lang),
    "heads": lambda lang: each(_heads, lang),
    "weights": lambda lang: each(_weights, lang),
    "gpus": lambda lang: each(lambda f: _gpus(f, lang), lang),
    "timing": lambda lang: each(lambda f: _timing(f, lang), lang),
    "default-timing": lambda lang: tr(lang, "{} ({})", "{}（{}）").format(F.label(F.default_family()),
                                                                         _timing(F.default_family(), lang)),
    "block-lengths": _block_lengths,
    "block-seconds": lambda lang: each(lambda f: duration(round(F.block_seconds(f.defaults), 2), lang), lang),
    "lengths": _lengths,
    "pool-frame": lambda lang: each(_pool("kv"), lang),
    "pool-grows": _pool_grows,
    "latent-pool-frame": lambda lang: each(_pool("latent"), lang),
    "top-k": lambda lang: str(F.RETRIEVAL.top_k),
    "recent-exclude": lambda lang: str(F.RETRIEVAL.recent_exclude),
    "retrieval-window": lambda lang: each(_retrieval_window, lang),
    "window-split": _window_split,
    "strategy-windows": lambda lang: by_strategy(lambda n, f: F.strategy_defaults(n, f)["window"], lang),
    "strategy-sinks": lambda lang: by_strategy(lambda n, f: F.strategy_defaults(n, f)["sink"], lang),
    "strategy-switches": lambda lang: by_strategy(lambda n, f: F.strategy_defaults(n, f)["switch"], lang),
    "strategy-options": lambda lang: by_strategy(_options, lang),
    "strategy-choices": _strategy_choices,
    "run-limits": lambda lang: tr(
        lang, f"lengths above {duration(limits.MAX_SECONDS)}, sides above {limits.MAX_SIDE_PX} px, windows above "
              f"{limits.MAX_WINDOW} latent frames and more than {limits.MAX_STEPS} steps per block",
        f"超过 {duration(limits.MAX_SECONDS, ZH)} 的长度、超过 {limits.MAX_SIDE_PX} px 的边长、超过 {limits.MAX_WINDOW} "
        f"个潜在帧的窗口和每块超过 {limits.MAX_STEPS} 步"),
}


def fragment(name: str, lang: str = EN) -> str:
    """A named sentence fragment (FRAGMENTS) in ``lang``."""
    if name not in FRAGMENTS:
        raise KeyError(f"no text fragment '{name}'; known: {', '.join(sorted(FRAGMENTS))}")
    return FRAGMENTS[name](lang)
