/*
 * nearbyAttention3DKernel.h — launchers of the fused 3DNA kernels. Raw pointers and a stream; no
 * TensorRT types (the TensorRT adapter is nearbyAttention3DPlugin.h).
 *
 * Layouts (all contiguous):
 *   q (B, nh, Nq, hd), k/v (B, nh, Nk, hd), out (B, nh, Nq, hd), all of one float type;
 *   qPositions int32 (B, Nq) raster positions of the queries in q_grid, or nullptr for 0..Nq-1.
 * Semantics: nearbyAttention3DCommon.h (DESIGN §4). A query without any valid key writes zeros.
 */
#pragma once

#include "nearbyAttention3DCommon.h"

#include <cstdint>

#if NUWA_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace nuwa
{

//! Element types of q/k/v/out.
enum class DataType : int32_t
{
    kFLOAT = 0,
    kHALF = 1,
    kBF16 = 2,
};

//! Which CUDA kernel runs a call.
enum class Algo : int32_t
{
    kAUTO = 0,    //!< decode kernel for Nq <= 4 with a supported head_dim, tiled kernel for FP16/BF16
                  //!< whole grids, generic kernel otherwise
    kGENERIC = 1, //!< one warp per query, any head_dim <= 256, every type
    kTILED = 2,   //!< tensor-core tiles (FP16/BF16, head_dim in {32, 64, 128})
    kDECODE = 3,  //!< one block per query, warps split the window (head_dim in {32, 64, 128})
};

//! Checks shapes and attributes; returns nullptr when valid, else a static message.
char const* nearbyAttention3DValidate(NearbyAttentionParams const& p);

//! CPU FP32 kernel. numThreads <= 0: one per hardware thread (capped by the work).
void nearbyAttention3DCpu(NearbyAttentionParams const& p, float const* q, float const* k, float const* v,
    int32_t const* qPositions, float* out, int32_t numThreads);

#if NUWA_WITH_CUDA
//! Whether algo can run this call (params already valid) on the device that holds `data` (an input's
//! device pointer; nullptr: the current device). The tiled kernel needs sm_80+; each device's
//! compute capability is read once and cached.
bool nearbyAttention3DCudaSupports(NearbyAttentionParams const& p, DataType type, Algo algo, void const* data = nullptr);

//! Launches the CUDA kernel on stream; returns the launch status (asynchronous errors come later).
cudaError_t nearbyAttention3DCuda(NearbyAttentionParams const& p, DataType type, void const* q, void const* k,
    void const* v, int32_t const* qPositions, void* out, cudaStream_t stream, Algo algo = Algo::kAUTO);
#endif

} // namespace nuwa
