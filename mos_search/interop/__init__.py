"""Other toolkits' formats read as this project's objects: `hat`, HAT's published SubTransformer
configs (mit-han-lab/hardware-aware-transformers, `configs/*/subtransformer/*.yml`) as
architectures of a space.

May import: the core modules, `arch` and `space`.
"""
