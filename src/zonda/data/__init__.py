"""Data sources of zonda.

- :mod:`zonda.data.heldsuarez`: the embedded Held-Suarez (1994) generator
  (Google's dinosaur dynamical core), the default data of every preset.
  Importing it loads JAX; this package itself imports nothing heavy.
"""
