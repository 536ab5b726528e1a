"""3DNA attention on the GPU: fused nuwa kernels vs FlexAttention (block mask) vs dense masked SDPA.

    python bench/attention.py [--repeats 20] [--no-write]

Needs a CUDA GPU, torch with CUDA, and libnuwa_plugins built with CUDA
(``cmake -S . -B build && cmake --build build``). Configurations (DESIGN §11):

- prefill: a 16x32x32 grid (16384 tokens), 16 heads x 64, FP16, video extents (3,3,3),
  non-causal (encoder) and causal (decoder prefill);
- decode: one query per row against a ring cache of (et+1)*H*W slots — the same grid with batch 1
  and 64, and demo-video (8 frames x 8x8, 8 heads x 32, batch 1).

Every method is checked against dense SDPA before it is timed. Times are medians of CUDA-event
measurements over ``--repeats`` runs of ``--inner`` back-to-back calls (decode: replayed from a CUDA
graph when capture works, so Python/ctypes launch overhead is excluded). The decode floor is the
bytes a call must move (q, the window's K/V rows, out) over the measured device-copy bandwidth.
The results table, with the GPU's name and the DESIGN §11 targets (fused >= 2x FlexAttention,
>= 5x dense SDPA on prefill; decode within 2x of the bandwidth floor), replaces what lies between
the ``<!-- BEGIN attention -->`` / ``<!-- END attention -->`` markers of bench/RESULTS.md.

``--self-check`` runs without a GPU: it checks the benchmark's own masks (FlexAttention mask_mods,
decode masks) against the oracle ``nearby_mask`` and the CPU kernel against dense SDPA on small
grids, so the GPU run starts from checked code.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.append(str(Path(__file__).resolve().parent))  # bench/'s modules, also when loaded by path
import results_file  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = results_file.RESULTS
NAME = "attention"  # the section's markers in bench/RESULTS.md
BEGIN, END = results_file.markers(NAME)
TITLE = "## 3DNA attention kernels (GPU)"

from nuwa.model.attention3d import (  # noqa: E402
    NearbyAttentionSpec,
    nearby_mask,
    ring_slot_positions,
)
from nuwa.plugins import library  # noqa: E402


@dataclass
class Row:
    name: str
    method: str
    ms: float | None
    note: str = ""


def timed(fn: Callable[[], object], repeats: int, inner: int, graph: bool = False) -> float:
    """Median milliseconds per call."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    run: Callable[[], object] = lambda: [fn() for _ in range(inner)]  # noqa: E731
    if graph:
        try:
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                run()
            torch.cuda.current_stream().wait_stream(s)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                run()
            run = g.replay
        except Exception as e:  # noqa: BLE001 — fall back to eager launches
            print(f"  (CUDA graph capture failed, timing eager launches: {e})")
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / inner)
    return statistics.median(times)


def copy_bandwidth() -> float:
    """Achieved device-memory bandwidth (bytes/s) of a 1 GiB device-to-device copy."""
    x = torch.empty(1 << 29, dtype=torch.float16, device="cuda")
    y = torch.empty_like(x)
    ms = timed(lambda: y.copy_(x), repeats=10, inner=5)
    return 2 * x.numel() * x.element_size() / (ms * 1e-3)


def make_mask_mod(spec: NearbyAttentionSpec) -> Callable:
    """FlexAttention mask_mod of a whole-grid self-attention spec (equal grids)."""
    t, h, w = spec.q_grid
    et, eh, ew = (e if e >= 0 else 1 << 30 for e in spec.extents)
    hw = h * w

    def mask_mod(b, hd, q_idx, kv_idx):
        qt, qh, qw = q_idx // hw, (q_idx // w) % h, q_idx % w
        kt, kh, kw = kv_idx // hw, (kv_idx // w) % h, kv_idx % w
        m = ((qt - kt).abs() <= et) & ((qh - kh).abs() <= eh) & ((qw - kw).abs() <= ew)
        if spec.causal:
            m = m & (kv_idx <= q_idx)
        return m

    return mask_mod


def flex_block_mask(spec: NearbyAttentionSpec, n: int):
    from torch.nn.attention.flex_attention import create_block_mask

    mask_mod = make_mask_mod(spec)
    return create_block_mask(mask_mod, B=None, H=None, Q_LEN=n, KV_LEN=n, device="cuda")


