"""Kernel classification and trace reading (Lab 1a): real kernel names, real rules file."""

import gzip
import json
import subprocess
import sys

import pytest
from helpers import REPO

from hwlab.inventory import (
    CLASSES,
    class_shares,
    classify,
    classify_rows,
    kernel_rows,
    load_rules,
    load_trace,
    matmul_rows,
    own_name,
    parse_rules,
    step_profile,
    trace_source,
)

TRACES = REPO / "tests" / "fixtures" / "traces"

RULES = load_rules(REPO / "config" / "kernel_classes.yaml")

# Kernel names as torch.profiler / Nsight report them (see shared notes and the writeup).
CUDA_NAMES = {
    # cuBLAS GEMV on CUDA cores
    "void gemv2T_kernel_val<int, int, __nv_bfloat16, __nv_bfloat16, float, 128, 16, 4, 4, "
    "false, false, cublasGemvParamsEx<int, cublasGemvTensorStridedBatched<__nv_bfloat16 "
    "const>, cublasGemvTensorStridedBatched<__nv_bfloat16>, float> >(float, float)": "gemv",
    "void gemv2N_kernel<int, int, float, float, float, float, 128, 32, 4, 4, false, false>": "gemv",
    "void cublasLt::epilogue::impl::globalKernel<8, 32, float, float, gemvx::kernel>": "gemv",
    "void internal::gemvx::kernel<int, int, __nv_bfloat16, __nv_bfloat16, float, false, "
    "true, true, false, 7, false, cublasGemvParamsEx<int>>": "gemv",
    "void reduce_1Block_kernel<float, 128, 7, cublasGemvTensorStridedBatched<float>>": "gemv",
    # tensor-core GEMMs: Ampere/Ada, Hopper, Blackwell, cutlass (writeup's ..._wmma)
    "ampere_bf16_s16816gemm_bf16_128x128_ldg8_f2f_stages_32x5_tn": "tc_gemm",
    "cutlass_80_tensorop_bf16_s16816gemm_relu_bf16_64x64_64x4_tn_align8": "tc_gemm",
    "cutlass_80_wmma_tensorop_bf16_s161616gemm_bf16_16x16_128x1_tn_align8": "tc_gemm",
    "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1_"
    "execute_segment_k_off_kernel__5x_cublas": "tc_gemm",
    "nvjet_tst_128x64_64x6_1x1_v_bz_coopA_NNT": "tc_gemm",
    "nvjet_sm100_tst_64x32_64x16_2x1_2cta_v_bz_TNN": "tc_gemm",
    "void cutlass::Kernel2<cutlass_80_wmma_tensorop_bf16_s161616gemm_bf16_32x32_128x2_tn_"
    "align8>(cutlass_80_wmma_tensorop_bf16_s161616gemm_bf16_32x32_128x2_tn_align8::Params)": (
        "tc_gemm"
    ),
    "sm80_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize64x64x64_stage4_warpsize2x2x1_"
    "tensor16x8x16_execute_kernel__5x_cublas": "tc_gemm",
    # fp32 GEMMs on CUDA cores
    "ampere_sgemm_128x64_tn": "gemm",
    "sm80_xmma_gemm_f32f32_f32f32_f32_tn_n_tilesize128x128x8_stage3_warpsize2x2x1_ffma_"
    "aligna4_alignc4_execute_kernel__5x_cublas": "gemm",
    "void cutlass::Kernel2<cutlass_80_simt_sgemm_256x128_8x4_nt_align1>(T1::Params)": "gemm",
    # attention: FA2, split-KV decode, mem-efficient SDPA, FA3, Blackwell
    "void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128, 128, 64, 4, false, "
    "false, cutlass::bfloat16_t>, false, true, false, false, true, true, false>(Flash_fwd_"
    "params)": "attention",
    "void pytorch_flash::flash_fwd_splitkv_kernel<Flash_fwd_kernel_traits<128, 64, 128, 4>>": (
        "attention"
    ),
    "void pytorch_flash::flash_fwd_splitkv_combine_kernel<Flash_fwd_kernel_traits<128>>": (
        "attention"
    ),
    "fmha_cutlassF_bf16_aligned_64x64_rf_sm80(PyTorchMemEffAttention::AttentionKernel<"
    "cutlass::bfloat16_t, cutlass::arch::Sm80, true, 64, 64, 64, true, true>::Params)": (
        "attention"
    ),
    "void cutlass::device_kernel<flash::enable_sm90_or_later<flash::FlashAttnFwdSm90<"
    "cute::tuple<cute::C<128>>>>>": "attention",
    "fmhaSm100fKernel_QkvE4m3OBfloat16HQk128HV128": "attention",
    # elementwise / reduction / copies
    "void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctorOnSelf_add<"
    "c10::BFloat16>, std::array<char*, 2ul> >(int, at::native::CUDAFunctorOnSelf_add<"
    "c10::BFloat16>, std::array<char*, 2ul>)": "elementwise",
    "void at::native::unrolled_elementwise_kernel<at::native::silu_kernel>": "elementwise",
    "void at::native::elementwise_kernel<128, 2, at::native::gpu_kernel_impl_nocast<"
    "at::native::BinaryFunctor<float, float, float, at::native::binary_internal::MulFunctor<"
    "float> > >": "elementwise",
    "triton_poi_fused_add_mul_0": "elementwise",
    "void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, at::native::MeanOps<"
    "float, float, float, float>, unsigned int, float, 4> >": "reduction",
    "triton_red_fused_mean_pow_1": "reduction",
    "void at::native::(anonymous namespace)::cunn_SoftMaxForward<4, float, float, float>": (
        "reduction"
    ),
    "Memcpy DtoD (Device -> Device)": "memcpy",
    "Memset (Device)": "memcpy",
    "void at::native::(anonymous namespace)::CatArrayBatchedCopy<at::native::(anonymous "
    "namespace)::OpaqueType<2u>, unsigned int, 4, 64, 64>": "memcpy",
    "void at::native::unrolled_elementwise_kernel<at::native::direct_copy_kernel_cuda("
    "at::TensorIteratorBase&)::{lambda()#3}::operator()() const::{lambda()#7}>": "memcpy",
    "some_unknown_kernel": "other",
}


