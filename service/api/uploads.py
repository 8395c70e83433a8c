"""Multipart uploads as the inference layer takes them (bytes and a name, no framework types)."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import UploadFile  # what parsing makes; FastAPI's UploadFile is one too

from service.inference.images import UploadedImage


async def read_images(files: Sequence[UploadFile]) -> list[UploadedImage]:
    """Every uploaded file's bytes, in upload order; a nameless part is called `file<i>`."""
    return [
        UploadedImage(filename=f.filename or f"file{i}", data=await f.read()) for i, f in enumerate(files)
    ]
