"""data.crop=align: a similarity transform puts the five landmarks on the backbone's template."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cascade.data.align import align, similarity, template_points

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "faces"


def _dots(points: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """A black image with a bright 3x3 dot at each point (subpixel positions rounded)."""
    img = np.zeros((*hw, 3), np.uint8)
    for x, y in np.round(points).astype(int):
        img[y - 1:y + 2, x - 1:x + 2] = 255
    return img


def _centroids(img: np.ndarray, near: np.ndarray) -> np.ndarray:
    """Intensity-weighted centre of the bright pixels within 6 px of each expected point."""
    gray = img[..., 0].astype(float)
    ys, xs = np.mgrid[:gray.shape[0], :gray.shape[1]]
    out = []
    for x, y in near:
        w = gray * (((xs - x) ** 2 + (ys - y) ** 2) <= 36)
        out.append([(w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()])
    return np.array(out)


@pytest.mark.parametrize("size", [112, 64])
def test_a_face_moved_by_a_known_similarity_lands_on_the_template(size):
    """Landmarks placed by a known rotation / scale / shift of the template: the aligned crop has
    them on the template within a pixel, and the fitted transform is that similarity's inverse."""
    import cv2

    angle, scale, shift = 23.0, 2.3, (61.0, 40.0)
    forward = cv2.getRotationMatrix2D((0, 0), angle, scale)
    forward[:, 2] = shift
    template = template_points("arcface112", 112)
    moved = template @ forward[:, :2].T + forward[:, 2]
    photo = _dots(moved, (360, 420))
    out = align(Image.fromarray(photo), moved, size, "arcface112")
    assert out.shape == (size, size, 3) and out.dtype == np.uint8
    target = template_points("arcface112", size)
    assert np.abs(_centroids(out, target) - target).max() < 1.0
    m = similarity(moved, target)
    back = np.vstack([forward, [0, 0, 1]])
    expected = (np.diag([size / 112, size / 112, 1]) @ np.linalg.inv(back))[:2]
    assert np.allclose(m, expected, atol=1e-3)


def test_real_reference_faces_align():
    """MTCNN's landmarks on real photographs: the fitted similarity puts them on the template
    (frontal faces within a few pixels at 112 px; turned heads cannot fit all five, so the median
    over points and faces is judged), and the aligned crops are still faces MTCNN finds."""
    if not REFERENCE.is_dir():
        pytest.skip(f"{REFERENCE} absent")
    from cascade.data.cache import decode_rgb
    from cascade.data.face_detect import detect

    paths = sorted((REFERENCE / "agedb").glob("*.jpg"))[:8]
    images = [decode_rgb(p) for p in paths]
    pairs = [(im, d) for im, d in zip(images, detect(images)) if d is not None]
    assert len(pairs) >= 6
    target = template_points("arcface112", 112)
    residuals = []
    for im, d in pairs:
        m = similarity(d.landmarks, target)
        residuals.append(np.linalg.norm(d.landmarks @ m[:, :2].T + m[:, 2] - target, axis=1))
    assert np.median(np.concatenate(residuals)) < 3.0, residuals
    aligned = [Image.fromarray(align(im, d.landmarks, 112, "arcface112")) for im, d in pairs]
    assert sum(d is not None for d in detect(aligned, min_prob=0.9)) >= len(aligned) - 1


def test_align_end_to_end_on_real_photographs(tmp_path):
    """`data.crop=align` through the image cache: the AgeDB reference photographs are detected,
    warped onto MobileFaceNet's template (auto picks align for it on real data), cached under
    their own key; a photograph without a face follows data.no_face."""
    if not (REFERENCE / "agedb").is_dir():
        pytest.skip(f"{REFERENCE} absent")
    from cascade import config as C
    from cascade.data.cache import prepare
    from cascade.data.datasets import crop_settings, open_dataset

    cfg = C.load([f"home={tmp_path}", f"data.root.agedb={REFERENCE / 'agedb'}", "backbone=mobilefacenet"])
    table = open_dataset(cfg, "agedb", tmp_path)
    crop = crop_settings(cfg, table)
    assert crop == {"mode": "align", "margin": None, "no_face": "quarantine", "min_prob": 0.9,
                    "select": "central", "template": "arcface112"}
    margin = crop_settings(C.load([f"home={tmp_path}", f"data.root.agedb={REFERENCE / 'agedb'}", "backbone=resnet50"]),
                           table)
    assert margin["mode"] == "mtcnn" and margin["margin"] == 0.4
    n = len(table)
    cache = prepare(table, 112, crop, tmp_path, jobs=1, progress=False)
    assert len(cache) == len(cache.table) >= n - 3
    assert cache.images.shape[1:] == (112, 112, 3) and cache.images.mean() > 20
