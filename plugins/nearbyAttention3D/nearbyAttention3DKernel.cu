/*
 * nearbyAttention3DKernel.cu — fused CUDA kernels of 3D Nearby Attention (DESIGN §4).
 *
 * None of them materialises a neighbourhood or a mask: each query's key box and the per-key
 * conditions (grid rescaling, borders, raster causality, ring-cache slots) are computed from
 * indices (nearbyAttention3DCommon.h), softmax is online, accumulation is FP32.
 *
 *   generic  one warp per query, lanes split head_dim; every type, head_dim <= 256 (fallback, FP32).
 *   decode   one 256-thread block per query; lane groups take one candidate key each (16-byte
 *            vector loads, 4 candidates in flight per group), online softmax per group, merged
 *            across groups by shuffles and across warps through shared memory.
 *   tiled    tensor cores (mma.sync m16n8k16, FP16/BF16 in, FP32 accumulate): a block takes 64
 *            queries (a 3D tile of the query grid, or 64 consecutive positions), walks the union
 *            of their key boxes in chunks of 64 keys staged in shared memory (K row-major, V
 *            transposed), each warp (16 queries) skips chunks outside its own box and masks the
 *            rest per (query, key) from indices; flash-attention-style online softmax.
 *
 * Build: part of libnuwa_plugins (root CMakeLists.txt), e.g.
 *   nvcc -std=c++17 -arch=sm_90 -c nearbyAttention3DKernel.cu -DNUWA_WITH_CUDA=1
 */
#include "nearbyAttention3DKernel.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cfloat>
#include <cstdint>