@pytest.mark.parametrize("name,cls", sorted(CUDA_NAMES.items()))
def test_cuda_kernel_names(name, cls):
    assert classify(name, None, RULES) == cls


def test_ncu_names_without_namespaces():
    """ncu drops C++ namespaces and arguments; the class must not depend on them."""
    assert classify("flash_fwd_kernel", None, RULES) == "attention"
    assert classify("gemvx::kernel", None, RULES) == "gemv"
    assert classify("vectorized_elementwise_kernel", None, RULES) == "elementwise"


@pytest.mark.parametrize(
    "op,rows,cls",
    [
        ("aten::mm", 1, "gemv"),
        ("aten::addmm", 1, "gemv"),
        ("aten::linear", 1, "gemv"),
        ("aten::mm", 16, "gemm"),
        ("aten::addmm", 4096, "gemm"),
        ("aten::mm", None, "gemm"),  # no record_shapes: cannot tell, counted as GEMM
        ("aten::mv", None, "gemv"),
        ("aten::_scaled_dot_product_flash_attention_for_cpu", None, "attention"),
        ("aten::scaled_dot_product_attention", None, "attention"),
        ("aten::silu", None, "elementwise"),
        ("aten::mul", None, "elementwise"),
        ("aten::mean", None, "reduction"),
        ("aten::argmax", None, "reduction"),
        ("aten::cat", None, "memcpy"),
        ("aten::copy_", None, "memcpy"),
        ("aten::view", None, "other"),
    ],
)
def test_cpu_ops(op, rows, cls):
    assert classify(op, rows, RULES) == cls


def test_first_matching_rule_wins_and_rows_restricts():
    rules = parse_rules(
        {
            "rules": [
                {"class": "gemv", "pattern": "^x$", "rows": 1},
                {"class": "gemm", "pattern": "^x$"},
                {"class": "attention", "pattern": "x"},
            ]
        }
    )
    assert classify("x", 1, rules) == "gemv"
    assert classify("x", 2, rules) == "gemm"
    assert classify("ax", None, rules) == "attention"
    assert classify("y", None, rules) == "other"


