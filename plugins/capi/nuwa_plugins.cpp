/*
 * nuwa_plugins.cpp — the C API (include/nuwa_plugins.h) over the kernel launchers.
 *
 * Validates every argument at the boundary, converts status and messages, and catches every C++
 * exception: nothing throws across the C boundary.
 */
#include "nuwa_plugins.h"

#include "nearbyAttention3D/nearbyAttention3DKernel.h"

#include <exception>
#include <string>

#ifndef NUWA_BUILD_INFO
#define NUWA_BUILD_INFO "nuwa_plugins"
#endif

namespace
{

thread_local std::string gLastError;

nuwa_status_t fail(nuwa_status_t status, std::string message)
{
    gLastError = std::move(message);
    return status;
}

nuwa_status_t toParams(nuwa_3dna_params_t const* in, nuwa::NearbyAttentionParams& out)
{
    if (in == nullptr)
    {
        return fail(NUWA_STATUS_INVALID_ARGUMENT, "params is NULL");
    }
    for (int i = 0; i < 3; ++i)
    {
        out.qGrid[i] = in->q_grid[i];
        out.kGrid[i] = in->k_grid[i];
        out.extents[i] = in->extents[i];
    }
    out.causal = in->causal;
    out.ringCache = in->ring_cache;
    out.scale = in->scale;
    out.batch = in->batch;
    out.numHeads = in->num_heads;
    out.numQueries = in->num_queries;
    out.numKeys = in->num_keys;
    out.headDim = in->head_dim;
    if (char const* msg = nuwa::nearbyAttention3DValidate(out))
    {
        return fail(NUWA_STATUS_INVALID_ARGUMENT, std::string("3DNA: ") + msg);
    }
    return NUWA_STATUS_OK;
}

nuwa_status_t checkPointers(nuwa::NearbyAttentionParams const& p, void const* q, void const* k, void const* v,
    void const* out)
{
    int64_t const rowsQ = static_cast<int64_t>(p.batch) * p.numHeads * p.numQueries;
    int64_t const rowsK = static_cast<int64_t>(p.batch) * p.numHeads * p.numKeys;
    if (rowsQ > 0 && (q == nullptr || out == nullptr))
    {
        return fail(NUWA_STATUS_INVALID_ARGUMENT, "3DNA: q and out must not be NULL");
    }
    if (rowsQ > 0 && rowsK > 0 && (k == nullptr || v == nullptr))
    {
        return fail(NUWA_STATUS_INVALID_ARGUMENT, "3DNA: k and v must not be NULL");
    }
    return NUWA_STATUS_OK;
}

template <typename F>
nuwa_status_t guarded(F&& f) noexcept
{
    try
    {
        gLastError.clear();
        return f();
    }
    catch (std::exception const& e)
    {
        return fail(NUWA_STATUS_INTERNAL_ERROR, std::string("3DNA: unexpected error: ") + e.what());
    }
    catch (...)
    {
        return fail(NUWA_STATUS_INTERNAL_ERROR, "3DNA: unexpected error");
    }
}

nuwa_status_t checkDecode(nuwa_3dna_params_t const* params, int32_t const* queryPos)
{
    if (params != nullptr && params->num_queries != 1)
    {
        return fail(NUWA_STATUS_INVALID_ARGUMENT, "3DNA decode: num_queries must be 1");
    }
    if (queryPos == nullptr)
    {
        return fail(NUWA_STATUS_INVALID_ARGUMENT, "3DNA decode: query_pos must not be NULL");
    }
    return NUWA_STATUS_OK;
}

#if NUWA_WITH_CUDA
nuwa_status_t cudaFail(cudaError_t err)
{
    return fail(NUWA_STATUS_CUDA_ERROR, std::string("3DNA CUDA error: ") + cudaGetErrorName(err) + ": "
            + cudaGetErrorString(err));
}
#endif

} // namespace

extern "C" {

int32_t nuwa_3dna_api_version(void)
{
    return NUWA_3DNA_API_VERSION;
}

int32_t nuwa_3dna_cuda_compiled(void)
{
    return NUWA_WITH_CUDA ? 1 : 0;
}

int32_t nuwa_3dna_tensorrt_compiled(void)
{
    return NUWA_WITH_TENSORRT ? 1 : 0;
}

const char* nuwa_3dna_attribute_fields(void)
{
    static std::string const fields = []
    {
        std::string s;
        for (nuwa::AttributeField const& f : nuwa::kATTRIBUTE_FIELDS)
        {
            s += s.empty() ? "" : ",";
            s += f.name;
            s += f.type == nuwa::AttributeType::kINT32 ? ":int32:" : ":float32:";
            s += std::to_string(f.length);
        }
        return s;
    }();
    return fields.c_str();
}

const char* nuwa_3dna_build_info(void)
{
    return NUWA_BUILD_INFO;
}

#if !NUWA_WITH_TENSORRT
int32_t nuwa_3dna_register_tensorrt_plugin(void)
{
    return 0; // defined by nearbyAttention3DPlugin.cpp in TensorRT builds
}
#endif

int32_t nuwa_3dna_cuda_device_count(void)
{
#if NUWA_WITH_CUDA
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess)
    {
        cudaGetLastError(); // clear the sticky-free error so later calls start clean
        return 0;
    }
    return count;
#else
    return 0;
#endif
}

