"""Procedural face renderer of the synthetic demo suite.

One rendering model for every synthetic dataset, so that what a model learns on the IMDB-like
set transfers to the FG-NET-like one (the point of the cascade demo).  A face carries

* **identity**, fixed per subject (:class:`Identity`): skin tone, head shape, jaw, eye spacing and
  size, nose, mouth, ears, hair colour and style, eyebrows, beard, and the person's own aging
  rates (greying onset, hair recession, wrinkling, sagging);
* **age**: childhood growth (a large cranium relative to the face, eyes low in the head and large,
  a short round face with a small nose and jaw, growing towards adult proportions by 18) and
  adult aging (forehead lines, crow's feet, nasolabial and marionette folds, under-eye bags, skin
  texture and age spots, greying from the late 30s to ~70, hairline recession for some
  identities, a sagging jawline late in life), drawn with enough contrast to survive resizing to
  48 px;
* **nuisance**, drawn per image from the ``rng`` passed in: pose (in-plane rotation, shift,
  scale, a small yaw), expression, clothes, background, lighting gradient, colour cast, blur,
  noise, and per-domain effects chosen by ``style`` (see :data:`STYLES`): ``studio`` (AgeDB-ish),
  ``wild`` (IMDB / Adience: strong lighting, pose, clutter and blur), ``scan`` (old photo scans as
  in FG-NET: grayscale or sepia, faded, film grain, dust).

Faces are drawn as polygons with ``PIL.ImageDraw`` at 2-4x the output resolution and downsampled
with LANCZOS; textures, lighting and noise are applied with numpy at the output resolution.  All
randomness comes from the generator passed in, so a seeded generator gives identical pixels.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = ["Identity", "STYLES", "render_face", "render_face_wh", "render_scene", "render_background",
           "age_maturity"]

# --------------------------------------------------------------------------------------------
# palettes

#: Skin tones from light to dark; an identity's tone is a point on this ramp.
_SKIN_RAMP = np.array([(252, 224, 203), (241, 203, 174), (226, 182, 147), (204, 154, 114),
                       (170, 119, 84), (128, 86, 58), (92, 61, 43)], dtype=np.float64)
#: Skin-ramp range per UTKFace race code (0 White, 1 Black, 2 Asian, 3 Indian, 4 Others).
_RACE_SKIN = {0: (0.00, 0.32), 1: (0.68, 1.00), 2: (0.08, 0.42), 3: (0.42, 0.74), 4: (0.18, 0.70)}
_HAIR = {"black": (28, 24, 22), "darkbrown": (58, 40, 28), "brown": (96, 66, 40),
         "lightbrown": (140, 104, 68), "blonde": (206, 172, 112), "red": (150, 68, 34),
         "auburn": (112, 50, 30)}
_HAIR_BY_RACE = {0: (["black", "darkbrown", "brown", "lightbrown", "blonde", "red", "auburn"],
                     [0.10, 0.26, 0.24, 0.14, 0.16, 0.05, 0.05]),
                 1: (["black", "darkbrown"], [0.85, 0.15]),
                 2: (["black", "darkbrown"], [0.85, 0.15]),
                 3: (["black", "darkbrown", "brown"], [0.75, 0.2, 0.05]),
                 4: (["black", "darkbrown", "brown", "lightbrown"], [0.45, 0.3, 0.18, 0.07])}
_EYES = [(58, 38, 26), (92, 60, 36), (118, 96, 56), (78, 106, 76), (70, 108, 156), (104, 122, 140)]
_RACE_P = [0.45, 0.19, 0.14, 0.17, 0.05]


def _clip01(x: float) -> float:
    return 0.0 if x < 0.0 else (1.0 if x > 1.0 else x)


def _ramp(age: float, start: float, end: float) -> float:
    return _clip01((age - start) / (end - start))


def _lerp(a: float, b: float, t: float) -> float:
    return a + (b - a) * t


def _mix(c1, c2, t: float, alpha: int = 255) -> tuple:
    return (int(c1[0] + (c2[0] - c1[0]) * t), int(c1[1] + (c2[1] - c1[1]) * t),
            int(c1[2] + (c2[2] - c1[2]) * t), int(alpha))


def _scale(c, f: float, alpha: int = 255) -> tuple:
    return (min(255, int(c[0] * f)), min(255, int(c[1] * f)), min(255, int(c[2] * f)), int(alpha))


def age_maturity(age: float) -> float:
    """Growth from birth (0) to adult proportions (1 at 18 and over); fastest in early childhood."""
    a = min(max(float(age), 0.0), 18.0)
    return 1.0 - (1.0 - a / 18.0) ** 1.6


# --------------------------------------------------------------------------------------------
# identity


@dataclasses.dataclass(frozen=True)
class Identity:
    """Per-subject appearance parameters (stable across the subject's ages).

    Lengths are in head units (cranium half-width = 1); ``*_ratio``/multipliers are around 1.
    Build one with :meth:`Identity.random`.
    """

    gender: str                 # 'm' | 'f'
    race: int                   # UTKFace code 0-4
    skin: tuple                 # base RGB
    face_ratio: float           # head width multiplier
    face_len: float             # lower-face length multiplier
    jaw: float                  # adult jaw superellipse exponent: 1.6 pointed .. 2.9 square
    eye_spacing: float
    eye_size: float
    eye_color: tuple
    eye_tilt: float             # outer-corner lift, head units
    brow_thick: float
    brow_arch: float
    brow_height: float
    nose_len: float
    nose_width: float
    mouth_width: float
    lip_thick: float
    lip_color: tuple
    ear_size: float
    hair_color: tuple
    hair_style: int             # 0 short, 1 medium, 2 long, 3 curly/volume, 4 fringe
    hair_volume: float
    hairline: float             # offset of the hairline, head units (+ = lower)
    recede: float               # 0: none; up to 1: strong recession/thinning in later life
    recede_onset: float         # age recession starts
    grey_onset: float           # age greying starts (~32-45)
    grey_span: float            # years from onset to fully grey
    grey_target: tuple          # colour of fully grey hair
    wrinkle_rate: float         # ~0.75-1.3
    sag_rate: float             # ~0.5-1.3
    beard: int                  # 0 none, 1 stubble, 2 moustache, 3 goatee, 4 full
    freckles: float
    spots_seed: int             # positions of age spots and per-identity wrinkle jitter

    @classmethod
    def random(cls, rng: np.random.Generator, gender: str | None = None,
               race: int | None = None) -> "Identity":
        """Draw an identity; ``gender`` ('m'/'f') and ``race`` (0-4) may be fixed by the caller."""
        if gender is None:
            gender = "m" if rng.random() < 0.5 else "f"
        if race is None:
            race = int(rng.choice(5, p=_RACE_P))
        male = gender == "m"
        lo, hi = _RACE_SKIN[int(race)]
        t = _lerp(lo, hi, float(rng.random())) * (len(_SKIN_RAMP) - 1)
        i = min(int(t), len(_SKIN_RAMP) - 2)
        skin = _SKIN_RAMP[i] + (_SKIN_RAMP[i + 1] - _SKIN_RAMP[i]) * (t - i)
        skin = np.clip(skin + rng.normal(0, 5, 3), 0, 255)
        names, p = _HAIR_BY_RACE[int(race)]
        hair = np.array(_HAIR[names[int(rng.choice(len(names), p=p))]], dtype=np.float64)
        hair = tuple(int(v) for v in np.clip(hair * rng.uniform(0.85, 1.15) + rng.normal(0, 6, 3), 0, 255))
        eye = _EYES[int(rng.integers(0, len(_EYES)))] if race == 0 else _EYES[int(rng.integers(0, 2))]
        lip = skin * np.array([0.80, 0.55, 0.55]) + np.array([40, 8, 14])
        if not male and rng.random() < 0.55:          # lipstick
            lip = lip * 0.5 + np.array([170, 40, 60]) * 0.5
        if male:
            style = int(rng.choice(5, p=[0.62, 0.18, 0.04, 0.10, 0.06]))
            recede = float(rng.uniform(0.35, 1.0)) if rng.random() < 0.42 else 0.0
            beard = int(rng.choice(5, p=[0.5, 0.18, 0.1, 0.08, 0.14]))
        else:
            style = int(rng.choice(5, p=[0.12, 0.30, 0.38, 0.08, 0.12]))
            recede = float(rng.uniform(0.2, 0.45)) if rng.random() < 0.06 else 0.0
            beard = 0
        grey = rng.uniform(200, 238)
        return cls(
            gender=gender, race=int(race), skin=tuple(int(v) for v in skin),
            face_ratio=float(rng.uniform(0.91, 1.09)),
            face_len=float(rng.uniform(0.90, 1.10) * (1.03 if male else 0.98)),
            jaw=float(rng.uniform(2.1, 2.9) if male else rng.uniform(1.6, 2.3)),
            eye_spacing=float(rng.uniform(0.88, 1.12)), eye_size=float(rng.uniform(0.85, 1.15)),
            eye_color=tuple(eye), eye_tilt=float(rng.uniform(-0.03, 0.04)),
            brow_thick=float(rng.uniform(0.7, 1.3) * (1.15 if male else 0.85)),
            brow_arch=float(rng.uniform(0.2, 1.0)), brow_height=float(rng.uniform(-0.04, 0.04)),
            nose_len=float(rng.uniform(0.88, 1.12)), nose_width=float(rng.uniform(0.82, 1.2)),
            mouth_width=float(rng.uniform(0.85, 1.15)),
            lip_thick=float(rng.uniform(0.75, 1.25) * (0.9 if male else 1.1)),
            lip_color=tuple(int(v) for v in np.clip(lip, 0, 255)),
            ear_size=float(rng.uniform(0.85, 1.2)),
            hair_color=hair, hair_style=style, hair_volume=float(rng.uniform(0.9, 1.15)),
            hairline=float(rng.uniform(-0.06, 0.06)), recede=recede,
            recede_onset=float(rng.uniform(22, 42)),
            grey_onset=float(rng.uniform(32, 45)), grey_span=float(rng.uniform(22, 36)),
            grey_target=(int(grey), int(grey), int(grey - rng.uniform(0, 10))),
            wrinkle_rate=float(rng.uniform(0.75, 1.3)), sag_rate=float(rng.uniform(0.5, 1.3)),
            beard=beard, freckles=float(rng.uniform(0, 1) if (race == 0 and rng.random() < 0.2) else 0.0),
            spots_seed=int(rng.integers(0, 2**31 - 1)),
        )


# --------------------------------------------------------------------------------------------
# styles

#: Nuisance settings per dataset "domain".  ``render_face(style={"preset": "scan", ...})`` starts
#: from a preset and overrides single keys; a dict without "preset" overrides ``default``.
STYLES: dict[str, dict] = {
    "default": dict(bg="gradient", clutter=0, rotate=6.0, shift=0.04, zoom=0.05, yaw=0.4,
                    light=0.22, cast=0.04, contrast=0.08, blur=(0.0, 0.5), noise=(1.5, 4.0),
                    smile=0.6, gray=0.0, sepia=0.0, grain=0.0, fade=0.0, dust=0, vignette=0.0,
                    tilt_corners=0.0),
    "studio": dict(bg="plain", clutter=0, rotate=4.0, shift=0.03, zoom=0.04, yaw=0.25,
                   light=0.12, cast=0.03, contrast=0.05, blur=(0.0, 0.35), noise=(1.0, 2.5),
                   smile=0.8, gray=0.12, sepia=0.0, grain=0.0, fade=0.0, dust=0, vignette=0.0,
                   tilt_corners=0.0),
    "wild": dict(bg="clutter", clutter=5, rotate=10.0, shift=0.06, zoom=0.08, yaw=0.8,
                 light=0.38, cast=0.08, contrast=0.15, blur=(0.0, 1.1), noise=(2.0, 7.0),
                 smile=1.0, gray=0.0, sepia=0.0, grain=0.0, fade=0.0, dust=0, vignette=0.15,
                 tilt_corners=0.0),
    "scan": dict(bg="plain", clutter=0, rotate=3.0, shift=0.03, zoom=0.04, yaw=0.2,
                 light=0.18, cast=0.0, contrast=0.1, blur=(0.3, 0.9), noise=(1.0, 2.0),
                 smile=0.5, gray=1.0, sepia=0.35, grain=9.0, fade=0.3, dust=6, vignette=0.3,
                 tilt_corners=0.0),
}


def _style(style: dict | None) -> dict:
    if style is None:
        return STYLES["default"]
    base = dict(STYLES[style.get("preset", "default")])
    base.update({k: v for k, v in style.items() if k != "preset"})
    return base


# --------------------------------------------------------------------------------------------
# geometry

_N = 28
_ANG = np.linspace(0, 2 * np.pi, _N, endpoint=False)
_CIRC = np.stack([np.cos(_ANG), np.sin(_ANG)], 1)
_UP = np.linspace(np.pi, 2 * np.pi, 17)            # upper half (y < 0), left -> right
_LOW = np.linspace(0.0, np.pi, 21)                  # lower half, right -> left


def _ell(cx, cy, rx, ry) -> np.ndarray:
    return _CIRC * (rx, ry) + (cx, cy)


def _geometry(idt: Identity, age: float) -> dict:
    """Head-unit positions of everything age moves.  x right, y down, origin at the cranium centre."""
    m = age_maturity(age)
    g = {"m": m}
    g["rx"] = _lerp(1.0, 0.95, m) * idt.face_ratio
    g["y_top"] = y_top = -_lerp(1.16, 1.05, m)
    sag = idt.sag_rate * _ramp(age, 48, 92)
    g["sag"] = sag
    g["b_low"] = b_low = _lerp(0.84, 1.33, m) * idt.face_len + 0.07 * sag
    g["jaw_n"] = _lerp(2.2, idt.jaw, m) - 0.25 * sag
    H = b_low - y_top
    g["y_e"] = y_e = y_top + _lerp(0.605, 0.47, m) * H
    g["r_e"] = _lerp(0.205, 0.15, m) * idt.eye_size
    g["open"] = _lerp(0.66, 0.52, m) * (1.0 - 0.28 * _ramp(age, 45, 90))
    g["dx_e"] = _lerp(0.40, 0.40, m) * idt.eye_spacing
    g["r_iris"] = _lerp(0.105, 0.08, m) * (0.5 + 0.5 * idt.eye_size)
    g["y_b"] = y_e - _lerp(0.22, 0.25, m) - idt.brow_height * m + 0.025 * _ramp(age, 50, 90)
    g["brow_th"] = idt.brow_thick * _lerp(0.035, 0.068, m) * (1.0 - 0.2 * _ramp(age, 60, 95))
    g["y_n"] = y_n = y_e + idt.nose_len * _lerp(0.30, 0.56, m) + 0.05 * _ramp(age, 40, 90)
    g["nose_w"] = idt.nose_width * _lerp(0.105, 0.16, m) * (1 + 0.1 * _ramp(age, 40, 90))
    g["y_m"] = y_n + _lerp(0.19, 0.27, m) + 0.03 * sag
    g["mw"] = idt.mouth_width * _lerp(0.21, 0.30, m)
    g["lip"] = idt.lip_thick * _lerp(0.05, 0.065, m) * (1.0 - 0.45 * _ramp(age, 35, 85))
    g["y_hl"] = y_top + _lerp(0.36, 0.42, m) * (y_e - y_top) + idt.hairline * m
    return g


def _outline(g: dict) -> np.ndarray:
    """Head silhouette (cranium ellipse above, jaw superellipse below, jowls when sagging)."""
    rx, b, n = g["rx"], g["b_low"], g["jaw_n"]
    up = np.stack([rx * np.cos(_UP), -g["y_top"] * np.sin(_UP)], 1)
    c, s = np.cos(_LOW), np.sin(_LOW)
    x = rx * np.sign(c) * np.abs(c) ** (2.0 / n)
    y = b * np.abs(s) ** (2.0 / n)
    u = y / b
    x = x * (1.0 + 0.10 * g["sag"] * np.exp(-((u - 0.78) / 0.14) ** 2))
    low = np.stack([x, y], 1)
    return np.concatenate([up, low[1:-1]], 0)


# --------------------------------------------------------------------------------------------
# drawing


class _Pen:
    """Head-unit -> canvas-pixel transform (scale, rotation, yaw for inner features) + drawing."""

    def __init__(self, draw: ImageDraw.ImageDraw, cx: float, cy: float, s: float, angle: float, yaw: float):
        th = math.radians(angle)
        self.d, self.cx, self.cy, self.s = draw, cx, cy, s
        self.c, self.sn = math.cos(th) * s, math.sin(th) * s
        self.yaw = yaw

    def xy(self, pts, feature: float = 0.0) -> list:
        pts = np.asarray(pts, dtype=np.float64)
        x, y = pts[:, 0], pts[:, 1]
        if feature:
            x = x + self.yaw * 0.14 * feature
        return np.column_stack([self.cx + self.c * x - self.sn * y,
                                self.cy + self.sn * x + self.c * y]).ravel().tolist()

    def poly(self, pts, fill, feature: float = 0.0) -> None:
        self.d.polygon(self.xy(pts, feature), fill=fill)

    def line(self, pts, fill, width: float, feature: float = 1.0) -> None:
        w = max(1, int(round(width * self.s)))
        self.d.line(self.xy(pts, feature), fill=fill, width=w, joint="curve" if len(pts) > 2 else None)

    def ell(self, cx, cy, rx, ry, fill, feature: float = 0.0) -> None:
        self.d.polygon(self.xy(_ell(cx, cy, rx, ry), feature), fill=fill)


def _curve(x0, y0, x1, y1, bend, n=6) -> np.ndarray:
    """A quadratic arc from (x0,y0) to (x1,y1) bulging by ``bend`` perpendicular to the chord."""
    t = np.linspace(0, 1, n)[:, None]
    p0, p1 = np.array([x0, y0]), np.array([x1, y1])
    d = p1 - p0
    nrm = np.array([-d[1], d[0]]) / (np.hypot(*d) + 1e-9)
    mid = (p0 + p1) / 2 + nrm * bend
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * mid + t ** 2 * p1


def _mirror(pts: np.ndarray) -> np.ndarray:
    return pts * (-1.0, 1.0)


def _hair_colour(idt: Identity, age: float, m: float) -> tuple:
    base = np.array(idt.hair_color, dtype=np.float64)
    base = base + (np.array([214, 186, 132]) - base) * 0.35 * (1 - m) * (idt.race == 0)  # fair kids
    grey = _clip01((age - idt.grey_onset) / idt.grey_span) ** 0.9
    col = base + (np.array(idt.grey_target) - base) * grey
    return tuple(int(v) for v in col), grey


def _draw_head(pen: _Pen, idt: Identity, age: float, rng: np.random.Generator, st: dict,
               clothes: tuple) -> None:
    g = _geometry(idt, age)
    m = g["m"]
    rx, y_e, r_e, dx_e, y_n, y_m, mw = g["rx"], g["y_e"], g["r_e"], g["dx_e"], g["y_n"], g["y_m"], g["mw"]
    b_low, y_top = g["b_low"], g["y_top"]
    skin = np.array(idt.skin, dtype=np.float64)
    skin = skin + np.array([10, -6, -4]) * (1 - m) ** 2 - np.array([0, 4, 10]) * _ramp(age, 50, 95)
    skin = tuple(int(v) for v in np.clip(skin, 0, 255))
    hair, grey = _hair_colour(idt, age, m)
    wr = idt.wrinkle_rate
    jit = np.random.default_rng(idt.spots_seed)          # identity-stable wrinkle layout
    smile = float(rng.uniform(0, st["smile"])) if rng.random() < 0.6 else 0.0

    # --- hair length/volume by age
    style = idt.hair_style
    sparse = 1.0 - _ramp(age, 0.3, 3.5)                  # babies: sparse hair
    if age < 10 and style == 3 and idt.race not in (1, 4):
        style = 1
    if idt.gender == "m" and age < 14 and style == 2:
        style = 0
    recede = idt.recede * _ramp(age, idt.recede_onset, idt.recede_onset + 30)
    thin = max(0.75 * max(0.0, recede - 0.45) / 0.55, 0.15 * _ramp(age, 60, 95), 0.7 * sparse)
    cap_col = _mix(hair, skin, thin)
    vol = idt.hair_volume * (1.0 - 0.08 * sparse)

    # --- shoulders, back hair, neck, ears
    yc = b_low + 1.25
    pen.ell(0.0, yc, 2.1, 0.75, clothes)
    if style == 2 and sparse < 0.5:
        back = np.array([[-rx * 1.22, -0.2], [-rx * 1.3, b_low + 0.55], [rx * 1.3, b_low + 0.55], [rx * 1.22, -0.2]])
        pen.poly(back, _scale(hair, 0.8))
    neck_w = _lerp(0.46, 0.52, m) * idt.face_ratio * (1.08 if idt.gender == "m" else 0.95)
    pen.poly([[-neck_w, 0.2], [neck_w, 0.2], [neck_w * 1.06, yc - 0.35], [-neck_w * 1.06, yc - 0.35]],
             _scale(skin, 0.82))
    ear_y = (y_e + y_n) / 2
    ear_h = (y_n - y_e) * 0.55 * idt.ear_size + 0.04
    if style in (0, 3) or sparse > 0.3:               # other styles cover the ears
        for sgn in (-1, 1):
            pen.ell(sgn * rx * 0.98, ear_y, 0.12 * idt.ear_size, ear_h, _scale(skin, 0.92))
            pen.ell(sgn * rx * 1.01, ear_y, 0.05, ear_h * 0.6, _scale(skin, 0.78))

    # --- face
    outline = _outline(g)
    pen.poly(outline, _scale(skin, 0.91))                  # darker rim: a bit of 3-D
    pen.poly(outline * (0.88, 0.97), skin + (255,))
    if m < 0.8 or idt.gender == "f":                      # rosy cheeks
        a = int(70 * (1 - m) + (28 if idt.gender == "f" else 0))
        for sgn in (-1, 1):
            pen.ell(sgn * (dx_e + 0.05), y_n - 0.02, 0.16, 0.1, (225, 105, 105, a), feature=0.6)
    if idt.freckles > 0 and m > 0.2:
        fr = jit.uniform(-1, 1, (int(10 * idt.freckles) + 2, 2))
        for fx, fy in fr:
            pen.ell(fx * 0.55, y_n - 0.12 + fy * 0.12, 0.018, 0.018, _scale(skin, 0.72, 160), feature=0.6)

    # --- age: folds and lines (line colour darkens with intensity)
    def fold(intensity: float) -> tuple:
        return _scale(skin, 0.45, int(255 * _clip01(intensity)))

    lw = 0.034
    f_fore = wr * _ramp(age, 27, 68)
    if f_fore > 0.02:
        k = 1 + int(round(3 * _clip01(f_fore)))
        top = g["y_hl"] + 0.12
        bot = g["y_b"] - 0.13
        for i in range(k):
            yy = _lerp(bot, top, (i + 0.5) / max(k, 1) * 0.9) + jit.normal(0, 0.01)
            w = 0.38 + 0.08 * jit.random()
            pen.line(_curve(-w, yy + 0.02, w, yy + 0.02, -0.04 - 0.01 * i, 7), fold(0.25 + 0.75 * f_fore), lw)
    f_crow = wr * _ramp(age, 34, 70)
    f_naso = wr * _ramp(age, 22, 66)
    f_bag = wr * _ramp(age, 40, 80)
    f_mar = wr * _ramp(age, 50, 85)
    for sgn in (-1, 1):
        if f_crow > 0.02:
            ox, oy = sgn * (dx_e + r_e * 1.15), y_e
            for j, ang in enumerate((-0.45, 0.0, 0.45)[: 1 + int(2.5 * _clip01(f_crow))]):
                ln = 0.13 + 0.05 * f_crow
                pen.line([[ox, oy + 0.02 * j - 0.02], [ox + sgn * ln * math.cos(ang), oy + ln * math.sin(ang)]],
                         fold(0.3 + 0.7 * f_crow), lw * 0.9)
        if f_naso > 0.02:
            nx = sgn * (g["nose_w"] + 0.05)
            pen.line(_curve(nx, y_n - 0.06, sgn * (mw + 0.06), y_m + 0.05 + 0.06 * g["sag"], sgn * 0.05, 7),
                     fold(0.15 + 0.85 * f_naso), lw * (1 + 0.5 * f_naso))
        if f_bag > 0.02:
            ey = y_e + r_e * g["open"] + 0.05
            pen.line(_curve(sgn * (dx_e - r_e * 0.8), ey, sgn * (dx_e + r_e * 0.9), ey, sgn * 0.05, 6),
                     fold(0.2 + 0.8 * f_bag), lw * 0.9, feature=1.0)
        if f_mar > 0.02:
            pen.line([[sgn * (mw + 0.01), y_m + 0.04], [sgn * (mw + 0.04), y_m + 0.22 + 0.05 * g["sag"]]],
                     fold(0.2 + 0.8 * f_mar), lw)
        if g["sag"] > 0.15:                                 # jowl shadow
            pen.line(_curve(sgn * rx * 0.72, y_m, sgn * rx * 0.42, b_low * 0.97, -sgn * 0.04, 6),
                     fold(0.5 * g["sag"]), lw * 1.2, feature=0.0)
    f_neck = wr * _ramp(age, 45, 85)
    if f_neck > 0.05:
        for i in range(2):
            yy = b_low + 0.18 + 0.16 * i
            pen.line(_curve(-0.35, yy, 0.35, yy, 0.04, 5), fold(0.6 * f_neck), lw, feature=0.0)
    f_spot = _ramp(age, 55, 90)
    if f_spot > 0:
        sp = jit.uniform(-1, 1, (8, 3))
        for sx, sy, sz in sp[: int(round(8 * f_spot))]:
            pen.ell(sx * 0.6, -0.4 + sy * 0.35 + 0.2 * (sy > 0.3), 0.03 + 0.012 * sz, 0.025, _scale(skin, 0.7, 170))

    # --- beard (adult men)
    if idt.gender == "m" and idt.beard and age >= 16:
        b_amt = _ramp(age, 16, 24)
        bcol = _hair_colour(idt, age + 4, m)[0]
        if idt.beard == 1 or idt.beard == 4:
            a = 55 if idt.beard == 1 else 235
            hi = 0.2 if idt.beard == 1 else 0.32           # the beard line rises towards the ears
            xs = np.linspace(-rx, rx, 11)
            ytop = y_n + 0.03 - hi * (xs / rx) ** 2
            lower = outline[outline[:, 1] > ytop.min()]
            region = np.concatenate([np.stack([xs, ytop], 1), lower], 0)
            pen.poly(region, _mix(skin, bcol, 0.8, int(a * b_amt)))
        if idt.beard in (2, 3, 4):
            ms = np.array([[-mw - 0.05, y_m + 0.02], [-mw * 0.9, y_n + 0.05], [mw * 0.9, y_n + 0.05],
                           [mw + 0.05, y_m + 0.02], [0, y_m - g["lip"] * 0.6]])
            pen.poly(ms, bcol + (int(240 * b_amt),), feature=1.0)
        if idt.beard == 3:
            pen.ell(0, (y_m + b_low) / 2 + 0.05, mw * 0.75, (b_low - y_m) / 2, bcol + (int(230 * b_amt),), feature=0.8)

    # --- hair cap (drawn over the forehead)
    if not (sparse > 0.97):
        vx = {0: 1.06, 1: 1.14, 2: 1.14, 3: 1.3, 4: 1.12}[style] * vol
        vy = {0: 1.09, 1: 1.12, 2: 1.12, 3: 1.28, 4: 1.12}[style] * vol
        vx, vy = _lerp(1.03, vx, 1 - sparse), _lerp(1.02, vy, 1 - sparse)
        y_side = {0: y_e - 0.18, 1: y_n, 2: y_n + 0.1, 3: y_e, 4: y_n}[style]
        if sparse > 0.3:
            y_side = y_e - 0.3
        th = np.linspace(np.pi, 2 * np.pi, 23)
        r = 1.0 + (0.05 * np.sin(th * 14) if style == 3 else 0.0)
        arc = np.stack([rx * vx * r * np.cos(th), -y_top * vy * r * np.sin(th)], 1)
        side_r = np.array([[rx * vx, min(y_side, 0.0)], [rx * vx * 0.98, y_side], [rx * 0.9, y_side]])
        y_hl = g["y_hl"] - 0.42 * recede + (0.2 if style == 4 else 0.0)
        xs = np.linspace(rx * 0.9, -rx * 0.9, 13)
        u = np.abs(xs) / rx
        yh = y_hl + 0.14 * u ** 2 - 0.36 * recede * np.exp(-((u - 0.6) / 0.2) ** 2)
        if style == 4:
            yh = y_hl + 0.05 * u ** 2
        yh = np.minimum(yh, y_side)
        inner = np.stack([xs, yh], 1)
        temple = np.array([[rx * 0.9, min(y_side, y_e - 0.25)]])
        cap = np.concatenate([arc, side_r, temple, inner, _mirror(temple), _mirror(side_r)[::-1]], 0)
        pen.poly(cap, cap_col)
        if style != 4 and recede < 0.5 and sparse < 0.5:     # parting line
            px = 0.25 if (idt.spots_seed % 2) else -0.25
            pen.line([[px, y_top * vy * 0.97], [px * 1.1, y_hl + 0.05]], _scale(cap_col, 0.8, 120), 0.03, feature=0)

    # --- eyebrows
    bcol = _mix(hair, idt.grey_target, 0.55 * grey, int(255 * _lerp(0.45, 0.95, m)))
    bcol = _scale(bcol, 0.82, bcol[3])
    t = np.linspace(0, 1, 8)
    for sgn in (-1, 1):
        xs = dx_e + r_e * (-0.95 + 2.15 * t)
        arch = (0.03 + 0.05 * idt.brow_arch) * np.sin(np.pi * t ** 0.8)
        y_c = g["y_b"] - arch + 0.02 * t
        th = g["brow_th"] * (1.0 - 0.55 * t)
        top = np.stack([sgn * xs, y_c - th / 2], 1)
        bot = np.stack([sgn * xs, y_c + th / 2], 1)[::-1]
        pen.poly(np.concatenate([top, bot]), bcol, feature=1.0)

    # --- eyes
    ry = r_e * g["open"]
    for sgn in (-1, 1):
        ex = sgn * dx_e
        pen.ell(ex, y_e, r_e * 1.35, ry * 1.9, _scale(skin, 0.86, 110), feature=1.0)     # socket shade
        eye = _ell(ex, y_e, r_e, ry)
        eye[:, 1] -= idt.eye_tilt * (eye[:, 0] - ex) * sgn / r_e * 0.5
        pen.poly(eye, (236, 230, 224, 255), feature=1.0)
        ir = min(g["r_iris"], ry * 1.05)
        pen.ell(ex, y_e + 0.004, ir, ir * 0.98, idt.eye_color + (255,), feature=1.15)
        pen.ell(ex, y_e + 0.004, ir * 0.45, ir * 0.45, (12, 10, 10, 255), feature=1.2)
        lid = np.concatenate([eye[_N // 2:], eye[:1]], 0)
        pen.line(lid, (40, 28, 24, 255 if idt.gender == "f" else 220), 0.03 if idt.gender == "f" else 0.022)
        droop = _ramp(age, 45, 90)
        if droop > 0:      # hooded upper lid
            hood = np.array([[ex - sgn * r_e * 0.2, y_e - ry * 1.05], [ex + sgn * r_e * 1.05, y_e - ry * (1.0 - 0.9 * droop)],
                             [ex + sgn * r_e * 1.15, y_e - ry * 1.6], [ex - sgn * r_e * 0.2, y_e - ry * 1.6]])
            pen.poly(hood, skin + (int(255 * droop),), feature=1.0)
            pen.line(hood[:2], fold(0.6 * droop), 0.02)

    # --- nose
    nw = g["nose_w"]
    nl = y_n - y_e
    for sgn in (-1, 1):
        pen.line([[sgn * nw * 0.55, y_e + nl * 0.25], [sgn * nw * 0.8, y_n - 0.07]], _scale(skin, 0.8, 110), 0.035, feature=1.3)
        pen.ell(sgn * nw * 0.5, y_n - 0.02, nw * 0.32, nw * 0.17, _scale(skin, 0.42, 230), feature=1.4)
    pen.line(_curve(-nw * 1.05, y_n - 0.05, nw * 1.05, y_n - 0.05, 0.05, 7), _scale(skin, 0.72, 170), 0.03, feature=1.4)
    pen.ell(0.0, y_n - nl * 0.25, nw * 0.35, nl * 0.22, _scale(skin, 1.08, 90), feature=1.35)

    # --- mouth
    lt = g["lip"]
    up = smile * 0.05
    lip_c = _mix(idt.lip_color, skin, 0.4 * _ramp(age, 40, 90))
    upper = np.array([[-mw, y_m - up], [-mw * 0.55, y_m - lt * 0.95], [-mw * 0.12, y_m - lt * 1.05], [0, y_m - lt * 0.75],
                      [mw * 0.12, y_m - lt * 1.05], [mw * 0.55, y_m - lt * 0.95], [mw, y_m - up], [0, y_m + 0.005]])
    lower = np.array([[-mw, y_m - up], [0, y_m], [mw, y_m - up], [mw * 0.5, y_m + lt * 1.35], [-mw * 0.5, y_m + lt * 1.35]])
    pen.poly(lower, lip_c, feature=1.0)
    pen.poly(upper, _scale(lip_c, 0.88), feature=1.0)
    pen.line(_curve(-mw, y_m - up, mw, y_m - up, -0.03 - up * 0.8, 7), (70, 32, 32, 230), 0.026)
    if smile > 0.5:                                          # smile creases
        for sgn in (-1, 1):
            pen.line([[sgn * (mw + 0.02), y_m - up - 0.04], [sgn * (mw + 0.05), y_m + 0.03]], fold(0.35), lw)


_GRID12 = np.mgrid[0:12, 0:12].astype(np.float64)


def _background(rng: np.random.Generator, W: int, H: int, st: dict) -> Image.Image:
    """Canvas background: plain, gradient or cluttered (in-the-wild)."""
    c1 = rng.uniform(40, 225, 3)
    if rng.random() < 0.3:
        c1 = np.full(3, rng.uniform(60, 230))
    if st["bg"] == "plain":
        c2 = c1 * rng.uniform(0.8, 1.05)
    else:
        c2 = rng.uniform(20, 235, 3)
    ang = rng.uniform(0, 2 * np.pi)
    k = 12                                          # a linear ramp: compute small, upsample
    yy, xx = (_GRID12 + 0.5) / k - 0.5
    t = np.clip(xx * math.cos(ang) + yy * math.sin(ang) + 0.5, 0, 1)[..., None]
    arr = (c1 * (1 - t) + c2 * t).astype(np.uint8)
    img = Image.fromarray(arr, "RGB").resize((W, H), Image.BILINEAR)
    k = st.get("clutter", 0)
    if k:
        d = ImageDraw.Draw(img, "RGBA")
        for _ in range(int(rng.integers(0, k + 1))):
            x0, y0 = rng.uniform(-0.2, 1.0) * W, rng.uniform(-0.2, 1.0) * H
            w, h = rng.uniform(0.1, 0.6) * W, rng.uniform(0.1, 0.6) * H
            col = tuple(int(v) for v in rng.uniform(0, 255, 3)) + (int(rng.uniform(80, 230)),)
            if rng.random() < 0.5:
                d.rectangle([x0, y0, x0 + w, y0 + h], fill=col)
            else:
                d.ellipse([x0, y0, x0 + w, y0 + h], fill=col)
    return img


#: ITU-R BT.601 luma weights, as float32 (the precision the pixels are rendered in).
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _luminance(a: np.ndarray) -> np.ndarray:
    """BT.601 luma of a float32 (H, W, 3) array, the same bits on every CPU.

    ``a @ _LUMA`` is a BLAS gemv whose kernel OpenBLAS picks per CPU: the AVX-512 kernel chains
    fused multiply-adds, the Haswell one rounds each product, so a machine without AVX-512 wrote
    other JPEG bytes for every grayscale scan and moved the demo suite's manifests (and every
    stage key).  Elementwise float64 arithmetic is exactly rounded on any IEEE machine: a float32
    product is exact in float64, so each step below is one rounded fused multiply-add, the chain
    ``fma(x2, w2, fma(x1, w1, x0 * w0))`` that the suite was first generated with."""
    x = a.astype(np.float64)
    w = _LUMA.astype(np.float64)
    acc = (x[..., 0] * w[0]).astype(np.float32)
    acc = (acc + x[..., 1] * w[1]).astype(np.float32)
    return (acc + x[..., 2] * w[2]).astype(np.float32)


def _post(img: Image.Image, rng: np.random.Generator, st: dict, mask: np.ndarray | None, age_tex: float) -> Image.Image:
    """Output-resolution effects: blur, skin texture, lighting, colour cast, noise, scan looks."""
    lo, hi = st["blur"]
    sigma = float(rng.uniform(lo, hi))
    if rng.random() < 0.3 and hi > 0.9:
        sigma *= 1.6
    if sigma > 0.15:
        img = img.filter(ImageFilter.GaussianBlur(sigma))
    a = np.asarray(img, dtype=np.float32)
    H, W = a.shape[:2]
    if mask is not None and age_tex > 0:
        # skin texture: blotches (low frequency) + pores (per pixel), stronger with age
        blot = np.asarray(Image.fromarray(rng.normal(0, 1, (6, 6)).astype(np.float32), "F").resize((W, H), Image.BILINEAR))
        pores = rng.normal(0, 1, (H, W)).astype(np.float32)
        tex = 1.0 + age_tex * (0.05 * blot + 0.025 * pores)
        a *= (1.0 + (tex - 1.0) * mask)[..., None]
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    xx = xx / max(W - 1, 1) * 2 - 1
    yy = yy / max(H - 1, 1) * 2 - 1
    ang = rng.uniform(0, 2 * np.pi)
    light = 1.0 + float(rng.uniform(0, st["light"])) * (xx * math.cos(ang) + yy * math.sin(ang))
    gain = rng.normal(1.0, st["cast"], 3).astype(np.float32) * float(rng.normal(1.0, st["contrast"] * 0.6))
    a = a * light[..., None] * gain
    mean = a.mean()
    a = (a - mean) * float(1.0 + rng.normal(0, st["contrast"])) + mean
    gray = rng.random() < st["gray"]
    if gray:
        lum = _luminance(a)
        if rng.random() < st["sepia"]:
            a = lum[..., None] * np.array([1.07, 0.95, 0.78], dtype=np.float32)
        else:
            a = np.repeat(lum[..., None], 3, axis=2)
    if st["fade"] > 0:
        f = float(rng.uniform(0, st["fade"]))
        a = a * (1 - f) + f * 150.0
    if st["vignette"] > 0:
        v = 1.0 - float(rng.uniform(0, st["vignette"])) * (xx ** 2 + yy ** 2) / 2
        a *= v[..., None]
    n = float(rng.uniform(*st["noise"]))
    if st["grain"] > 0:
        n = math.hypot(n, float(rng.uniform(0.4, 1.0)) * st["grain"])
    noise = rng.normal(0, n, (H, W, 1) if gray else (H, W, 3)).astype(np.float32)
    a = a + noise
    for _ in range(int(rng.integers(0, st["dust"] + 1)) if st["dust"] else 0):
        y, x = int(rng.integers(0, H)), int(rng.integers(0, W))
        a[y, x] = 245.0 if rng.random() < 0.6 else 20.0
    out = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")
    if st["tilt_corners"] and rng.random() < st["tilt_corners"]:
        ang = float(rng.uniform(-12, 12))     # Adience "coarse tilt aligned": black corners
        out = out.rotate(ang, resample=Image.BILINEAR, fillcolor=(0, 0, 0))
    return out


def _supersample(size: int) -> int:
    return int(min(4, max(2, round(192 / max(size, 1)))))


def render_scene(identity: Identity | None, age: float, rng: np.random.Generator, canvas: tuple[int, int],
                 face_size: float, center: tuple[float, float] | None = None, style: dict | None = None,
                 others: list | tuple = ()) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """Render a face whose box is about ``face_size`` px wide in a ``canvas`` = (width, height) image.

    ``center`` is the face-box centre in output pixels (default: the canvas centre).
    ``others`` = [(identity, age, face_size, (cx, cy)), ...] are drawn first (behind), e.g. a second
    face.  ``identity=None`` renders no main face.  Returns the RGB image and the main face box
    ``(x1, y1, x2, y2)`` in output pixels (from the unrotated head: cheek to cheek, mid-forehead to
    chin).
    """
    st = _style(style)
    W, H = int(canvas[0]), int(canvas[1])
    ss = _supersample(max(W, H))
    img = _background(rng, W * ss, H * ss, st)
    draw = ImageDraw.Draw(img, "RGBA")
    box = (0.0, 0.0, 0.0, 0.0)
    heads = [(o[0], o[1], o[2], o[3], False) for o in others]
    if identity is not None:
        heads.append((identity, age, face_size, center or (W / 2, H / 2), True))
    mask_img = Image.new("L", (W, H), 0)
    mdraw = ImageDraw.Draw(mask_img)
    for idt, a, fsize, (fcx, fcy), main in heads:
        g = _geometry(idt, a)
        top = g["y_b"] - 0.3
        unit = float(fsize) / (2 * g["rx"]) * float(np.exp(rng.uniform(-st["zoom"], st["zoom"])))
        dx, dy = rng.uniform(-st["shift"], st["shift"], 2) * fsize
        cx = fcx + dx
        cy = fcy + dy - unit * (top + g["b_low"]) / 2
        angle = float(rng.uniform(-st["rotate"], st["rotate"]))
        yaw = float(rng.uniform(-st["yaw"], st["yaw"]))
        clothes = tuple(int(v) for v in rng.uniform(15, 235, 3)) + (255,)
        pen = _Pen(draw, cx * ss, cy * ss, unit * ss, angle, yaw)
        _draw_head(pen, idt, a, rng, st, clothes)
        if main:
            box = (cx - unit * g["rx"], cy + unit * top, cx + unit * g["rx"], cy + unit * g["b_low"])
            mpen = _Pen(mdraw, cx, cy, unit, angle, yaw)
            mpen.poly(_outline(g), 255)
            age_tex = 0.35 + 1.4 * _ramp(a, 25, 85) * idt.wrinkle_rate
    out = img.resize((W, H), Image.LANCZOS)
    if identity is None:
        return _post(out, rng, st, None, 0.0), box
    mask = np.asarray(mask_img, dtype=np.float32) / 255.0
    return _post(out, rng, st, mask, age_tex), box


def render_face(identity: Identity, age: float, rng: np.random.Generator, size: int = 64,
                style: dict | None = None) -> Image.Image:
    """An aligned face crop (``size`` x ``size``, RGB) of ``identity`` at ``age`` years.

    ``style``: a dict of nuisance settings, optionally ``{"preset": "wild"|"studio"|"scan", ...}``
    (see :data:`STYLES`); ``None`` is the ``default`` preset.  A seeded ``rng`` gives identical pixels.
    """
    return render_face_wh(identity, age, rng, (size, size), style)


def render_face_wh(identity: Identity, age: float, rng: np.random.Generator, wh: tuple[int, int],
                   style: dict | None = None) -> Image.Image:
    """:func:`render_face` on a (width, height) canvas that need not be square."""
    W, H = int(wh[0]), int(wh[1])
    fsize = 0.62 * min(W, H / 1.1)
    img, _ = render_scene(identity, age, rng, (W, H), fsize, (W / 2, H * 0.52), style)
    return img


def render_background(rng: np.random.Generator, canvas: tuple[int, int], style: dict | None = None) -> Image.Image:
    """A canvas with no face (IMDB rows whose detector found none)."""
    img, _ = render_scene(None, 0.0, rng, canvas, 0.0, None, style)
    return img
