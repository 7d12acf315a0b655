"""Robust decoding: every odd-but-valid image the datasets hold becomes an 8-bit RGB crop, every
damaged or missing file becomes a quarantine reason that names the problem (never an exception,
never silently half-decoded pixels)."""
import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from cascade.data.cache import decode_file, decode_rgb, place

W, H = 64, 48


def _scene() -> np.ndarray:
    """A smooth RGB image (JPEG keeps it well) with a white block in the top-left corner."""
    y, x = np.mgrid[0:H, 0:W]
    rgb = np.dstack([x * 4, y * 5, np.full((H, W), 90)]).astype(np.uint8)
    rgb[:12, :12] = 255
    return rgb


def _load_one(path, box, size: int, margin: float):
    """What the cache does with one listed file: (pixels or None, quarantine reason, sha256)."""
    im, reason, digest = decode_file(path)
    return (None if im is None else place(im, box, size, {"margin": margin})), reason, digest


def _ok(path):
    arr, reason, digest = _load_one(path, None, 32, 0.4)
    assert reason is None, reason
    assert arr.shape == (32, 32, 3) and arr.dtype == np.uint8
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    return arr


def _bad(path, *words):
    arr, reason, _ = _load_one(path, None, 32, 0.4)
    assert arr is None
    assert isinstance(reason, str) and all(w in reason for w in words), reason
    return reason


def test_rgb_jpeg(tmp_path):
    p = tmp_path / "rgb.jpg"
    Image.fromarray(_scene()).save(p, quality=95)
    _ok(p)
    im = decode_rgb(p)
    assert im.mode == "RGB" and im.size == (W, H)


def test_grayscale_jpeg(tmp_path):
    p = tmp_path / "gray.jpg"
    Image.fromarray(_scene()[..., 1]).save(p, quality=95)
    with Image.open(p) as raw:
        assert raw.mode == "L"
    arr = _ok(p)
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()


def test_cmyk_jpeg_keeps_colours(tmp_path):
    p = tmp_path / "cmyk.jpg"
    Image.fromarray(_scene()).convert("CMYK").save(p, quality=95)
    with Image.open(p) as raw:
        assert raw.mode == "CMYK"
    _ok(p)
    got = np.asarray(decode_rgb(p), dtype=float)
    assert np.abs(got - _scene()).mean() < 8                    # not inverted, not shifted


def test_rgba_png_is_composited_on_black(tmp_path):
    p = tmp_path / "rgba.png"
    alpha = np.zeros((H, W), np.uint8)
    alpha[:, W // 2:] = 255                                    # left half fully transparent
    Image.fromarray(np.dstack([_scene(), alpha])).save(p)
    with Image.open(p) as raw:
        assert raw.mode == "RGBA"
    _ok(p)
    got = np.asarray(decode_rgb(p))
    assert (got[:, :W // 2] == 0).all()
    assert (got[:, W // 2:] == _scene()[:, W // 2:]).all()


def test_palette_png_with_transparency(tmp_path):
    p = tmp_path / "palette.png"
    idx = np.ones((H, W), np.uint8)
    idx[:, :10] = 0                                            # index 0: the transparent colour
    im = Image.new("P", (W, H))
    im.putpalette([255, 0, 0, 0, 200, 0] + [0] * 762)
    im.putdata(idx.ravel().tolist())
    im.save(p, transparency=0)
    with Image.open(p) as raw:
        assert raw.mode == "P" and "transparency" in raw.info
    _ok(p)
    got = np.asarray(decode_rgb(p))
    assert (got[:, :10] == 0).all()                            # transparent red -> black
    assert (got[:, 10:] == (0, 200, 0)).all()


def test_16bit_png_is_rescaled(tmp_path):
    p = tmp_path / "gray16.png"
    g16 = _scene()[..., 1].astype(np.uint16) * 257             # full 16-bit range
    Image.fromarray(g16).save(p)
    with Image.open(p) as raw:
        assert raw.mode.startswith("I")
    _ok(p)
    got = np.asarray(decode_rgb(p)).astype(int)
    assert np.abs(got[..., 0] - _scene()[..., 1]).max() <= 1


def test_exif_orientation_is_applied(tmp_path):
    p = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6                                           # display rotated 90 deg clockwise
    Image.fromarray(_scene()).save(p, quality=95, exif=exif)
    with Image.open(p) as raw:
        assert raw.size == (W, H)
    im = decode_rgb(p)
    assert im.size == (H, W)                                   # width and height swapped
    got = np.asarray(im, dtype=float)
    # the stored top-left white block is shown top-right
    assert got[:10, -10:].mean() > 240 and got[:10, :10].mean() < 200
    _ok(p)


@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_jpeg_is_quarantined(tmp_path, fraction):
    """A JPEG cut short must not come back as half an image padded with grey."""
    bio = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(bio, "JPEG")
    data = bio.getvalue()
    p = tmp_path / "truncated.jpg"
    p.write_bytes(data[:int(len(data) * fraction)])
    _bad(p, "undecodable", "truncated")


def test_truncated_png_is_quarantined(tmp_path):
    bio = io.BytesIO()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(bio, "PNG")
    p = tmp_path / "truncated.png"
    p.write_bytes(bio.getvalue()[:len(bio.getvalue()) // 2])
    _bad(p, "undecodable")


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    assert _bad(p) == "zero-byte file"


def test_missing_file(tmp_path):
    arr, reason, digest = _load_one(tmp_path / "not-there.jpg", None, 32, 0.4)
    assert arr is None and reason == "listed file missing" and digest == ""


def test_text_file_named_jpg(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("this is not an image\n")
    _bad(p, "undecodable")


def test_reason_is_bounded(tmp_path):
    """Reasons go into a JSON report and a CSV column: they stay short."""
    p = tmp_path / ("x" * 150 + ".jpg")
    p.write_bytes(b"\xff\xd8\xff" + b"\x00" * 50)                 # a JPEG header, then nothing
    assert len(_bad(p, "undecodable")) <= 200


def test_box_crop_outside_the_image_is_black(tmp_path):
    """A face box near the edge: the square crop reaches past the image and is filled black."""
    p = tmp_path / "edge.png"
    Image.fromarray(np.full((H, W, 3), 200, np.uint8)).save(p)
    arr, reason, _ = _load_one(p, (0.0, 0.0, 20.0, 20.0), 32, 0.4)
    assert reason is None and arr.shape == (32, 32, 3)
    assert (arr[0, 0] == 0).all() and (arr[-1, -1] == 200).all()