@pytest.mark.parametrize(
    "data,msg",
    [
        ({"rules": [{"class": "fast", "pattern": "x"}]}, "rules[0]: class 'fast' is not one of"),
        ({"rules": [{"class": "gemv", "pattern": "("}]}, "rules[0]: pattern '(' is not a regex"),
        ({"rules": [{"class": "gemv"}]}, "needs 'class' and 'pattern'"),
        ({"rules": [{"class": "gemv", "pattern": "x", "row": 1}]}, "unknown key(s) ['row']"),
        ({"rules": [{"class": "gemv", "pattern": "x", "rows": 0}]}, "rows must be a positive"),
        ({"classes": []}, "a list under 'rules'"),
    ],
)
def test_bad_rules_name_the_problem(data, msg):
    with pytest.raises(ValueError) as e:
        parse_rules(data, "my.yaml")
    assert msg in str(e.value) and "my.yaml" in str(e.value)


def test_matmul_rows_from_input_dims():
    assert matmul_rows("aten::mm", [[1, 384], [384, 1152]]) == 1
    assert matmul_rows("aten::addmm", [[1152], [4, 384], [384, 1152], [], []]) == 4
    assert matmul_rows("aten::linear", [[2, 1, 384], [1152, 384], [1152]]) == 2
    assert matmul_rows("aten::bmm", [[8, 1, 64], [8, 64, 80]]) == 1
    assert matmul_rows("aten::add", [[2, 384], [2, 384]]) is None
    assert matmul_rows("aten::mm", None) is None


def _x(cat, name, ts, dur, **args):
    return {
        "ph": "X",
        "cat": cat,
        "name": name,
        "pid": 1,
        "tid": 1,
        "ts": ts,
        "dur": dur,
        "args": args,
    }


def test_cpu_self_time_counts_each_microsecond_once():
    """linear (10 µs) holds t (1 µs) and addmm (7 µs): self times 2 + 1 + 7 = 10."""
    trace = {
        "traceEvents": [
            _x("user_annotation", "hwlab::decode_step", 0, 20),
            _x("cpu_op", "aten::linear", 1, 10, **{"Input Dims": [[1, 8], [4, 8], [4]]}),
            _x("cpu_op", "aten::t", 1.5, 1),
            _x("cpu_op", "aten::addmm", 3, 7, **{"Input Dims": [[4], [1, 8], [8, 4]]}),
            _x("cpu_op", "aten::add", 12, 3),
            _x("cpu_op", "aten::add", 30, 5),  # outside the annotation
        ]
    }
    rows = {(r["phase"], r["kernel"]): r for r in kernel_rows(trace)}
    assert rows[("decode", "aten::linear")]["time_us"] == pytest.approx(2)
    assert rows[("decode", "aten::t")]["time_us"] == pytest.approx(1)
    assert rows[("decode", "aten::addmm")]["time_us"] == pytest.approx(7)
    assert rows[("decode", "aten::addmm")]["rows"] == 1
    assert rows[("decode", "aten::add")]["calls"] == 1
    assert rows[("outside", "aten::add")]["time_us"] == pytest.approx(5)
    decode = [r for r in rows.values() if r["phase"] == "decode"]
    assert sum(r["time_us"] for r in decode) == pytest.approx(13)
    assert sum(r["share"] for r in decode) == pytest.approx(1)
    shares = class_shares(classify_rows(decode, RULES))
    by = {s["class"]: s["share"] for s in shares}
    assert set(by) == set(CLASSES)
    assert by["gemv"] == pytest.approx(9 / 13)  # linear + addmm with M = 1


