"""A stand-in for ComfyUI's ``comfy_api`` package, for running the pack's nodes without ComfyUI (CI: ComfyUI is
not on PyPI, and no package there provides ``comfy_api``).

Only ``comfy_api.latest``'s ``ComfyExtension``, ``io`` and ``ui`` as far as this pack's nodes use them, with the
same names, arguments and defaults as ComfyUI 0.8.0. It is used only when the real one cannot be imported
(tools/load_pack.py ``ensure_comfy_api``). tests/integration/test_comfyui.py checks that the real ComfyUI serves
every node exactly as this stand-in reads it.
"""
