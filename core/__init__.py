"""LadderLens core: the photo library (catalog, scanner, decoder, embedder, index, search, grading).

Nothing in this package imports Qt, the trainer or the app.
"""
