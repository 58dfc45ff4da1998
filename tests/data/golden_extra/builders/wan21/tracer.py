"""Numerically transparent instrumentation of the reference's causal model: every generator call, the keys each
self-attention layer attended, and a mirror of the layer-0 cache slots labelled by frame (from the reference's
own cache_update_info, applied the way _apply_cache_updates applies it), so the trace can say which frames each
call attended."""
from __future__ import annotations

import torch


def stats(x: torch.Tensor) -> dict:
    x = x.double()
    return {"sum": x.sum().item(), "abs_sum": x.abs().sum().item(), "min": x.min().item(), "max": x.max().item()}


class Tracer:
    def __init__(self, model, attention_module, frame_tokens: int, sink: int, memory_size: int = 0):
        self.model, self.f, self.sink, self.memory = model, frame_tokens, sink, memory_size
        self.calls: list[dict] = []
        self.current: dict | None = None
        self.labels: list[str] = []          # layer-0 cache slot -> label ("f12@ctx")
        self.cache_tokens = 0                # set by the builder once the cache exists
        self.pool: list[str] = []            # LongLive-RAG: layer-0 CPU pool entries (labels)
        self._keys: list[int] = []
        orig_attn = attention_module.attention

        def attention(q, k, v, *a, **kw):
            self._keys.append(k.shape[1])
            return orig_attn(q, k, v, *a, **kw)
        attention_module.attention = attention

        orig_apply = model._apply_cache_updates

        def apply(kv_cache, infos):
            self._mirror(infos)
            return orig_apply(kv_cache, infos)
        model._apply_cache_updates = apply

    def begin(self, kind: str, start_frame: int, num_frames: int, timestep, extra: dict | None = None):
        self._keys = []
        self.pool_before = list(self.pool)
        self.current = {"kind": kind, "start_frame": start_frame, "num_frames": num_frames,
                        "timestep": float(timestep.flatten()[0]), **(extra or {})}

    def end(self, x0: torch.Tensor | None):
        c = self.current
        c["self_attn_key_tokens_per_layer"] = list(self._keys)
        if x0 is not None:
            c["x0"] = stats(x0)
        self.calls.append(c)
        self.current = None

    def _mirror(self, infos):
        """Layer 0 only: labels after this call's roll/write = the temporary cache the call attended."""
        c, f = self.current, self.f
        _, (current_end, local_end, info) = infos[0]
        if info is None:
            return
        if not self.labels:
            self.labels = ["zero"] * (self.cache_tokens // f)
        kind = {"denoise": f"s{c.get('step', 0)}", "context": "ctx", "recache": "recache"}[c["kind"]]
        labels = list(self.labels)
        rec = {"action": info["action"], "is_recompute": bool(info["is_recompute"])}
        if info["action"] == "roll_and_insert":
            s, ev, rolled = info["sink_tokens"] // f, info["num_evicted_tokens"] // f, info["num_rolled_tokens"] // f
            rec["evicted"] = labels[s:s + ev]
            if self.memory:
                self.pool += labels[s:s + ev]
            labels[s:s + rolled] = labels[s + ev:s + ev + rolled]
        ws, we, ls = info["write_start_index"] // f, info["write_end_index"] // f, info["local_start_index"] // f
        first = c["start_frame"] + (ws - ls)
        for j, slot in enumerate(range(ws, we)):
            labels[slot] = f"f{first + j}@{kind}"
        rec["written_slots"] = list(range(ws, we))
        end = local_end // f
        max_att = self.model.blocks[0].self_attn.max_attention_size // f
        if self.sink or self.memory:
            win_start = max(self.sink, end - (max_att - self.sink - self.memory))
            mem = [self.pool_before[i] for i in c.get("memory_indices") or []]
            rec["attended"] = labels[:self.sink] + [f"pool{i}:{l}" for i, l in zip(c.get("memory_indices") or [], mem)] \
                + labels[win_start:end]
        else:
            rec["attended"] = labels[max(0, end - max_att):end]
        rec["local_end_frames"] = end
        self.labels = labels
        c["cache"] = rec
