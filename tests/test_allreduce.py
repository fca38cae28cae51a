"""Lab 3 pure parts: sizes, iteration caps, backend choice, skip reasons, the exact
correctness pattern and its verification (real torch tensors), rank combination, the
torchrun command, and nccl-tests' busbw for several world sizes."""

import itertools

import pytest
import torch

from hwlab import formulas as F
from hwlab.allreduce import (
    Pattern,
    combine_ranks,
    iterations,
    message_sizes,
    pattern_for,
    plan_points,
    rank_input,
    resolve_backend,
    skip_reason,
    torchrun_command,
    verify,
)

TORCH = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


# -- busbw (nccl-tests: busbw = algbw x 2(n-1)/n) ----------------------------------------
@pytest.mark.parametrize(
    "n, factor", [(2, 1.0), (3, 4 / 3), (4, 1.5), (8, 1.75), (16, 1.875), (64, 126 / 64)]
)
def test_busbw_factor_for_several_world_sizes(n, factor):
    assert F.allreduce_busbw_factor(n) == pytest.approx(factor)
    algbw = F.algbw_gbps(1e9, 0.5)  # 1 GB in 0.5 s
    assert algbw == pytest.approx(2.0)
    assert F.busbw_gbps(algbw, n) == pytest.approx(2.0 * factor)


def test_busbw_equals_algbw_for_two_ranks():
    assert F.busbw_gbps(3.7, 2) == 3.7


def test_busbw_factor_rejects_empty_world():
    with pytest.raises(ValueError, match="world_size"):
        F.allreduce_busbw_factor(0)


# -- plan ----------------------------------------------------------------------------------
def test_message_sizes_double_like_nccl_tests():
    assert message_sizes(8, 128) == [8, 16, 32, 64, 128]
    assert message_sizes(8, 100) == [8, 16, 32, 64]
    assert len(message_sizes(8, 256 * 1024**2)) == 26
    with pytest.raises(ValueError):
        message_sizes(16, 8)


def test_iterations_cap_large_sizes_only():
    mib = 1024**2
    assert iterations(8, 3, 10, 3, 512) == (3, 10)
    assert iterations(32 * mib, 3, 10, 3, 512) == (3, 10)
    assert iterations(64 * mib, 3, 10, 3, 512) == (2, 8)
    assert iterations(128 * mib, 3, 10, 3, 512) == (1, 4)
    assert iterations(256 * mib, 3, 10, 3, 512) == (1, 3)  # never below min_iters
    assert iterations(256 * mib, 3, 10, 3, 0) == (3, 10)  # 0 = no cap
    assert iterations(256 * mib, 0, 10, 3, 512) == (0, 3)


def test_plan_rejects_sizes_that_split_an_element():
    with pytest.raises(ValueError, match="multiple"):
        plan_points("fp32", 2, 64, 1, 3, 3, 0)
    assert [p["size_bytes"] for p in plan_points("bf16", 2, 8, 1, 3, 3, 0)] == [2, 4, 8]


def test_backend_auto_follows_the_device():
    assert resolve_backend("auto", "cuda") == "nccl"
    assert resolve_backend("auto", "cpu") == "gloo"
    assert resolve_backend("gloo", "cuda") == "gloo"
    with pytest.raises(ValueError):
        resolve_backend("mpi", "cpu")


def test_skip_reasons():
    # nccl on a machine with fewer GPUs than ranks: skipped, as the writeup's Lab 3
    r = skip_reason("nccl", 2, 1, gpus_visible=0, nccl_available=False)
    assert "2 GPUs" in r and "torch sees 0" in r and "Lab 3" in r
    r = skip_reason("nccl", 8, 1, gpus_visible=1, nccl_available=True)
    assert "8 GPUs" in r and "torch sees 1" in r
    assert skip_reason("nccl", 8, 1, gpus_visible=8, nccl_available=True) is None
    assert "NCCL" in skip_reason("nccl", 2, 1, gpus_visible=2, nccl_available=False)
    # two nodes of 8: each node needs 8
    assert skip_reason("nccl", 16, 2, gpus_visible=8, nccl_available=True, in_slurm=True) is None
    assert "SLURM" in skip_reason("gloo", 4, 2, gpus_visible=0, nccl_available=False)
    assert skip_reason("gloo", 2, 1, gpus_visible=0, nccl_available=False) is None


# -- correctness pattern -----------------------------------------------------------------
@pytest.mark.parametrize(
    "n, dtype, expected",
    [
        (2, "bf16", Pattern(True, 7)),
        (8, "bf16", Pattern(True, 7)),
        (17, "bf16", Pattern(True, 7)),  # 153 + 6*17 = 255 <= 256
        (18, "bf16", Pattern(False, 7)),
        (36, "bf16", Pattern(False, 7)),  # 36 * 7 = 252
        (40, "bf16", Pattern(False, 1)),
        (256, "bf16", Pattern(False, 1)),
        (257, "bf16", None),
        (32, "fp16", Pattern(True, 7)),
        (64, "fp16", Pattern(False, 7)),  # 2080 + 6*64 > 2048
        (1024, "fp32", Pattern(True, 7)),
    ],
)
def test_pattern_choice_keeps_sums_exact(n, dtype, expected):
    assert pattern_for(n, dtype) == expected


