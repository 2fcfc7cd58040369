"""Parsing CLI output into records: TextFSM (ntc-templates), TTP and regex, templates cached."""

from __future__ import annotations

from netfleet.parsing.parsers import BIG_OUTPUT, KINDS, Parsers

__all__ = ["BIG_OUTPUT", "KINDS", "Parsers"]
