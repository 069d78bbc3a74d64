"""A2A (a2a-sdk 1.x, speaking A2A 1.0 and 0.3): :mod:`.adapter` (the routes), :mod:`.config`
(``a2a_config`` and the registry interface), :mod:`.card`, :mod:`.server`, :mod:`.tasks` and
:mod:`.nacos` — only the first two are importable without the SDK."""
