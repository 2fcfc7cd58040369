"""Rendering config templates (Jinja2, sandboxed, StrictUndefined) and predicting their diff."""

from __future__ import annotations

from netfleet.rendering.diff import config_diff, predict_hierarchical, predict_set
from netfleet.rendering.jinja import Renderer, config_lines, default_renderer, render

__all__ = ["Renderer", "config_diff", "config_lines", "default_renderer", "predict_hierarchical",
           "predict_set", "render"]
