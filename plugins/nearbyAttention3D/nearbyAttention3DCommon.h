/*
 * nearbyAttention3DCommon.h — the 3DNA window arithmetic shared by the CPU and CUDA kernels.
 *
 * 3D Nearby Attention exactly as DESIGN §4 / model/attention3d.py::nearby_mask:
 *   query raster position p in q_grid (Tq,Hq,Wq) -> (t,h,w) = (p/(Hq*Wq), (p/Wq)%Hq, p%Wq);
 *   centre (min(t*Tk/Tq, Tk-1), h*Hk/Hq, w*Wk/Wq) in k_grid (Tk,Hk,Wk);
 *   key raster position n -> (a,b,c) = (n/(Hk*Wk), (n/Wk)%Hk, n%Wk) attended iff
 *   |a-ct|<=et, |b-ch|<=eh, |c-cw|<=ew (radius -1 = whole axis), n <= p when causal,
 *   and the key exists: n < Nk (whole grid) or, with a ring cache of S slots, p-S < n (slot n%S).
 * Whole grids: the key time axis ends at the last frame holding a key (Nk), the query centre is
 * clipped to Tk-1 (queries past Tq keep using the last key frame).
 * Ring cache (decode self-attention, q_grid == k_grid): the time axis is unbounded — the centre is
 * the query's own frame t, and a whole time axis (et = -1) means the last Tk frames (et = Tk-1).
 *
 * Everything here is plain integer arithmetic, usable from host C++ and CUDA device code alike;
 * no TensorRT or CUDA types.
 */
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define NUWA_HD __host__ __device__ __forceinline__
#else
#define NUWA_HD inline
#endif

