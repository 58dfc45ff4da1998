"""``comfy_api.latest.io`` (stand-in): socket types, inputs/outputs, ``Schema``, ``ComfyNode``, ``NodeOutput``.

Each class keeps the constructor arguments and attribute names of ComfyUI 0.8.0's, so code that reads a
schema (the pack's locale and workflow builders, the tests) sees what it would see inside ComfyUI.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class _ComfyType:
    Type = Any
    io_type: str = None


class Input:
    """A socket (or widget) of a node; ``optional`` ones may be left unconnected."""
    Parent: type[_ComfyType] = None

    def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None, lazy: bool = None,
                 extra_dict=None, raw_link: bool = None):
        self.id, self.display_name, self.optional, self.tooltip = id, display_name, optional, tooltip
        self.lazy, self.extra_dict, self.rawLink = lazy, extra_dict or {}, raw_link

    @property
    def io_type(self) -> str:
        return self.Parent.io_type

    def get_io_type(self) -> str:
        return self.io_type


class WidgetInput(Input):
    def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None, lazy: bool = None,
                 default: Any = None, socketless: bool = None, widget_type: str = None, force_input: bool = None,
                 extra_dict=None, raw_link: bool = None):
        super().__init__(id, display_name, optional, tooltip, lazy, extra_dict, raw_link)
        self.default, self.socketless, self.force_input = default, socketless, force_input
        self.widget_type = widget_type

    def get_io_type(self) -> str:
        return self.widget_type if self.widget_type is not None else self.io_type


class Output:
    Parent: type[_ComfyType] = None

    def __init__(self, id: str = None, display_name: str = None, tooltip: str = None, is_output_list=False):
        self.id, self.display_name, self.tooltip, self.is_output_list = id, display_name or id, tooltip, is_output_list

    @property
    def io_type(self) -> str:
        return self.Parent.io_type

    def get_io_type(self) -> str:
        return self.io_type


class ComfyTypeI(_ComfyType):
    class Input(Input):
        pass


class ComfyTypeIO(ComfyTypeI):
    class Output(Output):
        pass


def comfytype(io_type: str, **kwargs):
    """Binds ``io_type`` to a socket type class; its Input/Output classes (own copies) point back to it."""
    def decorator(cls):
        new = cls if issubclass(cls, _ComfyType) else type(cls.__name__, (cls, ComfyTypeIO), {})
        new.io_type = io_type
        for name in ("Input", "Output"):
            base = getattr(new, name, None)
            if base is not None:
                setattr(new, name, type(base.__name__, (base,), {"Parent": new}))
        return new
    return decorator


def Custom(io_type: str) -> type[ComfyTypeIO]:
    """A socket type of a node pack's own (its values pass between nodes untouched)."""
    @comfytype(io_type=io_type)
    class CustomComfyType(ComfyTypeIO):
        pass
    return CustomComfyType


@comfytype(io_type="BOOLEAN")
class Boolean(ComfyTypeIO):
    Type = bool

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None, lazy: bool = None,
                     default: bool = None, label_on: str = None, label_off: str = None, socketless: bool = None,
                     force_input: bool = None, extra_dict=None, raw_link: bool = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input,
                             extra_dict, raw_link)
            self.label_on, self.label_off = label_on, label_off


@comfytype(io_type="INT")
class Int(ComfyTypeIO):
    Type = int

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None, lazy: bool = None,
                     default: int = None, min: int = None, max: int = None, step: int = None,
                     control_after_generate: bool = None, display_mode=None, socketless: bool = None,
                     force_input: bool = None, extra_dict=None, raw_link: bool = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input,
                             extra_dict, raw_link)
            self.min, self.max, self.step = min, max, step
            self.control_after_generate, self.display_mode = control_after_generate, display_mode


@comfytype(io_type="FLOAT")
class Float(ComfyTypeIO):
    Type = float

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None, lazy: bool = None,
                     default: float = None, min: float = None, max: float = None, step: float = None,
                     round: float = None, display_mode=None, socketless: bool = None, force_input: bool = None,
                     extra_dict=None, raw_link: bool = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input,
                             extra_dict, raw_link)
            self.min, self.max, self.step, self.round, self.display_mode = min, max, step, round, display_mode


@comfytype(io_type="STRING")
class String(ComfyTypeIO):
    Type = str

    class Input(WidgetInput):
        def __init__(self, id: str, display_name: str = None, optional=False, tooltip: str = None, lazy: bool = None,
                     multiline=False, placeholder: str = None, default: str = None, dynamic_prompts: bool = None,
                     socketless: bool = None, force_input: bool = None, extra_dict=None, raw_link: bool = None):
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, force_input,
                             extra_dict, raw_link)
            self.multiline, self.placeholder, self.dynamic_prompts = multiline, placeholder, dynamic_prompts


