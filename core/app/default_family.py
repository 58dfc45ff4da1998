"""The backbone family a front end assumes before a backbone says otherwise (named here, and only here).

Below the app layer nothing has a default family: every number comes from the family of the loaded
backbone (``Backbone.defaults``) or of the file (``detect_family``). Only the front ends need a guess
before that — the Prompt Schedule node with no backbone connected, the CLI for a file it cannot identify,
the demo's random backbone — and they ask here.
"""
from __future__ import annotations

from ..families.family import BackboneFamily
from ..families.registry import family

DEFAULT_FAMILY = "Wan2.1 text-to-video"


def default_family() -> BackboneFamily:
    """The registered family called ``DEFAULT_FAMILY`` (Wan2.1: Self-Forcing, Causal-Forcing, LongLive)."""
    return family(DEFAULT_FAMILY)
