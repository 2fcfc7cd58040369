"""The domain: models, errors and the ports (Protocols) every other layer codes against.

Imports nothing else of netfleet's.
"""
