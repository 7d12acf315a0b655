"""`train.numerics=portable`: CPU training with the same bits whatever kernels this CPU offers.

Another CPU is simulated in a subprocess by capping what each library may use (AVX2 instead of
AVX-512 for ATen, MKL and oneDNN, OpenBLAS's Haswell kernel, glibc's string and math variants
without AVX-512): natively those caps move the weights (measured on this project's AMD EPYC:
benchmarks/numerics_cost.py); portably they must not.  The golden digest (heavy set) holds the
portable bits to one value on every machine that runs it.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest
import torch

from cascade import config as C
from cascade import runtime
from cascade.stages import plan as P
from conftest import FAST

OTHER_CPU = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2",
             "OPENBLAS_CORETYPE": "Haswell",
             "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F,-AVX512BW,-AVX512DQ,-AVX512VL"}

# A few steps of the demo backbone with a 101-class head: convolutions, batch norm, pooling,
# linear layers, softmax cross-entropy and Adam, forward and backward, on two threads.
TRAIN = """
import hashlib, sys, torch
from cascade import runtime
runtime.numerics(sys.argv[1])
from cascade.models.backbones import demo_cnn
torch.manual_seed(0); torch.set_num_threads(2)
net = torch.nn.Sequential(demo_cnn().body, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(96, 101))
g = torch.Generator().manual_seed(1)
x, y = torch.rand(64, 3, 40, 40, generator=g), torch.randint(0, 101, (64,), generator=g)
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
for i in range(0, 64, 16):
    opt.zero_grad(); torch.nn.functional.cross_entropy(net(x[i:i + 16]), y[i:i + 16]).backward(); opt.step()
print(torch.backends.cpu.get_cpu_capability(), hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in net.parameters())).hexdigest()[:16])
"""

#: The portable digest of TRAIN with torch 2.14.1 on x86-64 (made on an AMD EPYC, AVX-512).
GOLDEN_PORTABLE = "12067248107669e8"


def train(mode: str, env: dict | None = None) -> tuple[str, str]:
    out = subprocess.run([sys.executable, "-c", TRAIN, mode], env={**os.environ, **(env or {})},
                         capture_output=True, text=True, check=True)
    capability, digest = out.stdout.split()
    return capability, digest


def test_portable_training_has_the_same_bits_under_another_cpus_kernels():
    here, there = train("portable"), train("portable", OTHER_CPU)
    assert here == there
    assert here[0] == "DEFAULT"          # PyTorch's plain kernels, whatever the CPU offers


@pytest.mark.heavy
@pytest.mark.skipif(platform.machine() != "x86_64" or torch.__version__.split("+")[0] != "2.14.1",
                    reason="the golden digest is for torch 2.14.1 on x86-64")
def test_portable_training_has_its_golden_bits_on_this_machine():
    assert train("portable")[1] == GOLDEN_PORTABLE


def test_numerics_cannot_change_after_the_process_computed():
    """Setting the kernels after PyTorch or MKL chose theirs would silently mix the two: refused."""
    script = ("import torch; from cascade import runtime; torch.randn(8, 8) @ torch.randn(8, 8); "
              "torch.nn.functional.relu(torch.randn(8)); runtime.numerics('portable')")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR")})
    assert out.returncode != 0
    assert "train.numerics=portable must be set before this process computes anything" in out.stderr


def test_portable_numerics_are_keyed_only_when_set(home):
    native = P.build(C.load(FAST + [f"home={home}", "target=fgnet", "stage=imdb"]))
    portable = P.build(C.load(FAST + [f"home={home}", "target=fgnet", "stage=imdb", "train.numerics=portable"]))
    assert native.nodes[0].key == portable.nodes[0].key          # the pretrained root: nothing trained
    for a, b in zip(native.nodes[1:], portable.nodes[1:]):
        assert a.key != b.key and b.params["numerics"] == "portable" and "numerics" not in a.params


def test_portable_runs_compare_exactly_across_cpus():
    """Two portable runs on different CPUs computed alike; native ones did not (the CPU moved
    their numbers), and a record from before the setting existed counts as native."""
    a = {"cpu": "Intel Xeon", "cpu_kind": "GenuineIntel 6/85 [avx2,avx512f]", "torch": "2.14.1"}
    b = {"cpu": "AMD EPYC", "cpu_kind": "AuthenticAMD 25/17 [avx2,avx512f]", "torch": "2.14.1"}
    portable = {"numerics": "portable"}
    assert runtime.numeric_differences({**a, **portable}, {**b, **portable}) == []
    assert len(runtime.numeric_differences({**a, "numerics": "native"}, {**b, "numerics": "native"})) == 2
    assert "numerics native → portable" in runtime.numeric_differences(a, {**b, **portable})