namespace nuwa
{

//! One 3DNA call besides its tensors (the ONNX attributes plus the shapes).
struct NearbyAttentionParams
{
    int32_t qGrid[3];   //!< (Tq, Hq, Wq)
    int32_t kGrid[3];   //!< (Tk, Hk, Wk)
    int32_t extents[3]; //!< (et, eh, ew) radii; -1 = whole axis
    int32_t causal;     //!< raster causality n <= p
    int32_t ringCache;  //!< k/v are a ring buffer of numKeys slots (decode self-attention)
    float scale;        //!< softmax scale (the exporter always writes one)
    int32_t batch;      //!< B
    int32_t numHeads;   //!< nh
    int32_t numQueries; //!< Nq
    int32_t numKeys;    //!< Nk (ring: slots S)
    int32_t headDim;    //!< hd
};

//! Type of one node attribute / TensorRT plugin field.
enum class AttributeType : int32_t
{
    kINT32 = 0,
    kFLOAT32 = 1,
};

//! One attribute of the ONNX node nuwa::NearbyAttention3D (= one field of the TensorRT plugin).
struct AttributeField
{
    char const* name;
    AttributeType type;
    int32_t length;
};

//! The node's attributes in order, exactly NearbyAttentionSpec.onnx_attributes() (model/): the
//! single source of the TensorRT creator's field names and of nuwa_3dna_attribute_fields().
inline constexpr AttributeField kATTRIBUTE_FIELDS[] = {
    {"q_grid", AttributeType::kINT32, 3},
    {"k_grid", AttributeType::kINT32, 3},
    {"extents", AttributeType::kINT32, 3},
    {"causal", AttributeType::kINT32, 1},
    {"ring_cache", AttributeType::kINT32, 1},
    {"scale", AttributeType::kFLOAT32, 1},
    {"num_heads", AttributeType::kINT32, 1},
};
inline constexpr int32_t kNB_ATTRIBUTE_FIELDS = 7;
static_assert(sizeof(kATTRIBUTE_FIELDS) / sizeof(kATTRIBUTE_FIELDS[0]) == kNB_ATTRIBUTE_FIELDS, "fields");

//! The box of key coordinates one query may attend, plus what is needed for the per-key checks.
struct QueryWindow
{
    int64_t p;      //!< query raster position
    int64_t t0, t1; //!< key frames [t0, t1] (inclusive; empty when t0 > t1)
    int32_t h0, h1; //!< key rows [h0, h1]
    int32_t w0, w1; //!< key columns [w0, w1]
};

NUWA_HD int64_t nuwaMin64(int64_t a, int64_t b) { return a < b ? a : b; }
NUWA_HD int64_t nuwaMax64(int64_t a, int64_t b) { return a > b ? a : b; }

//! The key box of the query at raster position p (p < 0: an empty window).
NUWA_HD QueryWindow queryWindow(NearbyAttentionParams const& P, int64_t p)
{
    QueryWindow W;
    W.p = p;
    int64_t const Hq = P.qGrid[1], Wq = P.qGrid[2];
    int64_t const Tk = P.kGrid[0], Hk = P.kGrid[1], Wk = P.kGrid[2];
    int64_t const HWk = Hk * Wk;
    if (p < 0)
    {
        W.t0 = 1; W.t1 = 0; W.h0 = 0; W.h1 = -1; W.w0 = 0; W.w1 = -1;
        return W;
    }
    int64_t const t = p / (Hq * Wq);
    int64_t const h = (p / Wq) % Hq;
    int64_t const w = p % Wq;
    // A ring cache slides with the query: its time axis has no last frame, the centre is the
    // query's own frame, and a whole time axis (-1) spans the last Tk frames.
    int64_t const ct = P.ringCache ? t : nuwaMin64(t * Tk / P.qGrid[0], Tk - 1);
    int64_t const ch = h * Hk / Hq;
    int64_t const cw = w * Wk / Wq;
    int32_t const et = (P.ringCache && P.extents[0] < 0) ? static_cast<int32_t>(Tk - 1) : P.extents[0];
    int32_t const eh = P.extents[1], ew = P.extents[2];
    W.h0 = eh < 0 ? 0 : static_cast<int32_t>(nuwaMax64(0, ch - eh));
    W.h1 = eh < 0 ? static_cast<int32_t>(Hk - 1) : static_cast<int32_t>(nuwaMin64(Hk - 1, ch + eh));
    W.w0 = ew < 0 ? 0 : static_cast<int32_t>(nuwaMax64(0, cw - ew));
    W.w1 = ew < 0 ? static_cast<int32_t>(Wk - 1) : static_cast<int32_t>(nuwaMin64(Wk - 1, cw + ew));
    W.t0 = et < 0 ? 0 : nuwaMax64(0, ct - et);
    W.t1 = et < 0 ? INT64_MAX : ct + et;
    if (P.causal)
    {
        W.t1 = nuwaMin64(W.t1, p / HWk);
    }
    if (P.ringCache)
    {
        int64_t const oldest = p - P.numKeys + 1; // oldest position the ring still holds
        if (oldest > 0)
        {
            W.t0 = nuwaMax64(W.t0, oldest / HWk);
        }
    }
    else
    {
        W.t1 = nuwaMin64(W.t1, (static_cast<int64_t>(P.numKeys) - 1) / HWk); // Nk == 0 -> empty
        if (P.numKeys <= 0)
        {
            W.t1 = W.t0 - 1;
        }
    }
    return W;
}

//! Checks beyond the box for key raster position n of window W (n inside the box).
NUWA_HD bool keyValid(NearbyAttentionParams const& P, QueryWindow const& W, int64_t n)
{
    if (n < 0 || (P.causal && n > W.p))
    {
        return false;
    }
    return P.ringCache ? (n > W.p - P.numKeys) : (n < P.numKeys);
}

//! Row of k/v that holds key raster position n (ring slot n % S, else n itself).
NUWA_HD int64_t keyRow(NearbyAttentionParams const& P, int64_t n)
{
    return P.ringCache ? n % P.numKeys : n;
}

//! Raster position of key (a, b, c).
NUWA_HD int64_t keyRaster(NearbyAttentionParams const& P, int64_t a, int64_t b, int64_t c)
{
    return (a * P.kGrid[1] + b) * P.kGrid[2] + c;
}

} // namespace nuwa
