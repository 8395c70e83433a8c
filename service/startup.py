"""The server's one start-up step: process-wide settings, then every model loaded, then the heap settled.

Everything here touches the whole process (torch's thread pool, the garbage collector), so it runs once,
from the app's lifespan, and never at import.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os

import torch

from service.inference.batching import ModelPool
from service.registry import ModelRegistry
from service.settings import Settings

logger = logging.getLogger(__name__)


def configure_torch_threads(settings: Settings) -> int:
    """One intra-op thread per core this process may use, unless configured otherwise."""
    threads = max(1, settings.torch_threads or len(os.sched_getaffinity(0)))
    torch.set_num_threads(threads)
    return threads


def cap_malloc_arenas(arenas: int) -> bool:
    """At most `arenas` glibc malloc arenas in this process and the workers it starts.

    glibc gives each thread that allocates under contention an arena of its own (up to 8 per core) and
    keeps what each one ever held: a large CSV's chunks, passed between the event loop, Starlette's
    threads and the model's, left a first large file costing some 5x its size in RSS, 3x with two
    arenas (mallopt(3), M_ARENA_MAX). Call it before any thread starts; False where it does not apply
    (0, not glibc)."""
    if arenas <= 0:
        return False
    os.environ.setdefault("MALLOC_ARENA_MAX", str(arenas))  # worker processes read it as they start
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, arenas))


_M_ARENA_MAX = -8  # malloc.h


def freeze_heap() -> None:
    """Learners and libraries are long-lived: keep them out of every later garbage collection, which
    otherwise rescans millions of objects and stalls big requests for hundreds of milliseconds."""
    gc.collect()
    gc.freeze()


async def start_models(registry: ModelRegistry, settings: Settings) -> None:
    """Set torch's threads, load every model of the store off the event loop, then freeze the heap.

    Run as a task: /health/live answers meanwhile, and /health/ready once `registry.loading_done`.
    """
    threads = configure_torch_threads(settings)
    await asyncio.to_thread(registry.load_all)
    freeze_heap()
    logger.info("%d model(s) loaded, %d torch thread(s)", len(registry.entries()), threads)


async def watch_store(registry: ModelRegistry, pool: ModelPool, *, every_s: float) -> None:
    """Every `every_s` seconds, once the first load is done: when a model folder was moved in, removed or
    its file replaced (`store_signature`, no hashing), rescan as `POST /api/v1/models/reload` does. This is
    how demo models trained in the background appear while the server runs (`make run`)."""
    await asyncio.to_thread(registry.wait_loaded)
    while True:
        await asyncio.sleep(every_s)
        # Against the store as the registry last listed it, never as this task first saw it: a model
        # moved in while the first load ran (or before this task's first look) is still a change.
        now = await asyncio.to_thread(registry.store_signature)
        if now == registry.scanned_signature:
            continue
        try:
            await pool.before_reload([entry.name for entry in registry.entries()])
            await asyncio.to_thread(registry.rescan)
        except Exception:  # noqa: BLE001 - a failed rescan is logged and tried again at the next change
            logger.exception("rescanning the model store failed")
            registry.scanned_signature = ()  # tried again at the next round
            continue
        logger.info("model store rescanned: %d model(s)", len(registry.entries()))
