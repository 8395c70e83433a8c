"""fastai-serve: a fast, safe HTTP model server for fastai exported learners."""

__version__ = "0.1.0"
