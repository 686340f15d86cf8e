"""SPU facade: runtime config, share encoding, compilation, links.

Layering (CrypTen style): API (client/node) → sharing (``shares``) →
protocol choice (``runtime``) → transport (``link``). Everything that imports
``spu`` lives below this package, so the rest of misuan sees misuan types.
"""