def decode_mask(spec: NearbyAttentionSpec, pos: torch.Tensor, slots: int) -> torch.Tensor:
    """(B, S) bool: which ring slots the query of each row (raster position ``pos[b]``) attends."""
    k_pos = ring_slot_positions(pos.long().cpu(), slots)
    mask = nearby_mask(
        spec.q_grid,
        spec.k_grid,
        spec.extents,
        True,
        pos.long().cpu().unsqueeze(-1),
        k_pos,
        time_unbounded=True,
    )
    return mask[:, 0, :]


def make_decode_mask_mod(slot_mask: torch.Tensor) -> Callable:
    """FlexAttention mask_mod of one decode step: row b's query attends slot kv_idx."""

    def mask_mod(b, hd, q_idx, kv_idx):
        return slot_mask[b, kv_idx]

    return mask_mod


def evaluate_mask_mod(mask_mod: Callable, batch: int, nq: int, nk: int) -> torch.Tensor:
    """(B, Nq, Nk) bool of a mask_mod, evaluated eagerly by broadcasting (what FlexAttention
    computes blockwise)."""
    b = torch.arange(batch).view(batch, 1, 1)
    q_idx = torch.arange(nq).view(1, nq, 1)
    kv_idx = torch.arange(nk).view(1, 1, nk)
    out = mask_mod(b, torch.zeros((), dtype=torch.long), q_idx, kv_idx)
    return out.expand(batch, nq, nk)


def decode_floor_bytes(b: int, nh: int, hd: int, valid_keys: int, elem: int = 2) -> int:
    """Bytes one decode call must move: read q, the valid K and V rows, write out."""
    return b * nh * (2 * hd * elem + 2 * valid_keys * hd * elem)


def bench_prefill(causal: bool, args: argparse.Namespace, rows: list[Row]) -> None:
    spec = NearbyAttentionSpec((16, 32, 32), (16, 32, 32), (3, 3, 3), causal=causal)
    b, nh, hd, n = 1, 16, 64, 16 * 32 * 32
    name = f"prefill 16x32x32 {'causal' if causal else 'full'}"
    print(f"\n{name}: B={b}, {nh} heads x {hd}, FP16")
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (
        torch.randn(b, nh, n, hd, device="cuda", dtype=torch.float16, generator=g) for _ in range(3)
    )
    attrs = spec.onnx_attributes(hd, nh)
    mask = nearby_mask(spec.q_grid, spec.k_grid, spec.extents, causal).cuda()
    pairs = int(mask.sum())
    flops = 4.0 * pairs * hd * nh * b
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attrs["scale"])

    ours = lambda: library.nearby_attention_torch(q, k, v, attrs)  # noqa: E731
    err = (ours().float() - ref.float()).abs().max().item()
    assert err < 1e-2, f"fused 3DNA differs from dense SDPA by {err}"
    methods: list[tuple[str, Callable[[], object], str]] = [
        ("fused 3DNA (nuwa)", ours, f"max err {err:.1e}")
    ]
    try:
        from torch.nn.attention.flex_attention import flex_attention

        block_mask = flex_block_mask(spec, n)
        flex = torch.compile(flex_attention)
        flex_fn = lambda: flex(q, k, v, block_mask=block_mask, scale=attrs["scale"])  # noqa: E731
        ferr = (flex_fn().float() - ref.float()).abs().max().item()
        assert ferr < 1e-2, f"FlexAttention differs from dense SDPA by {ferr}"
        methods.append(
            ("FlexAttention + block mask", flex_fn, f"sparsity {block_mask.sparsity():.1f}%")
        )
    except Exception as e:  # noqa: BLE001
        rows.append(
            Row(name, "FlexAttention + block mask", None, f"failed: {type(e).__name__}: {e}")
        )
    methods.append(
        (
            "dense SDPA + bool mask",
            lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attrs["scale"]),
            "",
        )
    )
    for method, fn, note in methods:
        ms = timed(fn, args.repeats, args.inner)
        tflops = flops / (ms * 1e-3) / 1e12
        rows.append(Row(name, method, ms, f"{tflops:.1f} useful TFLOP/s; {note}".rstrip("; ")))
        print(f"  {method:30s} {ms:9.3f} ms  {tflops:7.1f} useful TFLOP/s  {note}")


