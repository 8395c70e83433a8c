"""Multipart uploads as the inference layer takes them (bytes and a name, no framework types)."""

from __future__ import annotations

from fastapi import UploadFile

from service.inference.images import UploadedImage


async def read_images(files: list[UploadFile]) -> list[UploadedImage]:
    """Every uploaded file's bytes, in upload order; a nameless part is called `file<i>`."""
    return [
        UploadedImage(filename=f.filename or f"file{i}", data=await f.read()) for i, f in enumerate(files)
    ]
