"""Grad-CAM (Selvaraju et al. 2017, the thesis's [42]) on an AgeModel's last convolutional
feature map, and how its mass splits over facial regions.

Why a number beside the picture: the thesis reads Figure 14 as "receptive fields align after
fine-tuning" and "ResNet/SENet look at the eyes, VGG-16 also at nose and cheeks".  The share of
activation mass per region (eyes, nose, cheeks, mouth, rest; regions from the five MTCNN
landmarks) and its spatial spread make those statements measurable and comparable across
backbones and stages.

The map: gradients of a score with respect to the body's output A (N, C, h, w), averaged over
h×w per channel (α_c), ReLU(Σ_c α_c A_c), bilinearly upsampled to the input's H×W, divided by its
maximum.  The score (`TARGETS`) is the predicted class's logit, the expected age Σ age·p, or —
for a model with no trained head (the face-recognition root, whose identity classifier is not
part of the weights) — the squared norm of the pooled embedding, i.e. what drives the
descriptor the face-recognition network produces.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from cascade.analysis import common
from cascade.data.datasets import LabelSpace
from cascade.metrics import expected_value_torch
from cascade.models.age_model import AgeModel
from cascade.report import figures

#: What the gradients are taken of.
TARGETS = ("class", "expected", "embedding")

#: Facial regions, in the priority in which overlapping pixels are assigned (so shares sum to 1).
REGIONS = ("eyes", "nose", "mouth", "cheeks", "rest")

#: The five reference points of the ArcFace / insightface 112×112 aligned face (left eye, right
#: eye, nose tip, left and right mouth corner), as fractions of that face box.  Used where MTCNN
#: finds no face in an image: placed in the face box grown by `data.margin` on every side, as
#: the cache crops faces (`cascade.data.cache.square_box`).
TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                     [41.5493, 92.3655], [70.7299, 92.2041]]) / 112.0

#: Side (pixels) images are upscaled to before MTCNN, whose smallest face is 20 px.
DETECT_SIDE = 160


def gradcam(model: AgeModel, x: torch.Tensor, target: str = "class",
            values: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(maps (N, H, W) in [0, 1], predicted class (N,)) of a normalised batch `x` (N, 3, H, W).
    `values`: the class values (ages) for `target="expected"`.  Each map is divided by its
    maximum; a map with no positive evidence (e.g. the expected age's map of an image predicted
    at the youngest class: every region only lowers it) stays all zero."""
    if target not in TARGETS:
        raise ValueError(f"Grad-CAM target {target!r}; valid: {', '.join(TARGETS)}")
    model.eval()
    with torch.no_grad():
        feats = model.body(x)
    if feats.ndim != 4:
        raise ValueError(f"Grad-CAM needs a convolutional feature map (N, C, h, w); the body gives "
                         f"{tuple(feats.shape)}")
    feats = feats.float().requires_grad_(True)
    with torch.enable_grad():
        pooled = model.pool(feats).flatten(1)
        logits = model.head(pooled)
        if target == "class":
            score = F.log_softmax(logits, 1).gather(1, logits.argmax(1, keepdim=True)).sum()
        elif target == "expected":
            score = expected_value_torch(F.softmax(logits, 1), torch.as_tensor(values)).sum()
        else:
            score = (pooled ** 2).sum()
        grads, = torch.autograd.grad(score, feats)
    alpha = grads.mean((2, 3), keepdim=True)
    cam = F.relu((alpha * feats).sum(1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0].clamp_min(0)
    top = cam.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
    return (cam / top).cpu().numpy(), logits.argmax(1).detach().cpu().numpy()


def template_landmarks(size: int, margin: float) -> np.ndarray:
    """The template's five points (x, y) in pixels of a `size`-pixel crop around a face box grown
    by `margin` of its size on every side."""
    return (TEMPLATE + margin) / (1 + 2 * margin) * size


def landmarks(images: np.ndarray, margin: float, min_prob: float) -> tuple[list[np.ndarray], list[str]]:
    """Five landmarks per image (pixels of the image) and their source: "mtcnn" where MTCNN finds
    a face in the (upscaled) image, else "template" (see TEMPLATE)."""
    from PIL import Image

    from cascade.data.face_detect import detect

    size = images.shape[1]
    scale = max(1.0, DETECT_SIDE / size)
    side = int(round(size * scale))
    pil = [Image.fromarray(np.ascontiguousarray(im)).resize((side, side), Image.BICUBIC) for im in images]
    found = detect(pil, min_prob=min_prob)
    points, source = [], []
    for det in found:
        if det is None:
            points.append(template_landmarks(size, margin))
            source.append("template")
        else:
            points.append(det.landmarks.astype(float) / scale)
            source.append("mtcnn")
    return points, source


def region_masks(points: np.ndarray, height: int, width: int) -> dict[str, np.ndarray]:
    """Disjoint boolean masks (H, W) of REGIONS from five landmarks (x, y): ellipses around each
    eye, the nose bridge down to the tip, the mouth between its corners, a cheek below each eye
    beside the nose; every other pixel is "rest".  Sizes scale with the eye distance d."""
    le, re, nose, lm, rm = (np.asarray(p, float) for p in points)
    d = max(float(np.hypot(*(re - le))), 1.0)
    y, x = np.mgrid[0:height, 0:width] + 0.5

    def ellipse(c, rx, ry):
        return ((x - c[0]) / rx) ** 2 + ((y - c[1]) / ry) ** 2 <= 1

    eye_y = (le[1] + re[1]) / 2
    shapes = {
        "eyes": ellipse(le, 0.4 * d, 0.25 * d) | ellipse(re, 0.4 * d, 0.25 * d),
        "nose": (np.abs(x - nose[0]) <= 0.25 * d) & (y >= eye_y + 0.15 * d) & (y <= nose[1] + 0.2 * d),
        "mouth": (x >= lm[0] - 0.15 * d) & (x <= rm[0] + 0.15 * d) & (np.abs(y - (lm[1] + rm[1]) / 2) <= 0.2 * d),
        "cheeks": ellipse(((le + lm) / 2) + [-0.25 * d, -0.1 * d], 0.3 * d, 0.3 * d)
        | ellipse(((re + rm) / 2) + [0.25 * d, -0.1 * d], 0.3 * d, 0.3 * d),
    }
    taken = np.zeros((height, width), bool)
    out = {}
    for name in REGIONS[:-1]:
        out[name] = shapes[name] & ~taken
        taken |= out[name]
    out["rest"] = ~taken
    return out


def region_shares(cam: np.ndarray, masks: dict[str, np.ndarray]) -> dict[str, float]:
    """Share of the map's mass in each region (sums to 1; NaN for an all-zero map)."""
    total = float(cam.sum())
    return {name: float(cam[m].sum()) / total if total > 0 else float("nan") for name, m in masks.items()}


def spread(cam: np.ndarray) -> float:
    """Activation-weighted standard distance from the map's centroid, in fractions of the image
    side: 0 for a point, about 0.41 for a uniform map (√(1/12 + 1/12)); the thesis's "activations
    span the whole image" vs. "focus on a much smaller section"."""
    h, w = cam.shape
    total = float(cam.sum())
    if total <= 0:
        return float("nan")
    y, x = np.mgrid[0:h, 0:w]
    x, y = (x + 0.5) / w, (y + 0.5) / h
    cx, cy = float((cam * x).sum()) / total, float((cam * y).sum()) / total
    return float(np.sqrt((cam * ((x - cx) ** 2 + (y - cy) ** 2)).sum() / total))


# ----------------------------------------------------------------------------- `cascade explain cam`
def pick_images(frame: pd.DataFrame, n: int, seed: int) -> list[str]:
    """Paths of `n` images spread over the age range: one drawn at random (seeded) from each of
    `n` equal-count age bins, youngest first (the thesis picked FG-NET images at random)."""
    order = frame.sort_values(["age_lo", "path"]).reset_index(drop=True)
    rng = np.random.default_rng(seed)
    return [str(order["path"].iloc[int(rng.choice(part))])
            for part in np.array_split(np.arange(len(order)), min(n, len(order)))]


def _models(plan, cache) -> list[tuple[str, AgeModel, str, np.ndarray, str]]:
    """(row name, model, Grad-CAM target, class values, stage key) of the face-recognition root
    and, when the cascade has one, its last fine-tuned stage (target nodes keep no weights)."""
    from cascade.stages.execute import model_source

    cfg, root = plan.cfg, plan.nodes[0]
    labels = LabelSpace.of(cache.table, None)
    out = [(f"{cfg['backbone']}: pretrained", model_source(plan, root).build(labels, cfg["seed"]),
            "embedding", labels.values, root.key)]
    trained = [n for n in plan.nodes if n.kind == "train"]
    if trained:
        node = trained[-1]
        labels = LabelSpace.from_json((plan.home / "stages" / node.key / "labels.json").read_text())
        out.append((f"{cfg['backbone']}: {node.label}", model_source(plan, node).build(labels, cfg["seed"]),
                    cfg["cam"]["target"], labels.values, node.key))
    return out


def _backbone(cfg: dict, paths: list[str] | None, progress: bool) -> dict:
    """One backbone's part of `explain`: train its cascade's intermediate stages if missing, take
    the images (`paths`, or pick them), find their landmarks, and map them with each model."""
    from cascade.runtime import device as run_device
    from cascade.stages.execute import Runner

    plan = common.full_plan(cfg)
    runner = Runner(plan, progress=progress)
    for node in plan.nodes:
        if node.kind == "train":
            runner.run_train(node)
    cache = runner.cache(cfg["target"])
    frame = cache.table.frame
    paths = paths or pick_images(frame, cfg["cam"]["images"], cfg["seed"])
    index = {p: i for i, p in enumerate(frame["path"])}
    rows = np.array([index[p] for p in paths])
    images = np.asarray(cache.images[rows])
    size = images.shape[1]
    points, sources = landmarks(images, cfg["data"]["margin"], cfg["data"]["min_face_prob"])
    masks = [region_masks(p, size, size) for p in points]
    described = [{"backbone": cfg["backbone"], "image": Path(p).name, "age": int(frame["age_lo"].iloc[r]),
                  "landmarks": s} for p, r, s in zip(paths, rows, sources)]
    uniform = np.ones((size, size))
    per_image = [{**d, "model": "uniform map (area share)", "stage key": "–", "target": "–",
                  **region_shares(uniform, mk), "spread": spread(uniform)} for d, mk in zip(described, masks)]
    grid, keys = {}, []
    for label, model, target, values, key in _models(plan, cache):
        device = run_device(cfg)
        model.to(device)
        maps, _ = gradcam(model, model.preprocessing.apply(torch.from_numpy(images).to(device)), target, values)
        grid[label] = (images, maps)
        keys.append(key)
        per_image += [{**d, "model": label, "stage key": key, "target": target, **region_shares(m, mk),
                       "spread": spread(m)} for d, m, mk in zip(described, maps, masks)]
    return {"plan": plan, "paths": paths, "grid": grid, "keys": keys, "rows": per_image,
            "ages": [d["age"] for d in described], "size": size}


def explain(cfg: dict, settings: list[str], progress: bool = True) -> tuple[str, Path]:
    """Grad-CAM of the same target-dataset images for every backbone in `cam.backbones`: its
    face-recognition (root) model and its fine-tuned stage, side by side (thesis Figure 14), with
    the share of map mass per facial region and the map's spread per model."""
    backbones = cfg["cam"]["backbones"] or [cfg["backbone"]]
    parts, paths = [], None
    for name in backbones:
        parts.append(_backbone({**copy.deepcopy(cfg), "backbone": name}, paths, progress))
        paths = parts[-1]["paths"]
    per_image = pd.DataFrame([row for part in parts for row in part["rows"]])
    cols = ["backbone", "model", "stage key", "target"]
    per_image = per_image[cols + ["image", "age", "landmarks", *REGIONS, "spread"]]
    summary = per_image.groupby(cols, sort=False).agg(
        images=("image", "size"),
        landmarks=("landmarks", lambda s: f"mtcnn {int((s == 'mtcnn').sum())} / template {int((s == 'template').sum())}"),
        **{r: (r, "mean") for r in REGIONS}, spread=("spread", "mean")).reset_index()
    shares = {r: f"{r} %" for r in REGIONS}                 # percentages: 2 decimals still tell 4.3 from 3.0
    per_image, summary = (t.assign(**{r: 100 * t[r] for r in REGIONS}).rename(columns=shares)
                          for t in (per_image, summary))
    synthetic = any(common.synthetic(part["plan"]) for part in parts)
    head = common.header(parts[0]["plan"], [])[:1] + [
        f"Backbone {name}: weights {part['plan'].nodes[0].info['weights']}; images {part['size']} px"
        for name, part in zip(backbones, parts)]
    folder = Path(cfg["run"]["results_dir"]) / common.run_id(
        "cam", {**cfg, "backbone": "-".join(backbones)}, [[k for part in parts for k in part["keys"]], paths,
                                                         cfg["cam"]])
    grid = {label: maps for part in parts for label, maps in part["grid"].items()}
    written = figures.cam_grid(grid, [f"age {a}" for a in parts[0]["ages"]], folder / "figures" / "cam_grid",
                               synthetic, title=f"Grad-CAM, {cfg['target']} images "
                                                f"(rows: face-recognition / fine-tuned)")
    notes = ["Targets: `embedding` = squared norm of the pooled descriptor (the face-recognition model "
             "has no trained classifier); `class` = log-probability of the predicted class; `expected` = "
             "the expected age Σ age·p. Region shares are the percentage of the map's mass per region (mean over the images; "
             "regions from the five MTCNN landmarks of each image, or the ArcFace template placed with "
             "data.margin where MTCNN finds no face: column `landmarks`); the `uniform map` rows are the "
             "regions' area shares, what a map without preference would give. Spread = activation-weighted "
             "standard distance from the map's centroid in image sides (uniform map 0.41).",
             "", "Figure: `figures/cam_grid.png` / `.pdf` (thesis Figure 14)."]
    md = common.write_outputs(folder, f"Class activation maps {folder.name}", head,
                              {"cam_summary": summary, "cam_images": per_image}, settings, list(written), notes,
                              cfg=cfg)
    return md, folder
