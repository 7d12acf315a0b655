"""Face alignment by five landmarks (`data.crop=align`): the crop face-recognition networks saw.

MobileFaceNet, ArcFace and their kin were trained on faces warped by a similarity transform
(rotation, uniform scale, translation: no shear) that puts MTCNN's five landmarks — eyes, nose
tip, mouth corners — onto fixed template positions.  A margin box around the same face gives
such a network a rotated, differently scaled face than it learnt, and it loses accuracy for no
reason of the task.  The transform is fitted with OpenCV (`cv2.estimateAffinePartial2D`,
least-median of squares over the five points) and applied with `cv2.warpAffine`.

Templates (`TEMPLATES`, chosen per backbone by `backbones.<b>.align_template`) are in the
pixels of a 112 x 112 crop and scaled to the cache's size.  `arcface112` is insightface's
112 x 112 template; it is the 96 x 112 template of MobileFaceNet's CASIA training shifted right by
8 px, so the MobileFaceNet body's centre crop of 112 x 96 sees exactly that training geometry.
"""
from __future__ import annotations

import numpy as np

#: Five (x, y) template points — left eye, right eye, nose, left and right mouth corner, as seen
#: in the image — in a 112 x 112 crop.
TEMPLATES = {
    "arcface112": np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                            [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32),
}
TEMPLATE_SIZE = 112


def _cv2():
    try:
        import cv2
    except ImportError as exc:           # a dependency of the package; a broken install says so
        raise ImportError("data.crop=align needs OpenCV: pip install opencv-python-headless") from exc
    return cv2


def template_points(name: str, size: int) -> np.ndarray:
    """The template `name`'s five points for a `size` x `size` crop."""
    if name not in TEMPLATES:
        raise ValueError(f"unknown alignment template {name!r}; valid: {', '.join(TEMPLATES)}")
    return TEMPLATES[name] * (size / TEMPLATE_SIZE)


def similarity(landmarks: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2 x 3 similarity transform that maps `landmarks` (5, 2) onto `target` (5, 2)."""
    matrix, _ = _cv2().estimateAffinePartial2D(np.asarray(landmarks, np.float32).reshape(-1, 1, 2),
                                               np.asarray(target, np.float32).reshape(-1, 1, 2),
                                               method=_cv2().LMEDS)
    if matrix is None:
        raise ValueError(f"no similarity transform fits the landmarks {np.round(landmarks, 1).tolist()}")
    return matrix


def align(image, landmarks: np.ndarray, size: int, template: str) -> np.ndarray:
    """`image` (PIL RGB or an (H, W, 3) uint8 array) warped so that its `landmarks` land on the
    template: a (size, size, 3) uint8 crop, pixels from outside the photograph black."""
    pixels = np.asarray(image, dtype=np.uint8)
    matrix = similarity(landmarks, template_points(template, size))
    return _cv2().warpAffine(pixels, matrix, (size, size), flags=_cv2().INTER_LINEAR,
                             borderMode=_cv2().BORDER_CONSTANT, borderValue=0)
