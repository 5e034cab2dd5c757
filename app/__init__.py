"""LadderLens desktop application (PySide6). A thin layer over ``core`` and ``trainer``."""
