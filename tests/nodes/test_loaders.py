"""Load Backbone: the files it lists, the family it reports, the compile option."""
import sys

from pack import N, PACK, load, schema


def test_load_backbone_lists_files_and_reports_the_family(models_dir):
    assert "tiny.safetensors" in schema("LongLiveRAG_LoadBackbone").inputs[0].options
    backbone, info = load(models_dir)
    assert backbone.backbone.config.num_layers == 2 and "Wan2.1" in info and "2 layers" in info
    memory = info.splitlines()[-1]                 # the estimate of a run at the family's published size
    assert memory.startswith("GPU memory of a run at 832×480 (estimate): native ") and "shared context" in memory


def test_load_backbone_compile_option_compiles_the_layers(models_dir, monkeypatch):
    compiled = []
    model_cls = sys.modules[PACK.__name__ + ".core.model.transformer"].WanTransformer   # the pack's own class
    monkeypatch.setattr(model_cls, "compile_blocks", lambda self, **kw: compiled.append(self) or self)
    load(models_dir)
    assert compiled == []                           # off by default
    backbone, info = N["LongLiveRAG_LoadBackbone"].execute("tiny.safetensors", "none", 1.0, "float32", "cpu",
                                                           "offload after sampling", num_heads=2, compile=True).args
    assert compiled == [backbone.backbone.model] and info.splitlines()[0].endswith("; compiled")