def _launch_trace():
    gemv = "void gemv2T_kernel_val<float>"
    return {
        "traceEvents": [
            _x("user_annotation", "hwlab::prefill", 0, 100),
            _x("user_annotation", "hwlab::decode_step", 100, 50),
            _x("cpu_op", "aten::mm", 10, 5),
            _x("cuda_runtime", "cudaLaunchKernel", 12, 2, correlation=7),
            _x("cuda_runtime", "cudaLaunchKernel", 120, 2, correlation=8),
            _x(
                "kernel",
                "ampere_bf16_s16816gemm_bf16_128x128_ldg8_f2f_stages_32x5_tn",
                105,
                40,
                correlation=7,
            ),
            _x("kernel", gemv, 160, 10, correlation=8),
            _x("gpu_memcpy", "Memcpy DtoD (Device -> Device)", 171, 2, correlation=9),
            _x("gpu_user_annotation", "hwlab::decode_step", 150, 30),
        ]
    }


def test_cuda_kernels_take_the_phase_of_their_launch():
    """A kernel runs after its launch: the phase comes from the launch (correlation id)."""
    trace = _launch_trace()
    rows = classify_rows(kernel_rows(trace), RULES)
    got = {(r["phase"], r["class"]): r["time_us"] for r in rows}
    assert got == {("prefill", "tc_gemm"): 40, ("decode", "gemv"): 10, ("decode", "memcpy"): 2}
    assert all(r["rows"] is None for r in rows)  # cpu ops are not counted in a CUDA trace


def test_step_profile_counts_a_steps_kernels_its_span_and_device_duration():
    """The decode step launched one gemv (10 µs at 160..170): the memcpy without a launch
    is not placed in a CPU-side step; the device ran the step in the GPU-side annotation's
    30 µs, the profiler's wall time is the CPU-side annotation's 50 µs."""
    (step,) = step_profile(_launch_trace(), RULES)
    assert step["wall_us"] == 50 and step["busy_us"] == 10 and step["ops"] == 1
    assert step["by_class"]["gemv"] == 10 and step["span_us"] == 10
    assert step["device_us"] == 30
    (pre,) = step_profile(_launch_trace(), RULES, "prefill")
    assert pre["device_us"] is None  # no GPU-side prefill annotation to match
    assert pre["ops"] == 1 and pre["span_us"] == 40


def test_trace_without_annotations_is_one_phase(tmp_path):
    trace = {"traceEvents": [_x("cpu_op", "aten::mm", 0, 4), _x("cpu_op", "aten::add", 5, 1)]}
    p = tmp_path / "t.json.gz"
    p.write_bytes(gzip.compress(json.dumps(trace).encode()))
    rows = kernel_rows(load_trace(p))
    assert {r["phase"] for r in rows} == {"all"}


def test_not_a_trace_is_a_clear_error(tmp_path):
    p = tmp_path / "x.json"
    p.write_text('{"a": 1}')
    with pytest.raises(ValueError, match="no 'traceEvents' list"):
        load_trace(p)
    p.write_text("not json")
    with pytest.raises(ValueError, match="not a JSON chrome trace"):
        load_trace(p)


