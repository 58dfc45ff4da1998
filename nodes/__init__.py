"""ComfyUI nodes of LongLive-RAG: thin adapters over ``core``, on ComfyUI's V3 schema (``comfy_api.latest``)."""
from . import bridge
from .bridge import ComfyExtension, io
from .comfy_model import ModelBackbone
from .conditioning import LoadPromptEmbeds
from .decode import Decode, RetrievalMap
from .loaders import LoadBackbone, LoadLatentEncoder
from .sampling import ARBlockSampler, HistoryPoolNode, RetrieveContext
from .schedule import PromptScheduleNode
from .settings import SamplerSettingsNode
from .strategy import CompareGrid, ContextStrategy

NODES: list[type[io.ComfyNode]] = [LoadBackbone, ModelBackbone, LoadLatentEncoder, HistoryPoolNode, RetrieveContext, ARBlockSampler,
                                   Decode, RetrievalMap, LoadPromptEmbeds, PromptScheduleNode, ContextStrategy,
                                   CompareGrid, SamplerSettingsNode]


class LongLiveRAGExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


async def comfy_entrypoint() -> LongLiveRAGExtension:
    """What ComfyUI calls when it loads the pack. The model folder is registered here, before any node's schema
    lists its files (ComfyUI does not call ``ComfyExtension.on_load``)."""
    bridge.register_model_folders()
    return LongLiveRAGExtension()