namespace nuwa
{
namespace
{

constexpr float kLog2e = 1.4426950408889634F;

// ------------------------------------------------------------------------------------------------
// Type helpers
// ------------------------------------------------------------------------------------------------

__device__ __forceinline__ float toFloat(float x) { return x; }
__device__ __forceinline__ float toFloat(__half x) { return __half2float(x); }
__device__ __forceinline__ float toFloat(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T fromFloat(float x);
template <>
__device__ __forceinline__ float fromFloat<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half fromFloat<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 fromFloat<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

//! 16 bytes of T as floats.
template <typename T>
struct Vec16
{
    static constexpr int kN = 16 / static_cast<int>(sizeof(T));
    __device__ __forceinline__ static void toFloats(uint4 const& raw, float (&f)[kN])
    {
        T const* x = reinterpret_cast<T const*>(&raw);
#pragma unroll
        for (int e = 0; e < kN; ++e)
        {
            f[e] = toFloat(x[e]);
        }
    }
};

//! Two floats packed as a 32-bit pair of T (low half = first).
template <typename T>
__device__ __forceinline__ uint32_t packPair(float lo, float hi);
template <>
__device__ __forceinline__ uint32_t packPair<__half>(float lo, float hi)
{
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
}
template <>
__device__ __forceinline__ uint32_t packPair<__nv_bfloat16>(float lo, float hi)
{
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
}

//! Merge softmax partial (m2, l2) into (m, l); returns the factors applied to each accumulator.
__device__ __forceinline__ void mergeFactors(float& m, float& l, float m2, float l2, float& c1, float& c2)
{
    float const mNew = fmaxf(m, m2);
    if (mNew == -INFINITY)
    {
        c1 = 0.F;
        c2 = 0.F;
        return;
    }
    c1 = exp2f(m - mNew);
    c2 = exp2f(m2 - mNew);
    l = l * c1 + l2 * c2;
    m = mNew;
}

__device__ __forceinline__ int64_t queryPosition(
    NearbyAttentionParams const& P, int32_t const* qPositions, int64_t b, int64_t i)
{
    return qPositions != nullptr ? static_cast<int64_t>(qPositions[b * P.numQueries + i]) : i;
}

// ------------------------------------------------------------------------------------------------
// Generic kernel: one warp per query
// ------------------------------------------------------------------------------------------------

constexpr int kGenericMaxPerLane = 8; // head_dim <= 256
constexpr int kGenericWarps = 4;

template <typename T>
__global__ void __launch_bounds__(32 * kGenericWarps) genericKernel(NearbyAttentionParams P, T const* __restrict__ q,
    T const* __restrict__ k, T const* __restrict__ v, int32_t const* __restrict__ qPositions, T* __restrict__ out)
{
    int64_t const row = static_cast<int64_t>(blockIdx.x) * kGenericWarps + threadIdx.x / 32;
    int64_t const totalRows = static_cast<int64_t>(P.batch) * P.numHeads * P.numQueries;
    if (row >= totalRows)
    {
        return;
    }
    int const lane = threadIdx.x % 32;
    int const hd = P.headDim;
    int64_t const i = row % P.numQueries;
    int64_t const bh = row / P.numQueries;
    int64_t const b = bh / P.numHeads;
    QueryWindow const W = queryWindow(P, queryPosition(P, qPositions, b, i));
    T const* kHead = k + bh * P.numKeys * hd;
    T const* vHead = v + bh * P.numKeys * hd;

    float qr[kGenericMaxPerLane];
    float acc[kGenericMaxPerLane];
    float const qScale = P.scale * kLog2e;
#pragma unroll
    for (int j = 0; j < kGenericMaxPerLane; ++j)
    {
        int const d = lane + 32 * j;
        qr[j] = d < hd ? toFloat(q[row * hd + d]) * qScale : 0.F;
        acc[j] = 0.F;
    }
    float m = -INFINITY, l = 0.F;
    for (int64_t a = W.t0; a <= W.t1; ++a)
    {
        for (int64_t bb = W.h0; bb <= W.h1; ++bb)
        {
            for (int64_t c = W.w0; c <= W.w1; ++c)
            {
                int64_t const n = keyRaster(P, a, bb, c);
                if (!keyValid(P, W, n)) // warp-uniform
                {
                    continue;
                }
                int64_t const kr = keyRow(P, n) * hd;
                float s = 0.F;
#pragma unroll
                for (int j = 0; j < kGenericMaxPerLane; ++j)
                {
                    int const d = lane + 32 * j;
                    if (d < hd)
                    {
                        s += qr[j] * toFloat(kHead[kr + d]);
                    }
                }
#pragma unroll
                for (int off = 16; off > 0; off >>= 1)
                {
                    s += __shfl_xor_sync(0xffffffffU, s, off);
                }
                float const mNew = fmaxf(m, s);
                float const corr = exp2f(m - mNew);
                float const pr = exp2f(s - mNew);
                l = l * corr + pr;
                m = mNew;
#pragma unroll
                for (int j = 0; j < kGenericMaxPerLane; ++j)
                {
                    int const d = lane + 32 * j;
                    if (d < hd)
                    {
                        acc[j] = acc[j] * corr + pr * toFloat(vHead[kr + d]);
                    }
                }
            }
        }
    }
    float const inv = l > 0.F ? 1.F / l : 0.F;
#pragma unroll
    for (int j = 0; j < kGenericMaxPerLane; ++j)
    {
        int const d = lane + 32 * j;
        if (d < hd)
        {
            out[row * hd + d] = fromFloat<T>(acc[j] * inv);
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Decode kernel: one block per query, lane groups per candidate key
// ------------------------------------------------------------------------------------------------

constexpr int kDecodeThreads = 256;
constexpr int kDecodeUnroll = 4;

template <typename T, int HD>
__global__ void __launch_bounds__(kDecodeThreads) decodeKernel(NearbyAttentionParams P, T const* __restrict__ q,
    T const* __restrict__ k, T const* __restrict__ v, int32_t const* __restrict__ qPositions, T* __restrict__ out)
{
    constexpr int kVec = Vec16<T>::kN;  // elements per 16-byte load
    constexpr int kG = HD / kVec;       // lanes per candidate
    constexpr int kGroups = kDecodeThreads / kG;
    constexpr int kWarps = kDecodeThreads / 32;
    static_assert(kG >= 1 && kG <= 32 && (kG & (kG - 1)) == 0, "lanes per candidate must be a power of 2 <= 32");

    __shared__ float sM[kWarps];
    __shared__ float sL[kWarps];
    __shared__ float sAcc[kWarps][HD];

    int64_t const row = blockIdx.x; // (b * nh + head) * Nq + i
    int64_t const i = row % P.numQueries;
    int64_t const bh = row / P.numQueries;
    int64_t const b = bh / P.numHeads;
    int const tid = threadIdx.x;
    int const group = tid / kG;
    int const li = tid % kG;
    int const lane = tid % 32;
    int const warp = tid / 32;

    QueryWindow const W = queryWindow(P, queryPosition(P, qPositions, b, i));
    int64_t const nt = W.t1 >= W.t0 ? W.t1 - W.t0 + 1 : 0;
    int64_t const nhh = W.h1 - W.h0 + 1;
    int64_t const nw = W.w1 - W.w0 + 1;
    int64_t const M = nt * nhh * nw;

    T const* kHead = k + bh * P.numKeys * HD + li * kVec;
    T const* vHead = v + bh * P.numKeys * HD + li * kVec;
    float qf[kVec];
    Vec16<T>::toFloats(*reinterpret_cast<uint4 const*>(q + row * HD + li * kVec), qf);
    float const qScale = P.scale * kLog2e;
#pragma unroll
    for (int e = 0; e < kVec; ++e)
    {
        qf[e] *= qScale;
    }

    float m = -INFINITY, l = 0.F;
    float acc[kVec];
#pragma unroll
    for (int e = 0; e < kVec; ++e)
    {
        acc[e] = 0.F;
    }

    for (int64_t base = 0; base < M; base += static_cast<int64_t>(kGroups) * kDecodeUnroll) // block-uniform
    {
        uint4 kRaw[kDecodeUnroll], vRaw[kDecodeUnroll];
        bool valid[kDecodeUnroll];
#pragma unroll
        for (int u = 0; u < kDecodeUnroll; ++u)
        {
            int64_t const j = base + group + static_cast<int64_t>(u) * kGroups;
            valid[u] = false;
            if (j < M)
            {
                int64_t const c = W.w0 + j % nw;
                int64_t const bb = W.h0 + (j / nw) % nhh;
                int64_t const a = W.t0 + j / (nw * nhh);
                int64_t const n = keyRaster(P, a, bb, c);
                valid[u] = keyValid(P, W, n);
                if (valid[u])
                {
                    int64_t const kr = keyRow(P, n) * HD;
                    kRaw[u] = __ldg(reinterpret_cast<uint4 const*>(kHead + kr));
                    vRaw[u] = __ldg(reinterpret_cast<uint4 const*>(vHead + kr));
                }
            }
        }
        float s[kDecodeUnroll];
#pragma unroll
        for (int u = 0; u < kDecodeUnroll; ++u)
        {
            float part = 0.F;
            if (valid[u])
            {
                float kf[kVec];
                Vec16<T>::toFloats(kRaw[u], kf);
#pragma unroll
                for (int e = 0; e < kVec; ++e)
                {
                    part += qf[e] * kf[e];
                }
            }
#pragma unroll
            for (int off = kG / 2; off > 0; off >>= 1)
            {
                part += __shfl_xor_sync(0xffffffffU, part, off);
            }
            s[u] = valid[u] ? part : -INFINITY;
        }
        float mNew = m;
#pragma unroll
        for (int u = 0; u < kDecodeUnroll; ++u)
        {
            mNew = fmaxf(mNew, s[u]);
        }
        if (mNew == -INFINITY)
        {
            continue; // nothing valid for this group yet
        }
        float const corr = exp2f(m - mNew);
        l *= corr;
#pragma unroll
        for (int e = 0; e < kVec; ++e)
        {
            acc[e] *= corr;
        }
#pragma unroll
        for (int u = 0; u < kDecodeUnroll; ++u)
        {
            if (valid[u])
            {
                float const pr = exp2f(s[u] - mNew);
                l += pr;
                float vf[kVec];
                Vec16<T>::toFloats(vRaw[u], vf);
#pragma unroll
                for (int e = 0; e < kVec; ++e)
                {
                    acc[e] += pr * vf[e];
                }
            }
        }
        m = mNew;
    }

    // merge the groups of a warp (lanes li, li + kG, ... hold the same dims)
#pragma unroll
    for (int off = kG; off < 32; off <<= 1)
    {
        float const m2 = __shfl_xor_sync(0xffffffffU, m, off);
        float const l2 = __shfl_xor_sync(0xffffffffU, l, off);
        float c1, c2;
        mergeFactors(m, l, m2, l2, c1, c2);
#pragma unroll
        for (int e = 0; e < kVec; ++e)
        {
            float const a2 = __shfl_xor_sync(0xffffffffU, acc[e], off);
            acc[e] = acc[e] * c1 + a2 * c2;
        }
    }
    if (lane < kG)
    {
#pragma unroll
        for (int e = 0; e < kVec; ++e)
        {
            sAcc[warp][li * kVec + e] = acc[e];
        }
        if (lane == 0)
        {
            sM[warp] = m;
            sL[warp] = l;
        }
    }
    __syncthreads();
    // merge the warps: thread d writes output dim d
    for (int d = tid; d < HD; d += kDecodeThreads)
    {
        float mm = -INFINITY;
#pragma unroll
        for (int w = 0; w < kWarps; ++w)
        {
            mm = fmaxf(mm, sM[w]);
        }
        float ll = 0.F, o = 0.F;
        if (mm != -INFINITY)
        {
#pragma unroll
            for (int w = 0; w < kWarps; ++w)
            {
                float const c = exp2f(sM[w] - mm);
                ll += sL[w] * c;
                o += sAcc[w][d] * c;
            }
        }
        out[row * HD + d] = fromFloat<T>(ll > 0.F ? o / ll : 0.F);
    }
}

// ------------------------------------------------------------------------------------------------
// Tiled tensor-core kernel
// ------------------------------------------------------------------------------------------------

constexpr int kTileWarps = 4;
constexpr int kTileQueries = 16 * kTileWarps; // 64 queries per block
constexpr int kChunk = 64;                    // keys per shared-memory chunk
constexpr int kPad = 8;                       // halves of padding per smem row (bank spread)

//! Column of key kk in row `row` (= head_dim index) of the transposed V chunk sVt[HD][kChunk + kPad]:
//! kk XOR (row / 8) * (256 / HD), a bijection on 0..kChunk-1 within each row (the XOR value is
//! < 32 and even, so the two halves of a 32-bit pair stay adjacent: the mma B loads still read one
//! word).
//!
//! Why (32 banks of 4 bytes; a row is (64 + 8) / 2 = 36 words, 36 = 4 mod 32):
//! - Stores (the staging loop): lane l writes row 8j + e (j = l mod HD/8, e the unrolled 0..7) at
//!   column kk = kk0 + l / (HD/8), kk0 a multiple of 256/HD. Without the swizzle the bank is
//!   (8j + e) * 36 + kk / 2 = 4e + kk / 2 (mod 32) for every j: the HD/8 rows of a store pile onto
//!   the same 128/HD words' banks, an HD/8-way conflict (4-, 8-, 16-way for HD = 32, 64, 128).
//!   With it the word is (kk / 2) XOR j * (128/HD): each j moves its 128/HD words to its own aligned
//!   block, so a store touches 16 distinct banks (lanes sharing a word write its two halves).
//! - Loads (O += P V): lane (g, tig) reads the word (8 dt + g) * 36 + 8 jj + tig (+4) XOR dt * 128/HD;
//!   the XOR is the same for the whole warp and only permutes tig inside an aligned block of 4,
//!   so the banks 4 (g + const) + permuted tig stay 32 distinct, as before.
template <int HD>
__device__ __forceinline__ int vtColumn(int row, int kk)
{
    static_assert(HD == 32 || HD == 64 || HD == 128, "tiled head_dim");
    return kk ^ ((row >> 3) * (256 / HD));
}

//! How the blocks of the tiled kernel map onto queries.
struct TileShape
{
    int32_t bt, bh, bw;    //!< block tile in the query grid (product 64); bt = 0: consecutive positions
    int32_t nt, nh, nw;    //!< tiles per axis
};

template <typename T>
__device__ __forceinline__ void mma16816(float (&c)[4], uint32_t const (&a)[4], uint32_t b0, uint32_t b1);

template <>
__device__ __forceinline__ void mma16816<__half>(float (&c)[4], uint32_t const (&a)[4], uint32_t b0, uint32_t b1)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
    __trap();
#endif
}

template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(
    float (&c)[4], uint32_t const (&a)[4], uint32_t b0, uint32_t b1)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
    __trap();
#endif
}

//! Query slot qi (0..63) of block `tile` -> query index i (-1: none). Whole-grid positions are i.
__device__ __forceinline__ int64_t tileQuery(NearbyAttentionParams const& P, TileShape const& S, int64_t tile, int qi)
{
    if (S.bt == 0)
    {
        int64_t const i = tile * kTileQueries + qi;
        return i < P.numQueries ? i : -1;
    }
    int64_t const tw = tile % S.nw;
    int64_t const th = (tile / S.nw) % S.nh;
    int64_t const tt = tile / (static_cast<int64_t>(S.nw) * S.nh);
    int64_t const t = tt * S.bt + qi / (S.bh * S.bw);
    int64_t const h = th * S.bh + (qi / S.bw) % S.bh;
    int64_t const w = tw * S.bw + qi % S.bw;
    if (h >= P.qGrid[1] || w >= P.qGrid[2])
    {
        return -1;
    }
    int64_t const i = (t * P.qGrid[1] + h) * P.qGrid[2] + w;
    return i < P.numQueries ? i : -1;
}

__device__ __forceinline__ bool windowEmpty(QueryWindow const& W)
{
    return W.t0 > W.t1 || W.h0 > W.h1 || W.w0 > W.w1;
}

__device__ __forceinline__ bool inWindow(QueryWindow const& W, int32_t a, int32_t b, int32_t c)
{
    return a >= W.t0 && a <= W.t1 && b >= W.h0 && b <= W.h1 && c >= W.w0 && c <= W.w1;
}

template <typename T, int HD>
__global__ void __launch_bounds__(32 * kTileWarps) tiledKernel(NearbyAttentionParams P, TileShape S,
    T const* __restrict__ q, T const* __restrict__ k, T const* __restrict__ v, int32_t const* __restrict__ qPositions,
    T* __restrict__ out)
{
    constexpr int kKSteps = HD / 16;  // k-steps of Q·Kᵀ over head_dim
    constexpr int kDTiles = HD / 8;   // n-tiles of the output over head_dim
    constexpr int kNTiles = kChunk / 8;
    constexpr int kVec = 8;           // halves per 16-byte load
    static_assert(sizeof(T) == 2, "tiled kernel is FP16/BF16");

    __shared__ __align__(16) T sK[kChunk][HD + kPad];
    __shared__ __align__(16) T sVt[HD][kChunk + kPad];
    __shared__ int32_t sA[kChunk], sB[kChunk], sC[kChunk], sN[kChunk];
    __shared__ int32_t sBox[6]; // t0, -t1, h0, -h1, w0, -w1 (atomicMin on all)

    int const tid = threadIdx.x;
    int const warp = tid / 32;
    int const lane = tid % 32;
    int const g = lane >> 2;  // mma group (row)
    int const tig = lane & 3; // thread in group
    int64_t const tile = blockIdx.x;
    int64_t const head = blockIdx.y;
    int64_t const b = blockIdx.z;
    int64_t const bh = b * P.numHeads + head;

    if (tid < 6)
    {
        sBox[tid] = INT32_MAX;
    }

    // --- the two query rows of this thread (g and g + 8 of the warp's 16) -------------------
    int64_t qi[2];
    QueryWindow Wq[2];
    bool qOk[2];
#pragma unroll
    for (int r = 0; r < 2; ++r)
    {
        qi[r] = tileQuery(P, S, tile, warp * 16 + g + 8 * r);
        Wq[r] = queryWindow(P, qi[r] >= 0 ? queryPosition(P, qPositions, b, qi[r]) : -1);
        qOk[r] = qi[r] >= 0 && !windowEmpty(Wq[r]);
    }
    // warp box = union of its queries' boxes
    int32_t box[6] = {INT32_MAX, INT32_MAX, INT32_MAX, INT32_MAX, INT32_MAX, INT32_MAX};
#pragma unroll
    for (int r = 0; r < 2; ++r)
    {
        if (qOk[r])
        {
            int32_t const t1 = static_cast<int32_t>(nuwaMin64(Wq[r].t1, INT32_MAX - 1));
            box[0] = min(box[0], static_cast<int32_t>(Wq[r].t0));
            box[1] = min(box[1], -t1);
            box[2] = min(box[2], Wq[r].h0);
            box[3] = min(box[3], -Wq[r].h1);
            box[4] = min(box[4], Wq[r].w0);
            box[5] = min(box[5], -Wq[r].w1);
        }
    }
#pragma unroll
    for (int e = 0; e < 6; ++e)
    {
#pragma unroll
        for (int off = 16; off > 0; off >>= 1)
        {
            box[e] = min(box[e], __shfl_xor_sync(0xffffffffU, box[e], off));
        }
    }
    __syncthreads(); // sBox initialised
    if (lane == 0 && box[0] != INT32_MAX)
    {
#pragma unroll
        for (int e = 0; e < 6; ++e)
        {
            atomicMin(&sBox[e], box[e]);
        }
    }

    // --- Q fragments (A operand), straight from global memory --------------------------------
    uint32_t qa[kKSteps][4];
#pragma unroll
    for (int ks = 0; ks < kKSteps; ++ks)
    {
#pragma unroll
        for (int half = 0; half < 2; ++half) // columns ks*16 + tig*2 (+8)
        {
#pragma unroll
            for (int r = 0; r < 2; ++r)
            {
                uint32_t val = 0;
                if (qi[r] >= 0)
                {
                    T const* src = q + ((bh * P.numQueries + qi[r]) * HD + ks * 16 + half * 8 + tig * 2);
                    val = *reinterpret_cast<uint32_t const*>(src);
                }
                qa[ks][half * 2 + r] = val;
            }
        }
    }

    float o[kDTiles][4];
#pragma unroll
    for (int dt = 0; dt < kDTiles; ++dt)
    {
#pragma unroll
        for (int e = 0; e < 4; ++e)
        {
            o[dt][e] = 0.F;
        }
    }
    float mRow[2] = {-INFINITY, -INFINITY};
    float lRow[2] = {0.F, 0.F};
    float const sScale = P.scale * kLog2e;

    __syncthreads(); // sBox complete
    if (sBox[0] == INT32_MAX)
    {
        // no query of the block has any key: zeros
#pragma unroll
        for (int r = 0; r < 2; ++r)
        {
            if (qi[r] >= 0)
            {
                T* dst = out + (bh * P.numQueries + qi[r]) * HD;
#pragma unroll
                for (int dt = 0; dt < kDTiles; ++dt)
                {
                    *reinterpret_cast<uint32_t*>(dst + dt * 8 + tig * 2) = packPair<T>(0.F, 0.F);
                }
            }
        }
        return;
    }
    int32_t const bt0 = sBox[0], bh0 = sBox[2], bw0 = sBox[4];
    int64_t const bnt = static_cast<int64_t>(-sBox[1]) - bt0 + 1;
    int64_t const bnh = -sBox[3] - bh0 + 1;
    int64_t const bnw = -sBox[5] - bw0 + 1;
    int64_t const boxVolume = bnt * bnh * bnw;
    bool const warpActive = box[0] != INT32_MAX;

    T const* kHead = k + bh * P.numKeys * HD;
    T const* vHead = v + bh * P.numKeys * HD;

    for (int64_t chunk0 = 0; chunk0 < boxVolume; chunk0 += kChunk)
    {
        // --- stage the chunk: coordinates, K rows, V transposed --------------------------------
        if (tid < kChunk)
        {
            int64_t const f = chunk0 + tid;
            int32_t a = -1, bb = 0, c = 0, n = -1;
            if (f < boxVolume)
            {
                c = bw0 + static_cast<int32_t>(f % bnw);
                bb = bh0 + static_cast<int32_t>((f / bnw) % bnh);
                a = bt0 + static_cast<int32_t>(f / (bnw * bnh));
                int64_t const nn = keyRaster(P, a, bb, c);
                bool const exists = P.ringCache ? true : nn < P.numKeys;
                n = exists ? static_cast<int32_t>(nn) : -1;
                if (!exists)
                {
                    a = -1;
                }
            }
            sA[tid] = a;
            sB[tid] = bb;
            sC[tid] = c;
            sN[tid] = n;
        }
        __syncthreads();
        for (int idx = tid; idx < kChunk * (HD / kVec); idx += 32 * kTileWarps)
        {
            int const kk = idx / (HD / kVec);
            int const d0 = (idx % (HD / kVec)) * kVec;
            int32_t const n = sN[kk];
            uint4 kRaw = make_uint4(0, 0, 0, 0), vRaw = make_uint4(0, 0, 0, 0);
            if (n >= 0)
            {
                int64_t const kr = keyRow(P, n) * HD + d0;
                kRaw = __ldg(reinterpret_cast<uint4 const*>(kHead + kr));
                vRaw = __ldg(reinterpret_cast<uint4 const*>(vHead + kr));
            }
            *reinterpret_cast<uint4*>(&sK[kk][d0]) = kRaw;
            T const* vv = reinterpret_cast<T const*>(&vRaw);
#pragma unroll
            for (int e = 0; e < kVec; ++e)
            {
                sVt[d0 + e][vtColumn<HD>(d0 + e, kk)] = vv[e];
            }
        }
        __syncthreads();

        // --- does this warp need the chunk at all? ---------------------------------------------
        bool need = false;
        if (warpActive)
        {
#pragma unroll
            for (int h2 = 0; h2 < 2; ++h2)
            {
                int const kk = lane + 32 * h2;
                int32_t const a = sA[kk];
                need = need
                    || (a >= 0 && a >= box[0] && a <= -box[1] && sB[kk] >= box[2] && sB[kk] <= -box[3]
                        && sC[kk] >= box[4] && sC[kk] <= -box[5]);
            }
        }
        if (__any_sync(0xffffffffU, need))
        {
            // S = Q Kᵀ (16 x 64 per warp)
            float s[kNTiles][4];
#pragma unroll
            for (int nt = 0; nt < kNTiles; ++nt)
            {
                s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.F;
#pragma unroll
                for (int ks = 0; ks < kKSteps; ++ks)
                {
                    uint32_t const b0 = *reinterpret_cast<uint32_t const*>(&sK[nt * 8 + g][ks * 16 + tig * 2]);
                    uint32_t const b1 = *reinterpret_cast<uint32_t const*>(&sK[nt * 8 + g][ks * 16 + 8 + tig * 2]);
                    mma16816<T>(s[nt], qa[ks], b0, b1);
                }
            }
            // mask from indices, scale, row max
            float cmax[2] = {-INFINITY, -INFINITY};
#pragma unroll
            for (int nt = 0; nt < kNTiles; ++nt)
            {
#pragma unroll
                for (int e = 0; e < 4; ++e)
                {
                    int const r = e >> 1;
                    int const kk = nt * 8 + tig * 2 + (e & 1);
                    int32_t const a = sA[kk];
                    bool ok = qOk[r] && a >= 0 && inWindow(Wq[r], a, sB[kk], sC[kk]);
                    ok = ok && keyValid(P, Wq[r], sN[kk]);
                    float const val = ok ? s[nt][e] * sScale : -INFINITY;
                    s[nt][e] = val;
                    cmax[r] = fmaxf(cmax[r], val);
                }
            }
            float corr[2];
#pragma unroll
            for (int r = 0; r < 2; ++r)
            {
                cmax[r] = fmaxf(cmax[r], __shfl_xor_sync(0xffffffffU, cmax[r], 1));
                cmax[r] = fmaxf(cmax[r], __shfl_xor_sync(0xffffffffU, cmax[r], 2));
                float const mNew = fmaxf(mRow[r], cmax[r]);
                corr[r] = mNew == -INFINITY ? 1.F : exp2f(mRow[r] - mNew);
                mRow[r] = mNew;
                lRow[r] *= corr[r];
            }
            // P = exp2(S - m), row sums (per thread; reduced over the quad at the end)
#pragma unroll
            for (int nt = 0; nt < kNTiles; ++nt)
            {
#pragma unroll
                for (int e = 0; e < 4; ++e)
                {
                    int const r = e >> 1;
                    float const pr = mRow[r] == -INFINITY ? 0.F : exp2f(s[nt][e] - mRow[r]);
                    s[nt][e] = pr;
                    lRow[r] += pr;
                }
            }
#pragma unroll
            for (int dt = 0; dt < kDTiles; ++dt)
            {
                o[dt][0] *= corr[0];
                o[dt][1] *= corr[0];
                o[dt][2] *= corr[1];
                o[dt][3] *= corr[1];
            }
            // O += P V
#pragma unroll
            for (int j = 0; j < kChunk / 16; ++j)
            {
                uint32_t pa[4];
                pa[0] = packPair<T>(s[2 * j][0], s[2 * j][1]);
                pa[1] = packPair<T>(s[2 * j][2], s[2 * j][3]);
                pa[2] = packPair<T>(s[2 * j + 1][0], s[2 * j + 1][1]);
                pa[3] = packPair<T>(s[2 * j + 1][2], s[2 * j + 1][3]);
#pragma unroll
                for (int dt = 0; dt < kDTiles; ++dt)
                {
                    int const vr = dt * 8 + g;
                    uint32_t const b0
                        = *reinterpret_cast<uint32_t const*>(&sVt[vr][vtColumn<HD>(vr, j * 16 + tig * 2)]);
                    uint32_t const b1
                        = *reinterpret_cast<uint32_t const*>(&sVt[vr][vtColumn<HD>(vr, j * 16 + 8 + tig * 2)]);
                    mma16816<T>(o[dt], pa, b0, b1);
                }
            }
        }
        __syncthreads(); // chunk consumed
    }

    // --- normalise and store --------------------------------------------------------------------
#pragma unroll
    for (int r = 0; r < 2; ++r)
    {
        float l = lRow[r];
        l += __shfl_xor_sync(0xffffffffU, l, 1);
        l += __shfl_xor_sync(0xffffffffU, l, 2);
        float const inv = l > 0.F ? 1.F / l : 0.F;
        if (qi[r] >= 0)
        {
            T* dst = out + (bh * P.numQueries + qi[r]) * HD;
#pragma unroll
            for (int dt = 0; dt < kDTiles; ++dt)
            {
                *reinterpret_cast<uint32_t*>(dst + dt * 8 + tig * 2)
                    = packPair<T>(o[dt][2 * r] * inv, o[dt][2 * r + 1] * inv);
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Host side
// ------------------------------------------------------------------------------------------------

bool aligned(void const* p, size_t bytes)
{
    return (reinterpret_cast<uintptr_t>(p) % bytes) == 0;
}

bool decodeHeadDim(int32_t hd)
{
    return hd == 32 || hd == 64 || hd == 128;
}

//! The device that holds `data` (cudaPointerGetAttributes), else the current device; -1 if unknown.
int dataDevice(void const* data)
{
    if (data != nullptr)
    {
        cudaPointerAttributes attr{};
        if (cudaPointerGetAttributes(&attr, data) == cudaSuccess && attr.type != cudaMemoryTypeUnregistered
            && attr.type != cudaMemoryTypeHost && attr.device >= 0)
        {
            return attr.device;
        }
        cudaGetLastError();
    }
    int dev = -1;
    if (cudaGetDevice(&dev) != cudaSuccess)
    {
        cudaGetLastError();
        return -1;
    }
    return dev;
}

//! Compute-capability major of device `dev`, read once per device and cached (0 if unreadable;
//! a failed read is not cached).
int deviceMajor(int dev)
{
    constexpr int kMaxDevices = 64;
    static std::atomic<int> sMajorPlusOne[kMaxDevices]{}; // 0: not read yet
    if (dev < 0)
    {
        return 0;
    }
    if (dev < kMaxDevices)
    {
        if (int const cached = sMajorPlusOne[dev].load(std::memory_order_relaxed))
        {
            return cached - 1;
        }
    }
    int major = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess)
    {
        cudaGetLastError();
        return 0;
    }
    if (dev < kMaxDevices)
    {
        sMajorPlusOne[dev].store(major + 1, std::memory_order_relaxed);
    }
    return major;
}

//! Keys per axis a span of `span` queries needs (axis scaled q -> k, radius e, -1 whole).
double axisKeys(int64_t span, int64_t qSize, int64_t kSize, int32_t e)
{
    if (e < 0)
    {
        return static_cast<double>(kSize);
    }
    double const keys = static_cast<double>(span) * kSize / qSize + 2.0 * e + 1.0;
    return keys < static_cast<double>(kSize) ? keys : static_cast<double>(kSize);
}

//! Picks the block tile of the tiled kernel: a 3D tile of 64 queries when positions are implicit,
//! else 64 consecutive queries. Cost model: key-box volume each warp walks, summed over blocks.
TileShape chooseTile(NearbyAttentionParams const& P, bool explicitPositions)
{
    int64_t const hw = static_cast<int64_t>(P.qGrid[1]) * P.qGrid[2];
    int64_t const nq = P.numQueries;
    TileShape linear{0, 0, 0, static_cast<int32_t>((nq + kTileQueries - 1) / kTileQueries), 1, 1};
    if (explicitPositions)
    {
        return linear;
    }
    int64_t const tq = (nq + hw - 1) / hw; // frames the queries cover
    int32_t const et = P.extents[0], eh = P.extents[1], ew = P.extents[2];
    int64_t const kT = P.ringCache ? static_cast<int64_t>(P.kGrid[0]) : P.kGrid[0];
    auto cost = [&](int32_t bt, int32_t bhh, int32_t bww, int32_t wt, int32_t wh, int32_t ww) {
        double const tiles = static_cast<double>((tq + bt - 1) / bt) * ((P.qGrid[1] + bhh - 1) / bhh)
            * ((P.qGrid[2] + bww - 1) / bww);
        double const perWarp = axisKeys(wt, P.qGrid[0], kT, et) * axisKeys(wh, P.qGrid[1], P.kGrid[1], eh)
            * axisKeys(ww, P.qGrid[2], P.kGrid[2], ew);
        return tiles * kTileWarps * perWarp;
    };
    // linear: a warp covers 16 consecutive raster positions
    int64_t const rowsPerWarp = (16 + P.qGrid[2] - 1) / P.qGrid[2];
    double best = static_cast<double>(linear.bt == 0 ? linear.nt : 1) * kTileWarps
        * axisKeys(1, P.qGrid[0], kT, et) * axisKeys(rowsPerWarp + 1, P.qGrid[1], P.kGrid[1], eh)
        * axisKeys(P.qGrid[2] < 16 ? P.qGrid[2] : 16, P.qGrid[2], P.kGrid[2], ew);
    TileShape bestShape = linear;
    // (bt, bh, bw) and the warp tile it implies (16 consecutive slots of the block tile raster)
    static constexpr int32_t kShapes[][6] = {
        {4, 4, 4, 1, 4, 4}, {2, 4, 8, 1, 2, 8}, {1, 8, 8, 1, 2, 8}, {4, 2, 8, 1, 2, 8},
        {1, 4, 16, 1, 1, 16}, {4, 1, 16, 1, 1, 16}, {2, 2, 16, 1, 1, 16},
    };
    for (auto const& s : kShapes)
    {
        if ((s[1] > 1 && P.qGrid[1] < 2) || (s[2] > 4 && P.qGrid[2] < 4))
        {
            continue;
        }
        double const c = cost(s[0], s[1], s[2], s[3], s[4], s[5]);
        if (c < best)
        {
            best = c;
            bestShape = TileShape{s[0], s[1], s[2], static_cast<int32_t>((tq + s[0] - 1) / s[0]),
                (P.qGrid[1] + s[1] - 1) / s[1], (P.qGrid[2] + s[2] - 1) / s[2]};
        }
    }
    return bestShape;
}

template <typename T>
cudaError_t launchGeneric(NearbyAttentionParams const& P, void const* q, void const* k, void const* v,
    int32_t const* pos, void* out, cudaStream_t stream)
{
    int64_t const rows = static_cast<int64_t>(P.batch) * P.numHeads * P.numQueries;
    int64_t const blocks = (rows + kGenericWarps - 1) / kGenericWarps;
    genericKernel<T><<<static_cast<unsigned>(blocks), 32 * kGenericWarps, 0, stream>>>(P, static_cast<T const*>(q),
        static_cast<T const*>(k), static_cast<T const*>(v), pos, static_cast<T*>(out));
    return cudaGetLastError();
}

template <typename T, int HD>
cudaError_t launchDecodeHd(NearbyAttentionParams const& P, void const* q, void const* k, void const* v,
    int32_t const* pos, void* out, cudaStream_t stream)
{
    int64_t const rows = static_cast<int64_t>(P.batch) * P.numHeads * P.numQueries;
    decodeKernel<T, HD><<<static_cast<unsigned>(rows), kDecodeThreads, 0, stream>>>(P, static_cast<T const*>(q),
        static_cast<T const*>(k), static_cast<T const*>(v), pos, static_cast<T*>(out));
    return cudaGetLastError();
}

template <typename T>
cudaError_t launchDecode(NearbyAttentionParams const& P, void const* q, void const* k, void const* v,
    int32_t const* pos, void* out, cudaStream_t stream)
{
    switch (P.headDim)
    {
    case 32: return launchDecodeHd<T, 32>(P, q, k, v, pos, out, stream);
    case 64: return launchDecodeHd<T, 64>(P, q, k, v, pos, out, stream);
    case 128: return launchDecodeHd<T, 128>(P, q, k, v, pos, out, stream);
    default: return cudaErrorInvalidValue;
    }
}

template <typename T, int HD>
cudaError_t launchTiledHd(NearbyAttentionParams const& P, void const* q, void const* k, void const* v,
    int32_t const* pos, void* out, cudaStream_t stream)
{
    TileShape const S = chooseTile(P, pos != nullptr);
    int64_t const tiles = static_cast<int64_t>(S.nt) * S.nh * S.nw;
    if (tiles > 0x7fffffff || P.numHeads > 65535 || P.batch > 65535)
    {
        return cudaErrorInvalidConfiguration;
    }
    dim3 const grid(static_cast<unsigned>(tiles), static_cast<unsigned>(P.numHeads), static_cast<unsigned>(P.batch));
    tiledKernel<T, HD><<<grid, 32 * kTileWarps, 0, stream>>>(P, S, static_cast<T const*>(q),
        static_cast<T const*>(k), static_cast<T const*>(v), pos, static_cast<T*>(out));
    return cudaGetLastError();
}

template <typename T>
cudaError_t launchTiled(NearbyAttentionParams const& P, void const* q, void const* k, void const* v,
    int32_t const* pos, void* out, cudaStream_t stream)
{
    switch (P.headDim)
    {
    case 32: return launchTiledHd<T, 32>(P, q, k, v, pos, out, stream);
    case 64: return launchTiledHd<T, 64>(P, q, k, v, pos, out, stream);
    case 128: return launchTiledHd<T, 128>(P, q, k, v, pos, out, stream);
    default: return cudaErrorInvalidValue;
    }
}

Algo resolve(NearbyAttentionParams const& P, DataType type, Algo algo, void const* data)
{
    if (algo != Algo::kAUTO)
    {
        return algo;
    }
    if (P.numQueries <= 4 && nearbyAttention3DCudaSupports(P, type, Algo::kDECODE, data))
    {
        return Algo::kDECODE;
    }
    if (nearbyAttention3DCudaSupports(P, type, Algo::kTILED, data))
    {
        return Algo::kTILED;
    }
    if (nearbyAttention3DCudaSupports(P, type, Algo::kDECODE, data))
    {
        return Algo::kDECODE;
    }
    return Algo::kGENERIC;
}

} // namespace

bool nearbyAttention3DCudaSupports(NearbyAttentionParams const& P, DataType type, Algo algo, void const* data)
{
    int64_t const rows = static_cast<int64_t>(P.batch) * P.numHeads * P.numQueries;
    switch (algo)
    {
    case Algo::kAUTO: return P.headDim <= 32 * kGenericMaxPerLane;
    case Algo::kGENERIC: return P.headDim <= 32 * kGenericMaxPerLane && rows / kGenericWarps < 0x7fffffff;
    case Algo::kDECODE: return decodeHeadDim(P.headDim) && rows <= 0x7fffffff;
    case Algo::kTILED:
        return type != DataType::kFLOAT && decodeHeadDim(P.headDim) && P.batch <= 65535 && P.numHeads <= 65535
            && P.numKeys < 0x7fffffff && deviceMajor(dataDevice(data)) >= 8; // mma.sync m16n8k16: sm_80+
    }
    return false;
}

cudaError_t nearbyAttention3DCuda(NearbyAttentionParams const& P, DataType type, void const* q, void const* k,
    void const* v, int32_t const* qPositions, void* out, cudaStream_t stream, Algo algo)
{
    int64_t const rows = static_cast<int64_t>(P.batch) * P.numHeads * P.numQueries;
    if (rows == 0)
    {
        return cudaSuccess;
    }
    Algo a = resolve(P, type, algo, q);
    bool const vecAligned = aligned(q, 16) && aligned(k, 16) && aligned(v, 16) && aligned(out, 16);
    if (a != Algo::kGENERIC && !vecAligned)
    {
        if (algo != Algo::kAUTO)
        {
            return cudaErrorMisalignedAddress;
        }
        a = Algo::kGENERIC;
    }
    switch (a)
    {
    case Algo::kDECODE:
        switch (type)
        {
        case DataType::kFLOAT: return launchDecode<float>(P, q, k, v, qPositions, out, stream);
        case DataType::kHALF: return launchDecode<__half>(P, q, k, v, qPositions, out, stream);
        case DataType::kBF16: return launchDecode<__nv_bfloat16>(P, q, k, v, qPositions, out, stream);
        }
        break;
    case Algo::kTILED:
        switch (type)
        {
        case DataType::kHALF: return launchTiled<__half>(P, q, k, v, qPositions, out, stream);
        case DataType::kBF16: return launchTiled<__nv_bfloat16>(P, q, k, v, qPositions, out, stream);
        default: return cudaErrorInvalidValue;
        }
    default:
        switch (type)
        {
        case DataType::kFLOAT: return launchGeneric<float>(P, q, k, v, qPositions, out, stream);
        case DataType::kHALF: return launchGeneric<__half>(P, q, k, v, qPositions, out, stream);
        case DataType::kBF16: return launchGeneric<__nv_bfloat16>(P, q, k, v, qPositions, out, stream);
        }
    }
    return cudaErrorInvalidValue;
}

} // namespace nuwa