def test_cli_bad_file_names_the_file(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "hwlab.cli", "inventory", str(tmp_path / "missing.json")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert "missing.json" in proc.stderr and "Traceback" not in proc.stderr


# ---- own names: templates, parameters and return types do not decide the class -----------


@pytest.mark.parametrize(
    "name,own",
    [
        ("void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float>>(at::native::"
         "ReduceOp<float>)", "at::native::reduce_kernel"),
        ("void at::native::(anonymous namespace)::CatArrayBatchedCopy<float, unsigned int, 1>"
         "(float*, at::native::(anonymous namespace)::CatArrInputTensorMetadata<float>)",
         "at::native::CatArrayBatchedCopy"),
        ("std::enable_if<(((8)>(0)))&&vllm::_typeConvert<c10::BFloat16>::exists, void>::type "
         "vllm::fused_add_rms_norm_kernel<c10::BFloat16, 8>(c10::BFloat16*, long)",
         "vllm::fused_add_rms_norm_kernel"),
        ("ncclKernel_AllReduce_RING_LL_Sum_float(ncclWorkElem)",
         "ncclKernel_AllReduce_RING_LL_Sum_float"),
        ("Memcpy DtoD (Device -> Device)", "Memcpy DtoD (Device -> Device)"),
        ("aten::mm", "aten::mm"),
        ("gemvx::kernel", "gemvx::kernel"),
    ],
)  # fmt: skip
def test_own_name_strips_templates_parameters_and_return_type(name, own):
    assert own_name(name).own == own


def test_generic_launchers_are_unwrapped_to_their_kernel():
    kn = own_name(
        "void cutlass::device_kernel<flash::enable_sm90_or_later<flash::FlashAttnFwdSm90<"
        "cute::tuple<cute::C<128>>>>>(T1::Params)",
        RULES.unwrap,
    )
    assert kn.own == "flash::FlashAttnFwdSm90"
    kn = own_name(
        "void cutlass::Kernel2<cutlass_80_wmma_tensorop_bf16_s161616gemm>(T::P)", RULES.unwrap
    )
    assert kn.own == "cutlass_80_wmma_tensorop_bf16_s161616gemm"
    # a lower-case `kernel` is a name, not a launcher: gemvx::kernel<int, …> stays itself
    assert own_name("void internal::gemvx::kernel<int, int>(int)", RULES.unwrap).own == (
        "internal::gemvx::kernel"
    )


NEW_NAMES = {
    # collectives (were `reduction`: "reduce" matched)
    "ncclKernel_AllReduce_RING_LL_Sum_float(ncclWorkElem)": "comm",
    "ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevKernelArgsStorage<4096ul>)": "comm",
    "ncclDevKernel_ReduceScatter_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)": "comm",
    "ncclDevKernel_SendRecv(ncclDevKernelArgsStorage<4096ul>)": "comm",
    "void (anonymous namespace)::multimem_all_reduce_kernel<c10::BFloat16, 16>(c10::BFloat16*, "
    "unsigned long)": "comm",
    "void c10d::symmetric_memory::two_shot_all_reduce_kernel<float, 16, 8>(float*, long)": "comm",
    "void vllm::cross_device_reduce_1stage<__nv_bfloat16, 8>(vllm::RankData*, int)": "comm",
    # names in template / parameter lists must not decide
    "void fbgemm_gpu::permute_2D_data_kernel<false, int, int>(int, int const*)": "other",
    "void split_embedding_codegen_forward_unweighted_kernel<c10::Half>(at::"
    "GenericPackedTensorAccessor<c10::Half, 1ul, at::RestrictPtrTraits, long>)": "other",
    "void fft2d_r2c_32x32<float, false, 5u, true>(float2*, float const*, int, cudnn::"
    "reduced_divisor, bool, int2, int, int)": "other",
    # newer GEMMs
    "void cutlass::device_kernel<cutlass::gemm::kernel::GemmUniversal<cute::tuple<int, int, "
    "int, int>, cutlass::gemm::collective::CollectiveMma<cutlass::gemm::"
    "MainloopSm90TmaGmmaWarpSpecializedCooperative<4, cute::tuple<cute::C<1>>>, cute::tuple<"
    "cute::C<128>>, cutlass::bfloat16_t>, cutlass::epilogue::collective::DefaultEpilogue<"
    "float>>>(T1::Params)": "tc_gemm",
    "void cutlass::device_kernel<cutlass::gemm::kernel::GemmUniversal<cute::tuple<int, int, "
    "int, int>, cutlass::gemm::collective::CollectiveMma<cutlass::gemm::"
    "MainloopSm100TmaUmmaWarpSpecialized<3, 2, 2>, float>>>(T1::Params)": "tc_gemm",
    "bmm_Bfloat16_MxE2m1MxE4m3_Fp32_t128x16x256u2_s3_et128x16_m128x16x32_cga1x1x1_16dp256b_rM_"
    "TN_transOut_schedP2x1x2x3_biasM_bN_tmaOpt_clmp_dynBatch_sm100f": "tc_gemm",
    "void splitKreduce_kernel<32, 16, int, float, __nv_bfloat16, float, __nv_bfloat16, true, "
    "false, false>(cublasSplitKParams<float>, __nv_bfloat16 const*)": "gemm",
    "void cublasLt::splitKreduce_kernel<32, 16, int, float, float, float, float, true, true, "
    "false>(cublasLt::cublasSplitKParams<float>, float const*)": "gemm",
    "void gemmSN_TN_kernel_64addr<float, 128, 16, 2, 4, 8, 9, false, "
    "cublasGemvTensorStridedBatched<float const>>(cublasGemmSmallNParams<float>)": "gemm",
}


@pytest.mark.parametrize("name,cls", sorted(NEW_NAMES.items()))
def test_new_gpu_kernel_names(name, cls):
    assert classify(name, None, RULES) == cls


def test_template_condition_and_unwrap_in_rules():
    rules = parse_rules(
        {
            "unwrap": ["^wrap$"],
            "rules": [
                {"class": "tc_gemm", "pattern": "^G$", "template": "Sm90"},
                {"class": "gemm", "pattern": "^G$"},
            ],
        }
    )
    assert classify("wrap<G<MainloopSm90>>", None, rules) == "tc_gemm"
    assert classify("wrap<G<Mainloop>>", None, rules) == "gemm"
    with pytest.raises(ValueError, match=r"rules\[0\]: template '\(' is not a regex"):
        parse_rules({"rules": [{"class": "gemm", "pattern": "x", "template": "("}]}, "f.yaml")
    with pytest.raises(ValueError, match="unknown key"):
        parse_rules({"rules": [], "unwarp": []}, "f.yaml")


def test_capitalised_categories_of_older_kineto_are_read():
    trace = load_trace(TRACES / "kineto2021_gpu_metrics.json.gz")
    assert {e["cat"] for e in trace["traceEvents"]} == {"Kernel", "Memcpy"}
    assert trace_source(trace) == "cuda"
    rows = kernel_rows(trace)
    assert sum(r["calls"] for r in rows) == 32


# ---- class shares on real traces against my own reading of each kernel ---------------------


def _labels() -> dict[str, dict[str, str]]:
    import csv

    out: dict[str, dict[str, str]] = {}
    with open(TRACES / "labels.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            out.setdefault(r["trace"], {})[r["kernel"]] = r["class"]
    return out


LABELS = _labels()


def test_every_fixture_trace_is_labelled():
    on_disk = {p.name for p in TRACES.glob("*.json.gz")}
    assert on_disk == set(LABELS) and len(on_disk) == 5


@pytest.mark.parametrize("trace", sorted(LABELS))
def test_real_trace_kernel_classes_match_my_reading(trace):
    wrong = {
        n[:90]: (c, classify(n, None, RULES))
        for n, c in LABELS[trace].items()
        if classify(n, None, RULES) != c
    }
    assert not wrong, wrong


@pytest.mark.parametrize("trace", sorted(LABELS))
def test_real_trace_class_shares_match_my_reading(trace):
    """Shares computed independently (my label per kernel x the events' durations, summed
    here from the raw events) against the inventory's class shares."""
    data = json.loads(gzip.decompress((TRACES / trace).read_bytes()))
    mine: dict[str, float] = dict.fromkeys(CLASSES, 0.0)
    for e in data["traceEvents"]:
        mine[LABELS[trace][e["name"]]] += float(e["dur"])
    total = sum(mine.values())
    rows = classify_rows(kernel_rows(load_trace(TRACES / trace)), RULES)
    got = {s["class"]: s["share"] for s in class_shares(rows) if s["phase"] == "all"}
    for cls in CLASSES:
        assert got[cls] == pytest.approx(mine[cls] / total, abs=1e-9), cls


def test_real_trace_headline_shares():
    """The numbers a reader of these traces would quote."""

    def shares(trace):
        rows = classify_rows(kernel_rows(load_trace(TRACES / trace)), RULES)
        return {s["class"]: s["share"] for s in class_shares(rows)}

    b200 = shares("b200_eager_tracelens.json.gz")
    assert b200["comm"] == pytest.approx(0.1836, abs=5e-4)  # multimem all-reduce + all-gather
    assert b200["tc_gemm"] == pytest.approx(0.5142, abs=5e-4)  # bmm_…_sm100f + nvjet
    a100 = shares("a100_sampled_rank0_hta.json.gz")
    assert a100["comm"] == pytest.approx(0.724, abs=5e-4)  # NCCL SendRecv
    h100 = shares("h100_qwen1.5-0.5b_tracelens.json.gz")
    assert h100["attention"] == pytest.approx(0.0845, abs=5e-4)
