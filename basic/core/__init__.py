"""The bottom layer: Redis clients and key names, image checks, the safe page fetcher, metric objects.

Imports nothing else from `basic`, so every other package may use it (docs/design.md, "Layers").
"""