@pytest.mark.parametrize("n, dtype", [(2, "fp32"), (8, "bf16"), (17, "bf16"), (30, "bf16"),
                                      (100, "bf16"), (64, "fp16")])  # fmt: skip
def test_pattern_sum_is_exact_in_any_order(n, dtype):
    """Reduce the real rank inputs in the dtype, in two orders: both equal the expectation."""
    p = pattern_for(n, dtype)
    numel = 7 * 5 + 3  # whole periods plus a remainder
    inputs = [rank_input(torch, p, r, numel, TORCH[dtype], "cpu") for r in range(n)]
    for order in (range(n), reversed(range(n))):
        acc = torch.zeros(numel, dtype=TORCH[dtype])
        for r in order:
            acc += inputs[r]
        assert verify(acc, p, n) == (True, 0)


P7 = Pattern(True, 7)


def _reduced(n, numel, dtype=torch.float32, pattern=P7):
    return sum(rank_input(torch, pattern, r, numel, dtype, "cpu") for r in range(n))


def test_verify_detects_a_corrupted_reduction():
    n, numel = 4, 1000
    good = _reduced(n, numel)
    assert verify(good, Pattern(True, 7), n) == (True, 0)

    one_wrong = good.clone()
    one_wrong[517] += 1
    assert verify(one_wrong, Pattern(True, 7), n) == (False, 1)

    tiny_error = good.clone()  # off by one ulp: still wrong, the check is exact
    tiny_error[3] = torch.nextafter(tiny_error[3], torch.tensor(1e9))
    assert verify(tiny_error, Pattern(True, 7), n)[0] is False

    missing_rank = _reduced(n - 1, numel)  # one rank's contribution lost
    ok, bad = verify(missing_rank, Pattern(True, 7), n)
    assert not ok and bad == numel

    doubled = good + rank_input(torch, Pattern(True, 7), 0, numel, torch.float32, "cpu")
    assert verify(doubled, Pattern(True, 7), n)[0] is False

    shifted = torch.roll(good, 1)  # a chunk landing one element off
    assert verify(shifted, Pattern(True, 7), n)[0] is False

    tail = good.clone()  # the remainder after the last whole period is checked too
    tail[-1] = 0
    assert verify(tail, Pattern(True, 7), n) == (False, 1)


def test_verify_works_in_bf16_and_for_huge_tensors_in_chunks():
    n = 8
    numel = 7 * (1 << 20) * 2 + 5  # more than one verification chunk
    good = _reduced(n, numel, torch.bfloat16)
    assert verify(good, Pattern(True, 7), n) == (True, 0)
    good[-3] = 0
    good[5] = 0
    assert verify(good, Pattern(True, 7), n) == (False, 2)


# -- combining ranks -----------------------------------------------------------------------
def _rank(times, correct=True, size=8):
    return [{"size_bytes": size, "status": "ok", "times_s": times, "correct": correct,
             "wrong_elements": 0 if correct else 3}]  # fmt: skip


def test_combine_takes_the_median_per_rank_then_the_max_over_ranks():
    rows = combine_ranks([_rank([1.0, 2.0, 9.0]), _rank([3.0, 4.0, 5.0])])
    (r,) = rows
    assert r["time_s"] == 4.0 and r["slowest_rank"] == 1
    assert (r["time_min_s"], r["time_max_s"]) == (3.0, 5.0)
    assert r["rank_median_s"] == [2.0, 4.0]
    assert r["correct"] is True


def test_combine_marks_a_size_wrong_if_any_rank_saw_a_wrong_result():
    (r,) = combine_ranks([_rank([1.0]), _rank([1.0], correct=False)])
    assert r["correct"] is False and r["wrong_elements"] == 3


# -- launch --------------------------------------------------------------------------------
def test_torchrun_command_one_node_is_standalone():
    cmd = torchrun_command("py", 2, 1, "spec.json")
    assert cmd[:3] == ["py", "-m", "torch.distributed.run"]
    assert "--standalone" in cmd and cmd[cmd.index("--nproc-per-node") + 1] == "2"
    assert cmd[-4:] == ["-m", "hwlab.allreduce", "--spec", "spec.json"]
    assert "srun" not in cmd


def test_torchrun_command_several_nodes_goes_through_srun_and_c10d():
    cmd = torchrun_command("py", 16, 2, "s.json", rdzv_endpoint="node1:29500", rdzv_id="j7")
    assert cmd[0] == "srun" and "--nodes=2" in cmd and "--ntasks-per-node=1" in cmd
    assert cmd[cmd.index("--nnodes") + 1] == "2"
    assert cmd[cmd.index("--nproc-per-node") + 1] == "8"
    assert cmd[cmd.index("--rdzv-endpoint") + 1] == "node1:29500"
    assert cmd[cmd.index("--rdzv-backend") + 1] == "c10d"
    assert "--standalone" not in cmd
    with pytest.raises(ValueError, match="rendezvous"):
        torchrun_command("py", 16, 2, "s.json")


def test_all_patterns_are_integers_in_range():
    for n, dtype in itertools.product([2, 3, 8, 16], ["fp32", "fp16", "bf16"]):
        p = pattern_for(n, dtype)
        assert all(v >= 1 for v in p.rank_row(n - 1))
        assert p.max_sum(n) == max(p.expected_row(n))
