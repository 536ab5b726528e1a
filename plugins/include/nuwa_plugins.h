/*
 * nuwa_plugins.h — C API of libnuwa_plugins.so: the fused 3D Nearby Attention (3DNA) kernels.
 *
 * Plain C (usable from C, C++ and ctypes). Every function returns a status code and never lets a
 * C++ exception out; nuwa_3dna_last_error() gives the message of the calling thread's last failure.
 *
 * Semantics: DESIGN §4 / model/attention3d.py (nearby_mask). Tensors are contiguous:
 *   q (B, nh, Nq, hd), k/v (B, nh, Nk, hd), out (B, nh, Nq, hd);
 *   q_positions int32 (B, Nq) raster positions of the queries in q_grid, or NULL for 0..Nq-1.
 * With ring_cache = 1 (causal self-attention, q_grid == k_grid) k/v are ring buffers of Nk slots:
 * slot s holds raster position p - ((p - s) mod Nk) for the query at position p.
 */
#ifndef NUWA_PLUGINS_H
#define NUWA_PLUGINS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define NUWA_API __declspec(dllexport)
#else
#define NUWA_API __attribute__((visibility("default")))
#endif

#define NUWA_3DNA_API_VERSION 1

typedef enum nuwa_status
{
    NUWA_STATUS_OK = 0,
    NUWA_STATUS_INVALID_ARGUMENT = 1, /* bad shape, attribute or null pointer */
    NUWA_STATUS_UNSUPPORTED = 2,      /* valid call this build or kernel cannot run (dtype, head_dim) */
    NUWA_STATUS_NOT_COMPILED = 3,     /* the library was built without CUDA */
    NUWA_STATUS_CUDA_ERROR = 4,       /* a CUDA runtime error (no device, launch failure, ...) */
    NUWA_STATUS_INTERNAL_ERROR = 5    /* an unexpected C++ exception */
} nuwa_status_t;

typedef enum nuwa_dtype
{
    NUWA_DTYPE_FLOAT32 = 0,
    NUWA_DTYPE_FLOAT16 = 1,
    NUWA_DTYPE_BFLOAT16 = 2
} nuwa_dtype_t;

typedef enum nuwa_3dna_algo
{
    NUWA_3DNA_ALGO_AUTO = 0,    /* pick the fastest kernel that supports the call */
    NUWA_3DNA_ALGO_GENERIC = 1, /* one warp per query; every dtype, head_dim <= 256 */
    NUWA_3DNA_ALGO_TILED = 2,   /* tensor-core query tiles; FP16/BF16, head_dim 32/64/128 */
    NUWA_3DNA_ALGO_DECODE = 3   /* one block per query, warps split the window; head_dim 32/64/128 */
} nuwa_3dna_algo_t;

/* One call's attributes (the ONNX node's, see NearbyAttentionSpec.onnx_attributes) and shapes. */
typedef struct nuwa_3dna_params
{
    int32_t q_grid[3];   /* (Tq, Hq, Wq) */
    int32_t k_grid[3];   /* (Tk, Hk, Wk) */
    int32_t extents[3];  /* (et, eh, ew) radii; -1 = whole axis */
    int32_t causal;      /* 0/1: key raster index <= query raster index */
    int32_t ring_cache;  /* 0/1: k/v are ring-buffer caches of num_keys slots */
    float scale;         /* softmax scale */
    int32_t batch;       /* B */
    int32_t num_heads;   /* nh */
    int32_t num_queries; /* Nq */
    int32_t num_keys;    /* Nk (ring cache: slots S) */
    int32_t head_dim;    /* hd */
} nuwa_3dna_params_t;

/* Library facts. */
NUWA_API int32_t nuwa_3dna_api_version(void);
NUWA_API int32_t nuwa_3dna_cuda_compiled(void);     /* 1 when the CUDA kernels are in this build */
NUWA_API int32_t nuwa_3dna_tensorrt_compiled(void); /* 1 when the TensorRT plugin is in this build */
NUWA_API const char* nuwa_3dna_build_info(void);    /* one line: versions, architectures, options */
/* CUDA devices visible now (0 without a CUDA build, driver or GPU; never fails). */
NUWA_API int32_t nuwa_3dna_cuda_device_count(void);

/* The ONNX node's attributes (= the TensorRT plugin's fields) in order, one line:
 * "q_grid:int32:3,k_grid:int32:3,extents:int32:3,causal:int32:1,ring_cache:int32:1,scale:float32:1,num_heads:int32:1"
 * (name:type:length, comma separated). */
NUWA_API const char* nuwa_3dna_attribute_fields(void);

NUWA_API const char* nuwa_3dna_status_string(nuwa_status_t status);
/* Message of the calling thread's last failed call ("" if none). */
NUWA_API const char* nuwa_3dna_last_error(void);

/* Checks attributes and shapes. */
NUWA_API nuwa_status_t nuwa_3dna_validate(const nuwa_3dna_params_t* params);

/* CPU FP32 kernel, host pointers. num_threads <= 0: one per hardware thread. */
NUWA_API nuwa_status_t nuwa_3dna_forward_cpu(const nuwa_3dna_params_t* params, const float* q, const float* k,
    const float* v, const int32_t* q_positions, float* out, int32_t num_threads);

/* Decode convenience on the CPU: one query per batch row, q (B, nh, 1, hd) at raster position
 * query_pos[b] against ring caches k/v (B, nh, S, hd); params->num_queries must be 1. */
NUWA_API nuwa_status_t nuwa_3dna_decode_cpu(const nuwa_3dna_params_t* params, const float* q,
    const float* k_cache, const float* v_cache, const int32_t* query_pos, float* out, int32_t num_threads);

/* CUDA kernels, device pointers, enqueued on stream (a cudaStream_t; NULL = legacy default stream).
 * Asynchronous: returns after the launch. NUWA_STATUS_NOT_COMPILED without a CUDA build. */
NUWA_API nuwa_status_t nuwa_3dna_forward_cuda(const nuwa_3dna_params_t* params, nuwa_dtype_t dtype, const void* q,
    const void* k, const void* v, const int32_t* q_positions, void* out, void* stream, nuwa_3dna_algo_t algo);

/* Decode convenience on CUDA (see nuwa_3dna_decode_cpu). */
NUWA_API nuwa_status_t nuwa_3dna_decode_cuda(const nuwa_3dna_params_t* params, nuwa_dtype_t dtype, const void* q,
    const void* k_cache, const void* v_cache, const int32_t* query_pos, void* out, void* stream,
    nuwa_3dna_algo_t algo);

/* Registers the TensorRT plugin creator (nuwa::NearbyAttention3D v1) with the process-wide TensorRT
 * registry (found in the process: libnvinfer must already be loaded). Idempotent: a creator already
 * registered (by IPluginRegistry::loadLibrary through getCreators(), or an earlier call) is left as is.
 * Loading this library registers nothing (it is a TensorRT dynamic plugin library); loading
 * libnuwa_trt_register.so calls this (static registration for ONNX Runtime's TensorRT EP,
 * trtexec --staticPlugins, polygraphy --plugins). 1: registered (or already), 0: no TensorRT in
 * this build/process. */
NUWA_API int32_t nuwa_3dna_register_tensorrt_plugin(void);

/* 1 when algo can run this (valid) call with dtype in this build, else 0. */
NUWA_API int32_t nuwa_3dna_cuda_supports(const nuwa_3dna_params_t* params, nuwa_dtype_t dtype, nuwa_3dna_algo_t algo);

#ifdef __cplusplus
}
#endif

#endif /* NUWA_PLUGINS_H */
