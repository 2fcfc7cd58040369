"""The job engine: one DeviceActor per active device owns its sessions and runs its work."""

from netfleet.engine.engine import Engine, EngineDeps, Limits

__all__ = ["Engine", "EngineDeps", "Limits"]
