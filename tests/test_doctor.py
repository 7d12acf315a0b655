"""`cascade doctor`: passes on the demo set-up, names each problem of a broken one with its fix,
and writes nothing."""
from cascade.cli import main

from conftest import FAST, import_demo_weights, snapshot


def test_doctor_passes_on_the_demo_set_up(home, capsys):
    before = snapshot(home)
    assert main(["doctor", *FAST, f"home={home}"]) == 0
    out = capsys.readouterr().out
    for name in ("torch", "torchvision", "timm", "facenet-pytorch", "scikit-learn"):
        assert f"{name} " in out
    assert "CPU cores; CUDA devices:" in out and "pnet.pt, rnet.pt, onet.pt present" in out
    assert "imdb      demo suite: 210 images" in out and "fgnet     demo suite:" in out
    assert "weights       none: random initialisation" in out
    assert "cascade regress --setup-engine autosklearn" in out          # a note: the run does not need it
    assert "free under" in out and "no problems: the run can start" in out
    assert snapshot(home) == before


def test_doctor_names_each_problem_of_a_broken_set_up(tmp_path, home, capsys, monkeypatch):
    """A missing data root, a weight file whose sha256 no longer matches its sidecar, a missing
    auto-sklearn environment the regression needs and too little disk: each named with its fix,
    exit status 1, nothing written."""
    path = import_demo_weights(tmp_path, home)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    before = snapshot(home)
    monkeypatch.setattr("shutil.disk_usage", lambda p: type("Usage", (), {"free": 1000})())
    code = main(["doctor", *FAST, f"home={home}", "weights=mydemo", "data.root.fgnet=/nonexistent",
                 "regress.engine=autosklearn"])
    out = capsys.readouterr().out
    assert code == 1
    assert "4 problem(s); the run cannot start" in out
    assert "data.root.fgnet=/nonexistent: folder does not exist" in out
    assert f"{path}: its bytes do not match the sha256" in out and "--name mydemo --backbone demo" in out
    assert "auto-sklearn's environment" in out and "cascade regress --setup-engine autosklearn" in out
    assert "disk: 1 kB free under" in out and "home= ($CASCADE_HOME)" in out
    assert snapshot(home) == before
