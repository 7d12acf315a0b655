"""Face detection with MTCNN (facenet-pytorch): one face box per image, for datasets without boxes.

Why: the crop is a face box grown by a 40% margin (`cache.square_box`); datasets that ship no
boxes would otherwise get a centred square of the whole photograph, which feeds the network
hair, background and shoulders instead of the face.  MTCNN is the usual detector of
face-recognition pipelines, and facenet-pytorch 2.5.3 ships its three small networks inside
the wheel, so detection never downloads anything at run time.

Of several faces, the subject's is the one nearest the image centre weighted by size
(`SELECTIONS`, see `_choose`): MTCNN's confidence does not tell subject from neighbour.

What happens to an image in which no face passes the confidence threshold is a named policy
(`NO_FACE_POLICIES`, see `resolve_box`), so that a run states whether such images were
dropped (and counted) or fed as a centred crop.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: What to do with an image in which no face passes `min_prob`:
#: "quarantine" drops it and counts it in the cleaning report; "centre" keeps it and uses the
#: centred square crop (`cache.square_box(None, ...)`), as for a dataset that gives no box.
NO_FACE_POLICIES = ("quarantine", "centre")

NO_FACE_REASON = "no face detected (MTCNN)"

#: MTCNN's smallest face (pixels).  Its image pyramid is empty for images whose shorter side is
#: below this, and facenet-pytorch then fails on an empty list, so such images get None.
MIN_FACE_SIZE = 20

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Detection:
    """One detected face: `box` (x1, y1, x2, y2) in pixel coordinates of the image it was found
    in (may reach past the image's edges: it is MTCNN's estimate of the face's extent, and
    `square_box` fills outside pixels with black), `prob` MTCNN's confidence, and `landmarks`
    a (5, 2) float array of (x, y): left eye, right eye, nose, left and right mouth corner
    (as seen in the image).  The landmarks serve region analyses (e.g. how much Grad-CAM mass
    falls on eyes versus mouth)."""
    box: Box
    prob: float
    landmarks: np.ndarray

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])


_MODELS: dict[str, object] = {}


def _mtcnn(device="cpu"):
    """The MTCNN of this process for `device`: built once, lazily (loading the three networks
    costs more than detecting a face), so importing this module costs nothing."""
    key = str(device)
    if key not in _MODELS:
        try:
            from facenet_pytorch import MTCNN
        except ImportError as exc:
            raise ImportError("face detection needs facenet-pytorch: "
                              "pip install facenet-pytorch==2.5.3") from exc
        import torch

        model = MTCNN(keep_all=True, post_process=False, select_largest=False,
                      min_face_size=MIN_FACE_SIZE, device=torch.device(key))
        _MODELS[key] = model.eval()
    return _MODELS[key]


#: How the one face of an image is chosen among those passing `min_prob`:
#: "central": largest area - 2 * squared distance of the box centre from the image centre (the
#: rule of facenet's align_dataset_mtcnn.py, used by insightface too); "probability": the most
#: confident face, ties broken by larger area.
SELECTIONS = ("central", "probability")


def _faces(boxes, probs, points, min_prob: float) -> list[Detection]:
    """Every face of one image's MTCNN output with prob >= min_prob, in MTCNN's order."""
    if boxes is None:
        return []
    return [Detection(tuple(float(v) for v in b), float(p), np.asarray(pt, dtype=np.float32))
            for b, p, pt in zip(boxes, probs, points) if p is not None and p >= min_prob]


def choose(found: list[Detection], size: tuple[int, int], select: str = "central") -> Detection | None:
    """The subject's face among the faces `found` in an image of `size` (width, height).

    Why "central" is the default: dataset images are centred on their subject, while MTCNN's
    probabilities saturate near 1 for every clear face, so "most confident" is a coin toss
    between the subject and a neighbour: on the 19 real Adience aligned crops it picks the
    half-visible neighbour at the image edge twice (1.0 against 0.9995, 0.9999 against 0.9997),
    and "largest" would pick it once as well.  The centring penalty keeps the subject."""
    if not found:
        return None
    if select == "probability":
        return max(found, key=lambda d: (d.prob, d.area))
    cx, cy = size[0] / 2, size[1] / 2

    def central(d: Detection) -> float:
        dx, dy = (d.box[0] + d.box[2]) / 2 - cx, (d.box[1] + d.box[3]) / 2 - cy
        return d.area - 2.0 * (dx * dx + dy * dy)
    return max(found, key=lambda d: (central(d), d.prob))


def _choose(boxes, probs, points, min_prob: float, size: tuple[int, int],
            select: str = "central") -> Detection | None:
    """The subject's face of one image's MTCNN output (see `choose`)."""
    return choose(_faces(boxes, probs, points, min_prob), size, select)


def detect_all(images, min_prob: float = 0.9, device="cpu", batch: int = 32) -> list[list[Detection]]:
    """Every face of every image that reaches `min_prob` (an empty list where none does), in
    input order.

    MTCNN's batched detection needs images of equal size, so the images are grouped by size and
    each group is detected in chunks of `batch`; dataset images of mixed sizes simply fall into
    groups of one."""
    import torch

    out: list[list[Detection]] = [[] for _ in images]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, im in enumerate(images):
        if min(im.size) >= MIN_FACE_SIZE:
            groups.setdefault(im.size, []).append(i)
    if not groups:
        return out
    model = _mtcnn(device)
    with torch.inference_mode():
        for idx in groups.values():
            for s in range(0, len(idx), batch):
                chunk = idx[s:s + batch]
                rgb = [images[i] if images[i].mode == "RGB" else images[i].convert("RGB")
                       for i in chunk]
                boxes, probs, points = model.detect(rgb, landmarks=True)
                for i, b, p, pt in zip(chunk, boxes, probs, points):
                    out[i] = _faces(b, p, pt, min_prob)
    return out


def detect(images, min_prob: float = 0.9, device="cpu", batch: int = 32,
           select: str = "central") -> list[Detection | None]:
    """The chosen face of every image (None where no face reaches `min_prob`), in input order;
    `select` is one of `SELECTIONS`."""
    if select not in SELECTIONS:
        raise ValueError(f"unknown face selection {select!r}; expected one of {SELECTIONS}")
    return [choose(found, im.size, select) for im, found in zip(images, detect_all(images, min_prob, device, batch))]


def resolve_box(box: Box | None, policy: str) -> tuple[Box | None, str | None]:
    """(box to crop around or None, quarantine reason or None) for one image's detection.

    A found box is used as is under either policy.  Without one, "quarantine" returns the reason
    (the caller drops the image and counts it), and "centre" returns (None, None): crop the
    centred square, as `square_box(None, w, h, margin)` does."""
    if policy not in NO_FACE_POLICIES:
        raise ValueError(f"unknown no-face policy {policy!r}; expected one of {NO_FACE_POLICIES}")
    if box is not None:
        return box, None
    return (None, NO_FACE_REASON) if policy == "quarantine" else (None, None)
