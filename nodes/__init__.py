"""ComfyUI nodes of LongLive-RAG: thin adapters over ``core``."""
from . import bridge
from .conditioning import LoadPromptEmbeds
from .decode import Decode, RetrievalMap
from .loaders import LoadBackbone, LoadLatentEncoder
from .sampling import ARBlockSampler, HistoryPoolNode, RetrieveContext
from .schedule import PromptScheduleNode

bridge.register_model_folders()

NODE_CLASS_MAPPINGS = {
    "LongLiveRAG_LoadBackbone": LoadBackbone,
    "LongLiveRAG_LoadLatentEncoder": LoadLatentEncoder,
    "LongLiveRAG_HistoryPool": HistoryPoolNode,
    "LongLiveRAG_RetrieveContext": RetrieveContext,
    "LongLiveRAG_ARBlockSampler": ARBlockSampler,
    "LongLiveRAG_Decode": Decode,
    "LongLiveRAG_RetrievalMap": RetrievalMap,
    "LongLiveRAG_LoadPromptEmbeds": LoadPromptEmbeds,
    "LongLiveRAG_PromptSchedule": PromptScheduleNode,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "LongLiveRAG_LoadBackbone": "Load Backbone (LongLive-RAG)",
    "LongLiveRAG_LoadLatentEncoder": "Load Latent Encoder (LongLive-RAG)",
    "LongLiveRAG_HistoryPool": "History Pool (LongLive-RAG)",
    "LongLiveRAG_RetrieveContext": "Retrieve Context (LongLive-RAG)",
    "LongLiveRAG_ARBlockSampler": "AR Block Sampler (LongLive-RAG)",
    "LongLiveRAG_Decode": "Decode Long Video (LongLive-RAG)",
    "LongLiveRAG_RetrievalMap": "Retrieval Map (LongLive-RAG)",
    "LongLiveRAG_LoadPromptEmbeds": "Load Prompt Embeds (LongLive-RAG)",
    "LongLiveRAG_PromptSchedule": "Prompt Schedule (LongLive-RAG)",
}