def bench_decode(
    grid: tuple[int, int, int],
    b: int,
    nh: int,
    hd: int,
    args: argparse.Namespace,
    rows: list[Row],
    bw: float,
) -> None:
    spec = NearbyAttentionSpec(grid, grid, (3, 3, 3), causal=True, ring_cache=True)
    s = spec.ring_capacity()
    name = f"decode {grid[0]}x{grid[1]}x{grid[2]} B={b} {nh}x{hd}"
    print(f"\n{name}: ring cache of {s} slots, FP16")
    g = torch.Generator(device="cuda").manual_seed(1)
    q = torch.randn(b, nh, 1, hd, device="cuda", dtype=torch.float16, generator=g)
    k, v = (
        torch.randn(b, nh, s, hd, device="cuda", dtype=torch.float16, generator=g) for _ in range(2)
    )
    n = grid[0] * grid[1] * grid[2]
    # a query in the middle of a late frame (past the trained T: the ring has wrapped)
    pos = torch.full(
        (b,), 2 * n + grid[1] * grid[2] // 2 + grid[2] // 2, dtype=torch.int32, device="cuda"
    )
    attrs = spec.onnx_attributes(hd, nh)
    slot_mask = decode_mask(spec, pos, s).cuda()  # (B, S)
    mask = slot_mask.view(b, 1, 1, s)
    valid = int(slot_mask[0].sum())
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attrs["scale"])
    pos2 = pos.view(b, 1)
    out = torch.empty_like(q)
    ours = lambda: library.nearby_attention_torch(q, k, v, attrs, pos2, out=out)  # noqa: E731
    ours()
    err = (out.float() - ref.float()).abs().max().item()
    assert err < 1e-2, f"fused 3DNA decode differs from dense SDPA by {err}"
    floor_bytes = decode_floor_bytes(b, nh, hd, valid)
    floor_us = floor_bytes / bw * 1e6
    methods: list[tuple[str, Callable[[], object], str]] = [
        ("fused 3DNA decode (nuwa)", ours, f"{valid} keys; max err {err:.1e}")
    ]
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        block_mask = create_block_mask(
            make_decode_mask_mod(slot_mask), B=b, H=None, Q_LEN=1, KV_LEN=s, device="cuda"
        )
        flex = torch.compile(flex_attention)
        flex_fn = lambda: flex(q, k, v, block_mask=block_mask, scale=attrs["scale"])  # noqa: E731
        ferr = (flex_fn().float() - ref.float()).abs().max().item()
        assert ferr < 1e-2, f"FlexAttention decode differs from dense SDPA by {ferr}"
        methods.append(("FlexAttention + block mask", flex_fn, f"max err {ferr:.1e}"))
    except Exception as e:  # noqa: BLE001
        rows.append(
            Row(name, "FlexAttention + block mask", None, f"failed: {type(e).__name__}: {e}")
        )
    methods.append(
        (
            "dense SDPA over the cache",
            lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attrs["scale"]),
            "",
        )
    )
    for method, fn, note in methods:
        ms = timed(fn, args.repeats, args.inner, graph=True)
        ratio = ms * 1e3 / floor_us
        rows.append(
            Row(
                name,
                method,
                ms,
                f"{ratio:.1f}x the {floor_us:.2f} us bandwidth floor; {note}".rstrip("; "),
            )
        )
        print(
            f"  {method:30s} {ms * 1e3:9.2f} us  ({ratio:.1f}x the {floor_us:.2f} us floor)  {note}"
        )


def verdicts(rows: list[Row]) -> list[str]:
    """The DESIGN §11 targets, checked on this run's rows."""
    out = []
    by = {(r.name, r.method): r.ms for r in rows}
    for name in dict.fromkeys(r.name for r in rows):
        fused = next((ms for (n, m), ms in by.items() if n == name and m.startswith("fused")), None)
        if fused is None:
            continue
        if name.startswith("prefill"):
            for method, target in (
                ("FlexAttention + block mask", 2.0),
                ("dense SDPA + bool mask", 5.0),
            ):
                other = by.get((name, method))
                if other is None:
                    out.append(f"- {name}: vs {method}: not measured")
                    continue
                speedup = other / fused
                ok = "met" if speedup >= target else "NOT met"
                out.append(
                    f"- {name}: {speedup:.2f}x faster than {method} (target {target}x: {ok})"
                )
        else:
            note = next(r.note for r in rows if r.name == name and r.method.startswith("fused"))
            ratio = float(note.split("x the", 1)[0])
            ok = "met" if ratio <= 2.0 else "NOT met"
            out.append(
                f"- {name}: fused decode at {ratio:.1f}x the bandwidth floor (target <= 2x: {ok})"
            )
    return out


