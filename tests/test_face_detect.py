"""Face detection (MTCNN via facenet-pytorch) on real AgeDB images and Adience crops, the choice of
the subject's face, the crop around it, and the policy for images without a face."""
import sys

import numpy as np
import pytest
from PIL import Image

from cascade.data import face_detect
from cascade.data.cache import decode_rgb, square_box

from conftest import REFERENCE

FACES = REFERENCE / "faces"


def _reference(sub: str) -> list[Image.Image]:
    pytest.importorskip("facenet_pytorch")
    files = sorted((FACES / sub).glob("**/*.jpg"))
    if not files:
        pytest.skip(f"reference images absent: {FACES / sub}")
    return [decode_rgb(f) for f in files]


@pytest.fixture(scope="module")
def agedb():
    """(images, detections) of the 41 real AgeDB images, detected once for the module."""
    images = _reference("agedb")
    return images, face_detect.detect(images)


@pytest.fixture(scope="module")
def adience():
    """(images, detections) of the 19 real Adience aligned crops."""
    images = _reference("adience")
    return images, face_detect.detect(images)


# Measured with min_prob=0.9: AgeDB 41/41, Adience 18/19 (the miss is a washed-out, low-contrast
# crop).  The thresholds leave room for a few misses across platforms / library versions.
@pytest.mark.parametrize("name, least", [("agedb", 0.9), ("adience", 0.85)])
def test_detection_rate_on_real_faces(name, least, request):
    images, dets = request.getfixturevalue(name)
    rate = sum(d is not None for d in dets) / len(images)
    assert rate >= least, f"{name}: MTCNN found a face in {rate:.0%} of {len(images)} images"


@pytest.mark.parametrize("name", ["agedb", "adience"])
def test_detections_are_the_subjects_face_and_crop_around_it(name, request):
    images, dets = request.getfixturevalue(name)
    for im, d in zip(images, dets):
        if d is None:
            continue
        x1, y1, x2, y2 = d.box
        assert d.prob >= 0.9 and x2 > x1 and y2 > y1
        # the subject's face: both datasets centre their images on it (Adience crops also hold
        # half-visible neighbours at the edges, which must not be chosen)
        cx, cy = (x1 + x2) / 2 / im.width, (y1 + y2) / 2 / im.height
        assert 0.25 < cx < 0.75 and 0.25 < cy < 0.75, (im.size, d.box)
        assert d.area >= 0.1 * im.width * im.height
        # landmarks: 5 (x, y) points inside the box, eyes above the mouth corners
        lm = d.landmarks
        assert lm.shape == (5, 2)
        assert ((lm[:, 0] >= x1) & (lm[:, 0] <= x2) & (lm[:, 1] >= y1) & (lm[:, 1] <= y2)).all()
        assert lm[:2, 1].max() < lm[3:, 1].min()
        # the square crop with a 40% margin holds the whole face box
        sq = square_box(d.box, im.width, im.height, 0.4)
        assert sq[0] <= x1 and sq[1] <= y1 and sq[2] >= x2 and sq[3] >= y2
        assert abs((sq[2] - sq[0]) - (sq[3] - sq[1])) <= 1
        assert (sq[2] - sq[0]) >= 1.8 * max(x2 - x1, y2 - y1) - 1
        crop = im.crop(sq).resize((64, 64), Image.BILINEAR)
        assert crop.size == (64, 64) and np.asarray(crop).shape == (64, 64, 3)


def test_batched_detection_keeps_input_order(adience):
    """Equal-sized images are detected as one batch (here in chunks of 2); the answers must come
    back in input order and equal the one-by-one answers; a small image (own size group) and an
    image too small for MTCNN sit in between."""
    images, dets = adience
    same = [i for i, (im, d) in enumerate(zip(images, dets)) if im.size == (600, 600) and d][:2]
    assert len(same) == 2
    blank = Image.new("RGB", (600, 600), (128, 128, 128))
    small = images[same[0]].resize((150, 150))
    tiny = Image.new("RGB", (12, 12))
    batch = [images[same[0]], blank, small, tiny, images[same[1]]]
    got = face_detect.detect(batch, batch=2)
    assert got[1] is None and got[3] is None
    assert got[2] is not None
    for g, i in zip((got[0], got[4]), same):
        assert np.allclose(g.box, dets[i].box, atol=1.0) and abs(g.prob - dets[i].prob) < 1e-3


def test_blank_and_noise_images_have_no_face():
    pytest.importorskip("facenet_pytorch")
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (160, 200, 3), dtype=np.uint8))
    blank = Image.new("RGB", (200, 160), (255, 255, 255))
    gray = Image.new("L", (120, 120), 40)                     # not RGB: converted for MTCNN
    assert face_detect.detect([noise, blank, gray]) == [None, None, None]
    assert face_detect.detect([]) == []


def _boxes(*rows):
    return np.array([r[:4] for r in rows], float), np.array([r[4] for r in rows], float)


def test_choice_among_faces():
    """"probability": most confident, ties by larger area; "central": size against distance from
    the centre; faces under min_prob never count."""
    pts = np.zeros((3, 5, 2))
    size = (200, 200)
    boxes, probs = _boxes((0, 0, 60, 60, 0.999),          # corner, most confident
                          (70, 70, 130, 130, 0.998),      # centred, same size
                          (0, 0, 200, 200, 0.5))          # huge but below the threshold
    assert face_detect._choose(boxes, probs, pts, 0.9, size, "probability").box == (0, 0, 60, 60)
    assert face_detect._choose(boxes, probs, pts, 0.9, size, "central").box == (70, 70, 130, 130)
    assert face_detect._choose(boxes, probs, pts, 0.9999, size, "central") is None
    assert face_detect._choose(boxes, probs, pts, 0.4, size, "probability").box == (0, 0, 60, 60)
    tie_boxes, tie_probs = _boxes((0, 0, 40, 40, 1.0), (100, 100, 190, 190, 1.0))
    assert face_detect._choose(tie_boxes, tie_probs, pts[:2], 0.9, size, "probability").box == \
        (100, 100, 190, 190)
    assert face_detect._choose(None, [None], None, 0.9, size) is None
    with pytest.raises(ValueError, match="selection"):
        face_detect.detect([Image.new("RGB", (40, 40))], select="largest")


def test_no_face_policies():
    box = (10.0, 20.0, 50.0, 70.0)
    assert face_detect.NO_FACE_POLICIES == ("quarantine", "centre")
    for policy in face_detect.NO_FACE_POLICIES:
        assert face_detect.resolve_box(box, policy) == (box, None)
    assert face_detect.resolve_box(None, "quarantine") == (None, "no face detected (MTCNN)")
    assert face_detect.resolve_box(None, "centre") == (None, None)
    # "centre": the caller's square_box(None, ...) is the centred square of the image
    assert square_box(None, 300, 200, 0.4) == (50, 0, 250, 200)
    with pytest.raises(ValueError, match="policy"):
        face_detect.resolve_box(None, "keep")


def test_missing_facenet_says_how_to_install(monkeypatch):
    monkeypatch.setattr(face_detect, "_MODELS", {})
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)     # import raises ImportError
    with pytest.raises(ImportError, match=r"pip install facenet-pytorch==2\.5\.3"):
        face_detect.detect([Image.new("RGB", (64, 64))])
