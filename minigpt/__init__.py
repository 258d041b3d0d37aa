"""minigpt: a from-scratch, read-along transformer library in pure PyTorch.

Every module is one idea from a course on large language models, written by
hand and importable on its own; see README.md for the package map and the
numbered lessons that explain each one.
"""

__version__ = "0.1.0"