def results_section(rows: list[Row], gpu: str, bw: float) -> str:
    lines = [
        TITLE,
        "",
        f"`python bench/attention.py` on **{gpu}** (torch {torch.__version__}, "
        f"{library.build_info()}); measured copy bandwidth {bw / 1e9:.0f} GB/s. "
        "Medians of CUDA-event timings; decode replayed from CUDA graphs. "
        "Ratios are relative to the fused kernel in the same run.",
        "",
        "| case | method | time | vs fused | notes |",
        "|---|---|---:|---:|---|",
    ]
    fused: dict[str, float] = {}
    for r in rows:
        if r.method.startswith("fused") and r.ms is not None:
            fused[r.name] = r.ms
    for r in rows:
        t = "n/a" if r.ms is None else (f"{r.ms:.3f} ms" if r.ms >= 0.1 else f"{r.ms * 1e3:.1f} us")
        ratio = "" if r.ms is None or r.name not in fused else f"{r.ms / fused[r.name]:.2f}x"
        lines.append(f"| {r.name} | {r.method} | {t} | {ratio} | {r.note} |")
    lines += ["", "Targets (DESIGN §11):", *verdicts(rows)]
    return "\n".join(lines) + "\n"


def replace_marked_section(text: str, body: str) -> str:
    """``text`` with what lies between the attention markers replaced by ``body`` (markers
    appended at the end when absent). Other sections are left untouched."""
    return results_file.replace_marked_section(text, body, NAME)


def write_results(rows: list[Row], gpu: str, bw: float) -> None:
    results_file.write_marked_section(results_section(rows, gpu, bw), NAME)
    print(f"\nwrote {RESULTS.relative_to(ROOT)} (between {BEGIN} and {END})")


def self_check() -> int:
    """CPU-only checks of the benchmark's masks and reference path (no GPU needed)."""
    for causal in (False, True):
        spec = NearbyAttentionSpec((4, 5, 6), (4, 5, 6), (1, 2, -1), causal=causal)
        n = 4 * 5 * 6
        got = evaluate_mask_mod(make_mask_mod(spec), 1, n, n)[0]
        want = nearby_mask(spec.q_grid, spec.k_grid, spec.extents, causal)
        if not torch.equal(got, want):
            print(f"self-check FAILED: prefill mask_mod (causal={causal}) != nearby_mask")
            return 1
    spec = NearbyAttentionSpec((3, 4, 4), (3, 4, 4), (1, 1, 1), causal=True, ring_cache=True)
    s = spec.ring_capacity()
    pos = torch.tensor([5, 37, 100], dtype=torch.int32)  # the last two past T: a wrapped ring
    slot_mask = decode_mask(spec, pos, s)
    got = evaluate_mask_mod(make_decode_mask_mod(slot_mask), 3, 1, s)[:, 0, :]
    if not torch.equal(got, slot_mask):
        print("self-check FAILED: decode mask_mod != decode mask")
        return 1
    g = torch.Generator().manual_seed(0)
    q = torch.randn(3, 2, 1, 8, generator=g)
    k, v = torch.randn(3, 2, s, 8, generator=g), torch.randn(3, 2, s, 8, generator=g)
    attrs = spec.onnx_attributes(8, 2)
    ref = F.scaled_dot_product_attention(
        q, k, v, attn_mask=slot_mask.view(3, 1, 1, s), scale=attrs["scale"]
    )
    ours = library.nearby_attention_torch(q, k, v, attrs, pos.view(3, 1))
    err = (ours - ref).abs().max().item()
    if err > 1e-5:
        print(f"self-check FAILED: CPU kernel decode differs from dense SDPA by {err}")
        return 1
    print(
        "self-check passed: FlexAttention mask_mods and decode masks == nearby_mask; "
        f"CPU kernel decode == dense SDPA (max err {err:.1e})"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--inner", type=int, default=10)
    ap.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    ap.add_argument(
        "--self-check",
        action="store_true",
        help="check the benchmark's masks and the CPU kernel against the oracle (no GPU needed)",
    )
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.inner < 1:
        ap.error("--repeats and --inner must be >= 1")
    if args.self_check:
        return self_check()
    if not torch.cuda.is_available():
        print("bench/attention.py needs a CUDA GPU (torch.cuda.is_available() is False)")
        return 2
    library.require_cuda()
    gpu = torch.cuda.get_device_name()
    print(f"GPU: {gpu}; {library.build_info()}")
    bw = copy_bandwidth()
    print(f"device copy bandwidth: {bw / 1e9:.0f} GB/s")
    rows: list[Row] = []
    with torch.inference_mode():
        bench_prefill(False, args, rows)
        bench_prefill(True, args, rows)
        bench_decode((16, 32, 32), 1, 16, 64, args, rows, bw)
        bench_decode((16, 32, 32), 64, 16, 64, args, rows, bw)
        bench_decode((8, 8, 8), 1, 8, 32, args, rows, bw)
    if not args.no_write:
        write_results(rows, gpu, bw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
