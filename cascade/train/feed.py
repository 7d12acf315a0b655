"""The data feed: the next batches gathered from the image cache while the current step runs.

Why a thread: on a GPU a training step takes milliseconds, and gathering a batch of random rows
from the memory-mapped cache (page faults, a copy per row), pinning it and handing it to the
device takes as long again.  Done in line, the GPU waits on the host every batch.  Here a
background thread gathers and pins the next `depth` batches (numpy's copy and the page faults
release the GIL).  The consumer starts each batch's host-to-device copy without blocking, on the
stream the step then uses, so the copy is ordered before the step and needs no synchronisation.

Only uint8 crops travel: normalisation and augmentation run on the device, batched (trainer.py).
The batches and their order are the caller's, a function of (seed, epoch), so resume stays exact
and a feed changes no number: with or without it, training sees the same tensors.
"""
from __future__ import annotations

import queue
import threading
import time

import numpy as np
import torch


def to_device(array: np.ndarray, device) -> torch.Tensor:
    """A small host array (a batch's labels or row positions) on `device` without stalling the
    host: a copy from pageable memory to a GPU first waits for everything queued on the stream
    (CUDA's rule for pageable copies), so the next step could not be queued while this one runs.
    A page-locked copy goes asynchronously, in stream order."""
    x = torch.from_numpy(np.ascontiguousarray(array))
    if torch.device(device).type != "cuda":
        return x
    return x.pin_memory().to(device, non_blocking=True)


def gather(images: np.ndarray, rows: np.ndarray, pin: bool) -> torch.Tensor:
    """Rows of the (N, H, W, 3) uint8 cache as one contiguous tensor, page-locked when `pin`
    (what a non-blocking copy to a GPU needs)."""
    x = torch.from_numpy(np.ascontiguousarray(images[rows]))
    return x.pin_memory() if pin else x


class Feed:
    """Iterates over `batches` (arrays of row indices) as uint8 tensors on `device`, each gathered
    in a background thread up to `depth` batches ahead of the step that uses it."""

    def __init__(self, images: np.ndarray, batches: list[np.ndarray], device, depth: int = 2):
        self.images, self.batches, self.device = images, batches, torch.device(device)
        self.pin = self.device.type == "cuda"
        self._ready: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()

    def _produce(self) -> None:
        try:
            for rows in self.batches:
                item = gather(self.images, rows, self.pin)
                while not self._stop.is_set():
                    try:
                        self._ready.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as exc:          # raised again in the consumer, with its traceback
            self._ready.put(exc)

    def __iter__(self):
        worker = threading.Thread(target=self._produce, name="cascade-feed", daemon=True)
        worker.start()
        try:
            for _ in self.batches:
                item = self._ready.get()
                if isinstance(item, BaseException):
                    raise item
                yield item.to(self.device, non_blocking=self.pin)
        finally:                              # an epoch left early (an error) stops the thread too
            self._stop.set()
            while worker.is_alive():
                try:
                    self._ready.get(timeout=0.1)
                except queue.Empty:
                    pass
            worker.join()


def delivery_rate(images: np.ndarray, batch_size: int, seconds: float, device: str = "cpu",
                  seed: int = 0, once: bool = False) -> float:
    """Images per second one thread delivers to the device boundary: random batches as in
    training (a shuffled epoch order), gathered, and on a GPU pinned and copied without
    blocking (the copies are waited for at the end), for about `seconds` or, with `once`, one
    pass over the images (a cold cache stays cold).  What `cascade plan` and
    benchmarks/feed_rate.py compare with the rate a GPU trains at."""
    dev = torch.device(device)
    order = np.random.default_rng(seed).permutation(len(images))
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds and not (once and done):
        for i in range(0, len(order) - batch_size + 1, batch_size):
            x = gather(images, order[i:i + batch_size], dev.type == "cuda")
            if dev.type == "cuda":
                x.to(dev, non_blocking=True)
            done += batch_size
            if not once and time.perf_counter() - start >= seconds:
                break
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return done / (time.perf_counter() - start)
