"""Frames of a sequence rendered in parallel on a CPU, yielded in order.

    for image in in_order(render_one, total, frame_workers("cpu", total), progress): ...
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterator

import numpy as np
import torch


def frame_workers(device: str | torch.device, frames: int) -> int:
    """How many frames :meth:`TalkingHeadRenderer.render_frames` renders at once.

    On a CPU, one frame per core that torch may use (``torch.get_num_threads()``, at most 8,
    at most ``frames``), each on one intra-op thread: a frame's many small operations keep
    two cores busier as two frames in parallel than as one frame on two threads (on a 2-core
    CPU 9.6 against 8.1 frames per second, obama_20s quick). Elsewhere (CUDA) one.
    """
    if torch.device(device).type != "cpu":
        return 1
    return max(1, min(8, torch.get_num_threads(), frames))


def in_order(frame: Callable[[int], np.ndarray], total: int, workers: int,
             progress: Callable[[int, int], None] | None = None) -> Iterator[np.ndarray]:
    """Yield ``frame(0) .. frame(total - 1)`` in order, computed by ``workers`` threads.

    With more than one worker, torch runs one intra-op thread per frame while this runs
    (torch releases the GIL in its kernels) and at most two frames per worker are in flight;
    the thread count is restored afterwards, also on an error. ``progress(done, total)``
    after each yielded frame.
    """
    def in_parallel() -> Iterator[np.ndarray]:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="emogene-render") as pool:
                pending: deque[Future[np.ndarray]] = deque()
                for i in range(total):
                    pending.append(pool.submit(frame, i))
                    if len(pending) == 2 * workers:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
        finally:
            torch.set_num_threads(threads)

    images = (frame(i) for i in range(total)) if workers == 1 else in_parallel()
    for done, image in enumerate(images, 1):
        if progress is not None:
            progress(done, total)
        yield image
