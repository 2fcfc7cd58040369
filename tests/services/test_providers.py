"""Deployment providers as plugins: installed entry points add providers; a plugin cannot
replace a built-in one, and a broken one costs only itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from netfleet.bootstrap import Services, build_services
from netfleet.services import providers as providers_module
from netfleet.services.providers import InventoryProvider, load_providers
from netfleet.settings import load_settings


@dataclass
class FakePoint:
    name: str
    factory: Any

    def load(self) -> Any:
        return self.factory


class LabProvider:
    name = "lab"

    def __init__(self, **deps: Any) -> None:
        self.deps = deps


def broken(**deps: Any) -> Any:
    raise RuntimeError("missing SDK")


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'p.db'}",
                             secret_key_file=tmp_path / "secret.key")
    services = await build_services(settings)
    try:
        yield services
    finally:
        await services.close()


async def test_installed_plugins_add_providers_and_cannot_replace_built_in_ones(
        services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    points = [FakePoint("lab", LabProvider), FakePoint("inventory", LabProvider),
              FakePoint("cloud", broken)]
    monkeypatch.setattr(providers_module, "entry_points", lambda group: points)
    found = load_providers(services.store, services.jobs, services.settings,
                           services.deployments.writes)
    assert sorted(found) == ["inventory", "lab", "simulator"]
    assert isinstance(found["inventory"], InventoryProvider)  # the built-in one stays
    lab = found["lab"]
    assert isinstance(lab, LabProvider)
    assert set(lab.deps) == {"store", "jobs", "settings", "writes"}
