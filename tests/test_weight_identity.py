"""Root weight identity: a function of the tensors, not of the file's bytes.

Why: safetensors writes `__metadata__` from a Rust hash map, in an order that changes from process
to process, so one checkpoint imported in two homes gave two files, two root keys, and every stage
after the root was trained again for byte-identical predictions.  Now `cascade weights import`
writes the same bytes every time, and `identity` hashes names, dtypes, shapes and tensor bytes.
"""
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from cascade import config as C
from cascade.models import importers as I
from cascade.models import weights as W
from cascade.models.backbones import build_backbone
from cascade.stages import plan as P

CLI = "import sys; from cascade.cli import main; sys.exit(main(sys.argv[1:]))"


def _source(tmp_path, fmt):
    """A checkpoint in `fmt`, with its backbone and the CLI's extra arguments."""
    torch.manual_seed(11)
    if fmt == "safetensors":
        path = tmp_path / "trained_demo.safetensors"
        sd = {k: v.contiguous() for k, v in build_backbone("demo").body.state_dict().items()}
        save_file(sd, path, metadata={"a": "1", "b": "2", "c": "3"})
        return path, "demo", ["--preprocessing", "imagenet"]
    path = tmp_path / "068.ckpt"
    torch.save({"epoch": 68, "net_state_dict": build_backbone("mobilefacenet").body.state_dict()}, path)
    return path, "mobilefacenet", []


def _import_in_process(src, fmt, backbone, extra, home, hashseed):
    """`cascade weights import` in a fresh Python process (its own hash seeds)."""
    env = dict(os.environ, CASCADE_HOME=str(home), PYTHONHASHSEED=str(hashseed))
    out = subprocess.run([sys.executable, "-c", CLI, "weights", "import", str(src), "--format", fmt,
                          "--name", "w", "--backbone", backbone, *extra],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return home / "weights" / "w.safetensors"


@pytest.fixture(scope="module", params=["safetensors", "mobilefacenet-ckpt"])
def two_imports(request, tmp_path_factory, suite_home):
    """One checkpoint imported by two processes into two homes (sharing the demo suite)."""
    fmt = request.param
    tmp = tmp_path_factory.mktemp(fmt)
    src, backbone, extra = _source(tmp, fmt)
    outs = []
    for seed, name in enumerate(("home_a", "home_b")):
        home = tmp / name
        home.mkdir()
        (home / "demo").symlink_to(suite_home / "demo")
        outs.append(_import_in_process(src, fmt, backbone, extra, home, seed + 1))
    return fmt, backbone, src, outs


def test_import_is_byte_identical_across_processes_and_homes(two_imports):
    fmt, backbone, src, (a, b) = two_imports
    assert a.parent != b.parent
    assert a.read_bytes() == b.read_bytes()
    assert a.with_suffix(".json").read_bytes() == b.with_suffix(".json").read_bytes()
    side = json.loads(a.with_suffix(".json").read_text())
    assert "imported_at" not in side
    # no __metadata__ at all (its hash-map order was the defect); the sidecar records it all
    n = int.from_bytes(a.read_bytes()[:8], "little")
    assert "__metadata__" not in json.loads(a.read_bytes()[8:8 + n])
    assert side["format"] == fmt and side["backbone"] == backbone
    assert W.identity(a) == W.identity(b)
    assert W.identity(a).startswith(W.IDENTITY_PREFIX) and not W.identity(a).startswith("sha256:")
    # the same source again in the same home: not redone (the sidecar's sha256 still matches)
    stamp = a.stat().st_mtime_ns
    pre = I.IMAGENET if fmt == "safetensors" else None
    assert I.import_weights(src, fmt, "w", backbone, a.parent.parent, preprocessing=pre) == a
    assert a.stat().st_mtime_ns == stamp


def test_root_key_same_for_two_imports(two_imports):
    fmt, backbone, _, outs = two_imports
    keys = []
    for out in outs:
        home = out.parent.parent
        cfg = C.load([f"home={home}", f"backbone={backbone}", f"weights={out}", "stage=",
                      "target=fgnet", "data.synth.scale=0.05"])
        plan = P.build(cfg)
        assert plan.weights_path == out
        assert plan.nodes[0].info["weights"] == W.identity(out)
        assert plan.nodes[0].info["weights"].startswith(W.IDENTITY_PREFIX)
        keys.append([n.key for n in plan.nodes])
    assert keys[0] == keys[1] and len(keys[0]) == 2          # root and target


def _tensors():
    g = torch.Generator().manual_seed(3)
    return {"conv.weight": torch.randn(4, 3, 3, 3, generator=g),
            "bn.running_mean": torch.randn(4, generator=g),
            "bn.num_batches_tracked": torch.tensor(7),                        # 0-d int64
            "proj.weight": torch.randn(2, 4, generator=g).to(torch.bfloat16)}  # numpy has no bf16


def _identity(path, tensors, **kw):
    save_file(tensors, path, **kw)
    W._tensor_identity.cache_clear()
    return W.identity(path)


def test_identity_is_of_the_tensors(tmp_path):
    t = _tensors()
    base = _identity(tmp_path / "base.safetensors", t)
    assert base.startswith("tensors-sha256:") and len(base) == len("tensors-sha256:") + 64
    assert not base.startswith("sha256:")              # keys made under the old rule never reused
    # other metadata, other insertion order: other bytes, same identity
    other = tmp_path / "other.safetensors"
    same = _identity(other, dict(reversed(list(t.items()))),
                     metadata={"format": "x", "backbone": "y", "source_sha256": "z"})
    assert other.read_bytes() != (tmp_path / "base.safetensors").read_bytes()
    assert same == base
    # one value, one dtype, one shape, one name: another identity each
    changed = {
        "value": {**t, "conv.weight": t["conv.weight"].clone().index_put_((torch.tensor([0]),) * 4,
                                                                          torch.tensor(9.0))},
        "dtype": {**t, "bn.running_mean": t["bn.running_mean"].double()},
        "bf16 value": {**t, "proj.weight": t["proj.weight"] * 2},
        "shape": {**t, "conv.weight": t["conv.weight"].reshape(4, 27)},
        "name": {**{k: v for k, v in t.items() if k != "bn.running_mean"}, "bn.running_var": t["bn.running_mean"]},
        "counter": {**t, "bn.num_batches_tracked": torch.tensor(8)},
        "dropped": {k: v for k, v in t.items() if k != "proj.weight"},
    }
    seen = {base}
    for what, tensors in changed.items():
        ident = _identity(tmp_path / f"{what}.safetensors", tensors)
        assert ident not in seen, what
        seen.add(ident)
    assert W.identity(None) == "none"


def test_identity_rewritten_file_not_stale(tmp_path):
    """The per-process memo follows the file: replaced (as atomic_write_bytes and a forced import
    do), the identity is recomputed."""
    path, tmp = tmp_path / "w.safetensors", tmp_path / "w.tmp"
    t = _tensors()
    save_file(t, path)
    first = W.identity(path)
    save_file({**t, "bn.running_mean": t["bn.running_mean"] + 1}, tmp)
    os.replace(tmp, path)
    assert W.identity(path) != first


def test_unreadable_file_same_error_as_load_body(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(ValueError, match="not a readable safetensors file") as ident_err:
        W.identity(bad)
    with pytest.raises(ValueError, match="not a readable safetensors file") as load_err:
        W.load_body(build_backbone("demo").body, bad)
    assert str(ident_err.value).split(" (")[0] == str(load_err.value).split(" (")[0]
    assert "cascade weights import" in str(ident_err.value)
