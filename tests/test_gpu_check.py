"""bench/gpu_check.py cannot rot: its code paths (every decode path x dtype against a full forward, GRPO
and IB-TPO training steps in fp32 and bf16-mixed, the throughput comparison with ``model.generate``, step
times) run here on the CPU at a tiny size; on a GPU the same code runs at the 0.5B shape."""

import importlib.util
from pathlib import Path


def test_gpu_check_runs_on_the_cpu_at_a_tiny_size(capsys):
    path = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    speeds = gpu_check.main(["--device", "cpu", "--size", "tiny"])
    assert set(speeds) == {(p, d) for p in ("torch", "graph", "hf", "generate") for d in ("fp32", "bf16")}
    assert all(v > 0 for v in speeds.values())
    out = capsys.readouterr().out
    for line in ("decode torch bf16: same samples as hf True", "decode torch fp16: same samples as hf True",
                 "decode graph bf16: same samples as hf True",
                 "train ibtpo fp32: reward", "train grpo bf16-mixed: reward", "train ibtpo bf16-mixed: reward",
                 "step grpo bf16-mixed", "GRPO step bf16-mixed / fp32 = ", "IB-TPO step / GRPO step = "):
        assert line in out
    assert out.strip().splitlines()[-1].startswith("plain loop / model.generate, bf16 = ")
