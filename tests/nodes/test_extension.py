"""The pack registers its nodes through comfy_entrypoint under their saved ids, each documenting itself."""
import sys

from pack import N, PACK, schema


NODE_IDS = ["LongLiveRAG_LoadBackbone", "LongLiveRAG_ModelBackbone", "LongLiveRAG_LoadLatentEncoder",
            "LongLiveRAG_HistoryPool",
            "LongLiveRAG_RetrieveContext", "LongLiveRAG_ARBlockSampler", "LongLiveRAG_Decode",
            "LongLiveRAG_RetrievalMap", "LongLiveRAG_LoadPromptEmbeds", "LongLiveRAG_PromptSchedule",
            "LongLiveRAG_ContextStrategy", "LongLiveRAG_CompareGrid", "LongLiveRAG_SamplerSettings"]


def test_the_pack_registers_its_nodes_through_comfy_entrypoint_under_their_saved_ids():
    """ComfyUI takes NODE_CLASS_MAPPINGS over comfy_entrypoint when a pack has both: the pack has only the V3
    entry point. The ids are the ones saved workflows name."""
    assert "comfy_entrypoint" in PACK.__all__ and not hasattr(PACK, "NODE_CLASS_MAPPINGS")
    assert list(N) == NODE_IDS
    assert all(issubclass(cls, sys.modules["comfy_api.latest"].io.ComfyNode) for cls in N.values())


def test_every_node_documents_itself_and_every_input():
    for name in N:
        s = schema(name)
        assert s.display_name.endswith("(LongLive-RAG)") and s.description, name
        assert s.category.startswith("LongLive-RAG") and s.outputs, name
        assert not s.is_output_node, name
        for item in s.inputs + s.outputs:
            assert item.tooltip, f"{name}.{item.id} has no tooltip"
