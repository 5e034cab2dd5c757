"""LadderLens trainer: the ladder-loss family, relevance, metrics, the scene world and training loops.

Imports ``core``; never imports Qt or the app.
"""
