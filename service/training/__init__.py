"""Training recipes behind `fastai-serve train`."""
