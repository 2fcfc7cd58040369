"""The device simulator: thousands of Cisco, Arista and Juniper boxes over real SSH.

It imports nothing else of netfleet's: it exists to test the drivers, so it must not share
their code.
"""

from __future__ import annotations
