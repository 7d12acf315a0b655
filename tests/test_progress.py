"""Progress in a batch job's log: whole lines at an interval, never a flood of redraws; --quiet
silences every part of a command, the demo suite's generation included."""
from __future__ import annotations

import io

import pytest

from cascade import cli, progress


@pytest.fixture(autouse=True)
def _loud():
    progress.silence(False)
    yield
    progress.silence(False)


def test_a_log_gets_whole_lines_with_rate_and_time_left(monkeypatch):
    monkeypatch.setattr(progress, "LINE_SECONDS", 0)
    log = io.StringIO()                      # not a terminal
    b = progress.bar(total=5, desc="decode fgnet", unit="img", stream=log)
    for _ in range(5):
        b.update()
    b.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and "" not in lines
    assert all(line.startswith("decode fgnet: ") for line in lines)
    assert "5/5" in lines[-1] and "img/s" in lines[-1] and "<" in lines[-1]      # count, rate, time left


def test_a_long_loop_writes_a_first_and_a_last_line_within_the_interval(monkeypatch):
    monkeypatch.setattr(progress, "LINE_SECONDS", 3600)
    log = io.StringIO()
    for _ in progress.bar(range(10_000), desc="train", stream=log):
        pass
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and "0/10000" in lines[0] and "10000/10000" in lines[1]


def test_disabled_or_silenced_bars_write_nothing():
    log = io.StringIO()
    for _ in progress.bar(range(3), desc="x", stream=log, enabled=False):
        pass
    progress.silence()
    for _ in progress.bar(range(3), desc="y", stream=log):
        pass
    assert log.getvalue() == ""


def test_quiet_reaches_every_command_and_the_suite_generator(tmp_path, capfd):
    parser = cli._parser()
    commands = parser._subparsers._group_actions[0].choices
    for name, command in commands.items():
        if name != "data":
            assert any("--quiet" in a.option_strings for a in command._actions), name
    assert cli.main(["data", "synth", "--out", str(tmp_path / "suite"), "--scale", "0.01", "--quiet"]) == 0
    out, err = capfd.readouterr()
    assert "synthetic" not in err and "it/s" not in err and "img/s" not in err
