"""Vision prediction: one or more images in a multipart upload, predicted as one batch."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, UploadFile
from starlette.concurrency import run_in_threadpool

from service.api.deps import BatchersDep, RegistryDep, SettingsDep
from service.api.limits import check_files
from service.api.running import run_model
from service.inference.images import UploadedImage
from service.schemas.predict import TopK, VisionPrediction, VisionPredictResponse
from service.schemas.problem import Problem

router = APIRouter(prefix="/api/v1/vision", tags=["vision"])


@router.post(
    "/{name}/predict",
    response_model=VisionPredictResponse,
    responses=Problem.responses(400, 404, 413, 415, 422, 503),
)
async def predict_images(
    name: str,
    registry: RegistryDep,
    settings: SettingsDep,
    batchers: BatchersDep,
    files: Annotated[
        list[UploadFile], File(description="One or more images (JPEG, PNG, GIF, BMP, WEBP, TIFF).")
    ],
    top_k: Annotated[
        int | None, Query(ge=1, le=1000, description="How many likely classes to list per image (default 3).")
    ] = None,
) -> VisionPredictResponse:
    """Classify each uploaded image; predictions come back in upload order."""
    entry, predictor = registry.predictor(name, "vision")
    k = top_k or settings.default_top_k
    check_files(len(files), settings.max_files)
    uploads = [
        UploadedImage(filename=f.filename or f"file{i}", data=await f.read()) for i, f in enumerate(files)
    ]
    images = await run_in_threadpool(predictor.prepare, uploads)
    probs = await run_model(entry, predictor, batchers, images, len(images))
    predictions = predictor.finish(images, probs)
    return VisionPredictResponse(
        model=name,
        version=entry.version,
        predictions=[
            VisionPrediction(
                filename=upload.filename,
                label=p.label,
                probabilities=p.probabilities,
                top_k=[TopK(label=label, probability=prob) for label, prob in p.top_k(k)],
            )
            for upload, p in zip(uploads, predictions, strict=True)
        ],
    )