@comfytype(io_type="COMBO")
class Combo(ComfyTypeIO):
    Type = str

    class Input(WidgetInput):
        def __init__(self, id: str, options: list | type[Enum] = None, display_name: str = None, optional=False,
                     tooltip: str = None, lazy: bool = None, default: Any = None, control_after_generate: bool = None,
                     upload=None, image_folder=None, remote=None, socketless: bool = None, extra_dict=None,
                     raw_link: bool = None):
            if isinstance(options, type) and issubclass(options, Enum):
                options = [v.value for v in options]
            if isinstance(default, Enum):
                default = default.value
            super().__init__(id, display_name, optional, tooltip, lazy, default, socketless, None, None, extra_dict,
                             raw_link)
            self.multiselect, self.options, self.control_after_generate = False, options, control_after_generate
            self.upload, self.image_folder, self.remote = upload, image_folder, remote


@comfytype(io_type="IMAGE")
class Image(ComfyTypeIO):
    pass


@comfytype(io_type="LATENT")
class Latent(ComfyTypeIO):
    Type = dict


@comfytype(io_type="CONDITIONING")
class Conditioning(ComfyTypeIO):
    Type = list


@comfytype(io_type="CLIP")
class Clip(ComfyTypeIO):
    pass


@comfytype(io_type="VAE")
class Vae(ComfyTypeIO):
    pass


@comfytype(io_type="MODEL")
class Model(ComfyTypeIO):
    pass


@comfytype(io_type="COMFY_MULTITYPED_V3")
class MultiType:
    class Input(Input):
        """A socket that takes any of ``types``; its type is their io_types joined by commas."""

        def __init__(self, id: str, types: list, display_name: str = None, optional=False, tooltip: str = None,
                     lazy: bool = None, extra_dict=None, raw_link: bool = None):
            super().__init__(id, display_name, optional, tooltip, lazy, extra_dict, raw_link)
            self.io_types = [t if isinstance(t, type) else type(t) for t in types]

        def get_io_type(self) -> str:
            return ",".join(dict.fromkeys(t.io_type for t in self.io_types))


class Hidden(str, Enum):
    unique_id = "UNIQUE_ID"
    prompt = "PROMPT"
    extra_pnginfo = "EXTRA_PNGINFO"
    dynprompt = "DYNPROMPT"
    auth_token_comfy_org = "AUTH_TOKEN_COMFY_ORG"
    api_key_comfy_org = "API_KEY_COMFY_ORG"


class HiddenHolder:
    """``cls.hidden`` while a node executes: the hidden values it asked for; any other is None."""

    def __init__(self, **values):
        self.__dict__.update(values)

    def __getattr__(self, key: str):
        return None

    @classmethod
    def from_dict(cls, d: dict | None) -> HiddenHolder:
        return cls(**{h.name: (d or {}).get(h) for h in Hidden})


@dataclass
class Schema:
    node_id: str
    display_name: str = None
    category: str = "sd"
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    hidden: list = field(default_factory=list)
    description: str = ""
    is_input_list: bool = False
    is_output_node: bool = False
    is_deprecated: bool = False
    is_experimental: bool = False
    is_api_node: bool = False
    not_idempotent: bool = False
    enable_expand: bool = False

    def validate(self) -> None:
        """Input ids, and output ids, must be unique."""
        for kind, ids in (("Input", [i.id for i in self.inputs]), ("Output", [o.id for o in self.outputs])):
            repeated = [i for i, n in Counter(ids).items() if n > 1]
            if repeated:
                raise ValueError(f"{kind} ids must be unique, but {repeated} are not.")

    def finalize(self) -> None:
        """An output node gets the prompt and the PNG info; an output without an id gets ``_<i>_<TYPE>_``."""
        if self.is_output_node:
            self.hidden += [h for h in (Hidden.prompt, Hidden.extra_pnginfo) if h not in self.hidden]
        for i, output in enumerate(self.outputs):
            if output.id is None:
                output.id = f"_{i}_{output.io_type}_"


class ComfyNode:
    """A V3 node: a class, never instantiated to run; ``execute`` is a classmethod."""
    hidden: HiddenHolder = None

    @classmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError

    @classmethod
    def execute(cls, **kwargs) -> NodeOutput:
        raise NotImplementedError

    @classmethod
    def validate_inputs(cls, **kwargs) -> bool | str:
        raise NotImplementedError

    @classmethod
    def fingerprint_inputs(cls, **kwargs) -> Any:
        raise NotImplementedError

    @classmethod
    def GET_SCHEMA(cls) -> Schema:
        schema = cls.define_schema()
        schema.finalize()
        schema.validate()
        return schema

    @classmethod
    def PREPARE_CLASS_CLONE(cls, v3_data: dict | None) -> type[ComfyNode]:
        """The class ComfyUI executes: a copy carrying the hidden values (``v3_data["hidden_inputs"]``)."""
        clone = type(f"{cls.__name__}Clone", (cls,), {})
        clone.hidden = HiddenHolder.from_dict((v3_data or {}).get("hidden_inputs"))
        return clone


class NodeOutput:
    """What ``execute`` returns: the outputs in order, and optionally what the UI shows."""

    def __init__(self, *args: Any, ui=None, expand: dict = None, block_execution: str = None):
        self.args, self.ui, self.expand, self.block_execution = args, ui, expand, block_execution

    @property
    def result(self):
        return self.args if len(self.args) > 0 else None

    def __getitem__(self, index) -> Any:
        return self.args[index]