const char* nuwa_3dna_status_string(nuwa_status_t status)
{
    switch (status)
    {
    case NUWA_STATUS_OK: return "ok";
    case NUWA_STATUS_INVALID_ARGUMENT: return "invalid argument";
    case NUWA_STATUS_UNSUPPORTED: return "unsupported";
    case NUWA_STATUS_NOT_COMPILED: return "not compiled in this build";
    case NUWA_STATUS_CUDA_ERROR: return "CUDA error";
    case NUWA_STATUS_INTERNAL_ERROR: return "internal error";
    }
    return "unknown status";
}

const char* nuwa_3dna_last_error(void)
{
    return gLastError.c_str();
}

nuwa_status_t nuwa_3dna_validate(const nuwa_3dna_params_t* params)
{
    return guarded([&] {
        nuwa::NearbyAttentionParams p{};
        return toParams(params, p);
    });
}

nuwa_status_t nuwa_3dna_forward_cpu(const nuwa_3dna_params_t* params, const float* q, const float* k,
    const float* v, const int32_t* q_positions, float* out, int32_t num_threads)
{
    return guarded([&] {
        nuwa::NearbyAttentionParams p{};
        nuwa_status_t s = toParams(params, p);
        if (s == NUWA_STATUS_OK)
        {
            s = checkPointers(p, q, k, v, out);
        }
        if (s != NUWA_STATUS_OK)
        {
            return s;
        }
        nuwa::nearbyAttention3DCpu(p, q, k, v, q_positions, out, num_threads);
        return NUWA_STATUS_OK;
    });
}

nuwa_status_t nuwa_3dna_decode_cpu(const nuwa_3dna_params_t* params, const float* q, const float* k_cache,
    const float* v_cache, const int32_t* query_pos, float* out, int32_t num_threads)
{
    nuwa_status_t const s = guarded([&] { return checkDecode(params, query_pos); });
    return s != NUWA_STATUS_OK ? s : nuwa_3dna_forward_cpu(params, q, k_cache, v_cache, query_pos, out, num_threads);
}

int32_t nuwa_3dna_cuda_supports(const nuwa_3dna_params_t* params, nuwa_dtype_t dtype, nuwa_3dna_algo_t algo)
{
#if NUWA_WITH_CUDA
    nuwa::NearbyAttentionParams p{};
    if (toParams(params, p) != NUWA_STATUS_OK || dtype < NUWA_DTYPE_FLOAT32 || dtype > NUWA_DTYPE_BFLOAT16)
    {
        return 0;
    }
    return nuwa::nearbyAttention3DCudaSupports(p, static_cast<nuwa::DataType>(dtype), static_cast<nuwa::Algo>(algo))
        ? 1
        : 0;
#else
    (void) params;
    (void) dtype;
    (void) algo;
    return 0;
#endif
}

nuwa_status_t nuwa_3dna_forward_cuda(const nuwa_3dna_params_t* params, nuwa_dtype_t dtype, const void* q,
    const void* k, const void* v, const int32_t* q_positions, void* out, void* stream, nuwa_3dna_algo_t algo)
{
    return guarded([&] {
#if NUWA_WITH_CUDA
        nuwa::NearbyAttentionParams p{};
        nuwa_status_t s = toParams(params, p);
        if (s == NUWA_STATUS_OK)
        {
            s = checkPointers(p, q, k, v, out);
        }
        if (s != NUWA_STATUS_OK)
        {
            return s;
        }
        if (dtype < NUWA_DTYPE_FLOAT32 || dtype > NUWA_DTYPE_BFLOAT16)
        {
            return fail(NUWA_STATUS_INVALID_ARGUMENT, "3DNA: unknown dtype");
        }
        if (algo < NUWA_3DNA_ALGO_AUTO || algo > NUWA_3DNA_ALGO_DECODE)
        {
            return fail(NUWA_STATUS_INVALID_ARGUMENT, "3DNA: unknown algo");
        }
        auto const type = static_cast<nuwa::DataType>(dtype);
        auto const a = static_cast<nuwa::Algo>(algo);
        if (!nuwa::nearbyAttention3DCudaSupports(p, type, a, q))
        {
            return fail(NUWA_STATUS_UNSUPPORTED,
                "3DNA: this CUDA kernel does not support the call (dtype/head_dim); use NUWA_3DNA_ALGO_AUTO");
        }
        cudaError_t const err = nuwa::nearbyAttention3DCuda(
            p, type, q, k, v, q_positions, out, static_cast<cudaStream_t>(stream), a);
        return err == cudaSuccess ? NUWA_STATUS_OK : cudaFail(err);
#else
        (void) params;
        (void) dtype;
        (void) q;
        (void) k;
        (void) v;
        (void) q_positions;
        (void) out;
        (void) stream;
        (void) algo;
        return fail(NUWA_STATUS_NOT_COMPILED,
            "3DNA: libnuwa_plugins was built without CUDA; rebuild where nvcc is found: "
            "cmake -S . -B build && cmake --build build");
#endif
    });
}

nuwa_status_t nuwa_3dna_decode_cuda(const nuwa_3dna_params_t* params, nuwa_dtype_t dtype, const void* q,
    const void* k_cache, const void* v_cache, const int32_t* query_pos, void* out, void* stream,
    nuwa_3dna_algo_t algo)
{
    nuwa_status_t const s = guarded([&] { return checkDecode(params, query_pos); });
    return s != NUWA_STATUS_OK ? s : nuwa_3dna_forward_cuda(params, dtype, q, k_cache, v_cache, query_pos, out, stream, algo);
}

} // extern "C"
