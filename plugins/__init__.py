"""xraybench's first-party model plugins.

They register through the public ``xraybench`` entry-point group declared in the
project's ``pyproject.toml`` and use only the public API (``xraybench.hookimpl``,
``KerasModel``, ``GenericModel``), exactly as a third-party package would.
"""
