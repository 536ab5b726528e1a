/*
 * nearbyAttention3DPlugin.cpp — TensorRT IPluginV3 (OneCore/OneBuild/OneRuntime) adapter of the
 * 3DNA kernels, its creator, and registration (getCreators() for loadLibrary; an explicit, idempotent
 * nuwa_3dna_register_tensorrt_plugin() that libnuwa_trt_register.so calls at its load time).
 *
 * No method lets an exception out (all are noexcept); errors are reported by return codes and a
 * message on stderr. The library does not need to be linked against libnvinfer: registration
 * (nuwa_3dna_register_tensorrt_plugin) looks the registry up in the process (getPluginRegistry, or
 * an already loaded libnvinfer.so.10/.11), so the same .so serves ctypes users without TensorRT.
 */
#include "nearbyAttention3DPlugin.h"

#include "nuwa_plugins.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <new>

#if !NUWA_TRT_LINKED
#include <dlfcn.h>
#endif

using namespace nvinfer1;

namespace nuwa
{
namespace
{

void logError(char const* where, char const* what) noexcept
{
    std::fprintf(stderr, "[nuwa::NearbyAttention3D] %s: %s\n", where, what);
}

// Field names: kATTRIBUTE_FIELDS (nearbyAttention3DCommon.h), exactly
// NearbyAttentionSpec.onnx_attributes() (model/attention3d.py).
constexpr char const* kQ_GRID = kATTRIBUTE_FIELDS[0].name;
constexpr char const* kK_GRID = kATTRIBUTE_FIELDS[1].name;
constexpr char const* kEXTENTS = kATTRIBUTE_FIELDS[2].name;
constexpr char const* kCAUSAL = kATTRIBUTE_FIELDS[3].name;
constexpr char const* kRING_CACHE = kATTRIBUTE_FIELDS[4].name;
constexpr char const* kSCALE = kATTRIBUTE_FIELDS[5].name;
constexpr char const* kNUM_HEADS = kATTRIBUTE_FIELDS[6].name;

PluginFieldType toFieldType(AttributeType t) noexcept
{
    return t == AttributeType::kFLOAT32 ? PluginFieldType::kFLOAT32 : PluginFieldType::kINT32;
}

bool readInts(PluginField const& f, int32_t* dst, int32_t n) noexcept
{
    if (f.data == nullptr || f.length != n)
    {
        return false;
    }
    for (int32_t i = 0; i < n; ++i)
    {
        switch (f.type)
        {
        case PluginFieldType::kINT32: dst[i] = static_cast<int32_t const*>(f.data)[i]; break;
        case PluginFieldType::kINT64: dst[i] = static_cast<int32_t>(static_cast<int64_t const*>(f.data)[i]); break;
        case PluginFieldType::kINT16: dst[i] = static_cast<int16_t const*>(f.data)[i]; break;
        case PluginFieldType::kINT8: dst[i] = static_cast<int8_t const*>(f.data)[i]; break;
        default: return false;
        }
    }
    return true;
}

bool readFloat(PluginField const& f, float& dst) noexcept
{
    if (f.data == nullptr || f.length != 1)
    {
        return false;
    }
    switch (f.type)
    {
    case PluginFieldType::kFLOAT32: dst = *static_cast<float const*>(f.data); return true;
    case PluginFieldType::kFLOAT64: dst = static_cast<float>(*static_cast<double const*>(f.data)); return true;
    default: return false;
    }
}

bool isFloatType(nvinfer1::DataType t) noexcept
{
    return t == nvinfer1::DataType::kFLOAT || t == nvinfer1::DataType::kHALF || t == nvinfer1::DataType::kBF16;
}

nuwa::DataType toKernelType(nvinfer1::DataType t) noexcept
{
    switch (t)
    {
    case nvinfer1::DataType::kHALF: return nuwa::DataType::kHALF;
    case nvinfer1::DataType::kBF16: return nuwa::DataType::kBF16;
    default: return nuwa::DataType::kFLOAT;
    }
}

} // namespace

// ------------------------------------------------------------------------------------------------
// Plugin
// ------------------------------------------------------------------------------------------------

NearbyAttention3DPlugin::NearbyAttention3DPlugin(NearbyAttentionAttributes const& attrs)
    : mAttrs(attrs)
{
    mFields = {
        PluginField(kQ_GRID, mAttrs.qGrid, PluginFieldType::kINT32, 3),
        PluginField(kK_GRID, mAttrs.kGrid, PluginFieldType::kINT32, 3),
        PluginField(kEXTENTS, mAttrs.extents, PluginFieldType::kINT32, 3),
        PluginField(kCAUSAL, &mAttrs.causal, PluginFieldType::kINT32, 1),
        PluginField(kRING_CACHE, &mAttrs.ringCache, PluginFieldType::kINT32, 1),
        PluginField(kSCALE, &mAttrs.scale, PluginFieldType::kFLOAT32, 1),
        PluginField(kNUM_HEADS, &mAttrs.numHeads, PluginFieldType::kINT32, 1),
    };
    mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
    mFieldCollection.fields = mFields.data();
}

IPluginCapability* NearbyAttention3DPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

IPluginV3* NearbyAttention3DPlugin::clone() noexcept
{
    try
    {
        auto* plugin = new NearbyAttention3DPlugin(mAttrs);
        plugin->mNbInputs = mNbInputs;
        return plugin;
    }
    catch (std::exception const& e)
    {
        logError("clone", e.what());
    }
    return nullptr;
}

char const* NearbyAttention3DPlugin::getPluginName() const noexcept
{
    return kNEARBY_ATTENTION_PLUGIN_NAME;
}

char const* NearbyAttention3DPlugin::getPluginVersion() const noexcept
{
    return kNEARBY_ATTENTION_PLUGIN_VERSION;
}

char const* NearbyAttention3DPlugin::getPluginNamespace() const noexcept
{
    return kNEARBY_ATTENTION_PLUGIN_NAMESPACE;
}

int32_t NearbyAttention3DPlugin::getNbOutputs() const noexcept
{
    return 1;
}

int32_t NearbyAttention3DPlugin::getOutputDataTypes(
    nvinfer1::DataType* outputTypes, int32_t nbOutputs, nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (nbOutputs != 1 || nbInputs < 3 || nbInputs > 4 || !isFloatType(inputTypes[0]))
    {
        logError("getOutputDataTypes", "expects inputs q, k, v[, q_positions] of FP32/FP16/BF16 and one output");
        return -1;
    }
    outputTypes[0] = inputTypes[0];
    return 0;
}

int32_t NearbyAttention3DPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs,
    DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs,
    IExprBuilder& /*exprBuilder*/) noexcept
{
    if (nbOutputs != 1 || nbInputs < 3 || nbInputs > 4 || inputs[0].nbDims != 4 || inputs[1].nbDims != 4
        || inputs[2].nbDims != 4 || (nbInputs == 4 && inputs[3].nbDims != 2))
    {
        logError("getOutputShapes", "expects q/k/v (B, nh, N, hd) and optional q_positions (B, Nq)");
        return -1;
    }
    outputs[0] = inputs[0]; // (B, nh, Nq, hd)
    return 0;
}

bool NearbyAttention3DPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (nbInputs < 3 || nbInputs > 4 || nbOutputs != 1 || pos < 0 || pos >= nbInputs + nbOutputs)
    {
        return false;
    }
    PluginTensorDesc const& d = inOut[pos].desc;
    if (d.format != TensorFormat::kLINEAR)
    {
        return false;
    }
    if (nbInputs == 4 && pos == 3)
    {
        return d.type == nvinfer1::DataType::kINT32; // q_positions
    }
    if (pos == 0)
    {
        return isFloatType(d.type);
    }
    return d.type == inOut[0].desc.type; // k, v, out share q's type
}

int32_t NearbyAttention3DPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    if (nbInputs < 3 || nbInputs > 4 || nbOutputs != 1)
    {
        logError("configurePlugin", "expects 3 or 4 inputs and 1 output");
        return -1;
    }
    int64_t const heads = in[0].desc.dims.d[1];
    if (heads >= 0 && heads != mAttrs.numHeads)
    {
        logError("configurePlugin", "q's head axis differs from the num_heads attribute");
        return -1;
    }
    mNbInputs = nbInputs;
    return 0;
}

size_t NearbyAttention3DPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* /*inputs*/, int32_t /*nbInputs*/,
    DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    return 0;
}

bool NearbyAttention3DPlugin::makeParams(
    PluginTensorDesc const* in, int32_t nbInputs, NearbyAttentionParams& p) const noexcept
{
    if (nbInputs < 3 || nbInputs > 4)
    {
        return false;
    }
    Dims const& q = in[0].dims;
    Dims const& k = in[1].dims;
    Dims const& v = in[2].dims;
    if (q.nbDims != 4 || k.nbDims != 4 || q.d[0] != k.d[0] || q.d[1] != k.d[1] || q.d[3] != k.d[3])
    {
        return false;
    }
    // v (B, nh, Nk, hd) exactly like k: the kernels read v's rows with k's strides.
    if (v.nbDims != 4 || v.d[0] != k.d[0] || v.d[1] != k.d[1] || v.d[2] != k.d[2] || v.d[3] != k.d[3])
    {
        return false;
    }
    // q_positions (B, Nq): one raster position per query row.
    if (nbInputs == 4 && (in[3].dims.nbDims != 2 || in[3].dims.d[0] != q.d[0] || in[3].dims.d[1] != q.d[2]))
    {
        return false;
    }
    for (int i = 0; i < 4; ++i)
    {
        if (q.d[i] < 0 || q.d[i] > 0x7fffffff || k.d[i] < 0 || k.d[i] > 0x7fffffff)
        {
            return false;
        }
    }
    for (int i = 0; i < 3; ++i)
    {
        p.qGrid[i] = mAttrs.qGrid[i];
        p.kGrid[i] = mAttrs.kGrid[i];
        p.extents[i] = mAttrs.extents[i];
    }
    p.causal = mAttrs.causal;
    p.ringCache = mAttrs.ringCache;
    p.scale = mAttrs.scale;
    p.batch = static_cast<int32_t>(q.d[0]);
    p.numHeads = static_cast<int32_t>(q.d[1]);
    p.numQueries = static_cast<int32_t>(q.d[2]);
    p.numKeys = static_cast<int32_t>(k.d[2]);
    p.headDim = static_cast<int32_t>(q.d[3]);
    return p.numHeads == mAttrs.numHeads && nearbyAttention3DValidate(p) == nullptr;
}

int32_t NearbyAttention3DPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    NearbyAttentionParams p{};
    if (nbOutputs != 1 || !makeParams(in, nbInputs, p))
    {
        logError("onShapeChange",
            "input shapes do not match q (B, nh, Nq, hd), k/v (B, nh, Nk, hd), q_positions (B, Nq) and the "
            "attributes");
        return -1;
    }
    mNbInputs = nbInputs;
    return 0;
}

int32_t NearbyAttention3DPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
    void const* const* inputs, void* const* outputs, void* /*workspace*/, cudaStream_t stream) noexcept
{
    NearbyAttentionParams p{};
    if (!makeParams(inputDesc, mNbInputs, p))
    {
        logError("enqueue", "invalid shapes");
        return -1;
    }
    int32_t const* positions = mNbInputs == 4 ? static_cast<int32_t const*>(inputs[3]) : nullptr;
    cudaError_t const err = nearbyAttention3DCuda(p, toKernelType(inputDesc[0].type), inputs[0], inputs[1],
        inputs[2], positions, outputs[0], stream, Algo::kAUTO);
    if (err != cudaSuccess)
    {
        logError("enqueue", cudaGetErrorString(err));
        return -1;
    }
    return 0;
}

IPluginV3* NearbyAttention3DPlugin::attachToContext(IPluginResourceContext* /*context*/) noexcept
{
    return clone();
}

PluginFieldCollection const* NearbyAttention3DPlugin::getFieldsToSerialize() noexcept
{
    return &mFieldCollection;
}

// ------------------------------------------------------------------------------------------------
// Creator
// ------------------------------------------------------------------------------------------------

NearbyAttention3DPluginCreator::NearbyAttention3DPluginCreator()
{
    for (AttributeField const& f : kATTRIBUTE_FIELDS)
    {
        mFieldNames.emplace_back(f.name, nullptr, toFieldType(f.type), f.length);
    }
    mFieldCollection.nbFields = static_cast<int32_t>(mFieldNames.size());
    mFieldCollection.fields = mFieldNames.data();
}

char const* NearbyAttention3DPluginCreator::getPluginName() const noexcept
{
    return kNEARBY_ATTENTION_PLUGIN_NAME;
}

char const* NearbyAttention3DPluginCreator::getPluginVersion() const noexcept
{
    return kNEARBY_ATTENTION_PLUGIN_VERSION;
}

char const* NearbyAttention3DPluginCreator::getPluginNamespace() const noexcept
{
    return kNEARBY_ATTENTION_PLUGIN_NAMESPACE;
}

PluginFieldCollection const* NearbyAttention3DPluginCreator::getFieldNames() noexcept
{
    return &mFieldCollection;
}

char const* NearbyAttention3DPluginCreator::parseFields(
    PluginFieldCollection const* fc, NearbyAttentionAttributes& attrs) noexcept
{
    if (fc == nullptr || (fc->nbFields > 0 && fc->fields == nullptr))
    {
        return "no field collection";
    }
    bool seen[7] = {};
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        PluginField const& f = fc->fields[i];
        if (f.name == nullptr)
        {
            continue;
        }
        bool ok = true;
        if (std::strcmp(f.name, kQ_GRID) == 0)
        {
            ok = readInts(f, attrs.qGrid, 3);
            seen[0] = true;
        }
        else if (std::strcmp(f.name, kK_GRID) == 0)
        {
            ok = readInts(f, attrs.kGrid, 3);
            seen[1] = true;
        }
        else if (std::strcmp(f.name, kEXTENTS) == 0)
        {
            ok = readInts(f, attrs.extents, 3);
            seen[2] = true;
        }
        else if (std::strcmp(f.name, kCAUSAL) == 0)
        {
            ok = readInts(f, &attrs.causal, 1);
            seen[3] = true;
        }
        else if (std::strcmp(f.name, kRING_CACHE) == 0)
        {
            ok = readInts(f, &attrs.ringCache, 1);
            seen[4] = true;
        }
        else if (std::strcmp(f.name, kSCALE) == 0)
        {
            ok = readFloat(f, attrs.scale);
            seen[5] = true;
        }
        else if (std::strcmp(f.name, kNUM_HEADS) == 0)
        {
            ok = readInts(f, &attrs.numHeads, 1);
            seen[6] = true;
        }
        if (!ok)
        {
            return "a field has the wrong type or length (q_grid/k_grid/extents: 3 ints; causal, "
                   "ring_cache, num_heads: int; scale: float)";
        }
    }
    if (!(seen[0] && seen[1] && seen[2] && seen[5] && seen[6]))
    {
        return "missing field: q_grid, k_grid, extents, scale and num_heads are required";
    }
    NearbyAttentionParams p{};
    for (int i = 0; i < 3; ++i)
    {
        p.qGrid[i] = attrs.qGrid[i];
        p.kGrid[i] = attrs.kGrid[i];
        p.extents[i] = attrs.extents[i];
    }
    p.causal = attrs.causal;
    p.ringCache = attrs.ringCache;
    p.scale = attrs.scale;
    p.batch = 1;
    p.numHeads = attrs.numHeads;
    p.numQueries = 1;
    p.numKeys = 1;
    p.headDim = 1;
    return nearbyAttention3DValidate(p);
}

IPluginV3* NearbyAttention3DPluginCreator::createPlugin(
    char const* /*name*/, PluginFieldCollection const* fc, TensorRTPhase /*phase*/) noexcept
{
    try
    {
        NearbyAttentionAttributes attrs;
        if (char const* msg = parseFields(fc, attrs))
        {
            logError("createPlugin", msg);
            return nullptr;
        }
        return new NearbyAttention3DPlugin(attrs);
    }
    catch (std::exception const& e)
    {
        logError("createPlugin", e.what());
    }
    return nullptr;
}

} // namespace nuwa

// ------------------------------------------------------------------------------------------------
// Registration, TensorRT's own pattern (plugin/vc/vfcCommon.cpp, samples/trtexec/README.md):
//   - this library is a *dynamic* plugin library: getCreators() hands out the creator and makes no
//     registry call, and nothing registers while the library loads, so IPluginRegistry::loadLibrary
//     (trtexec --dynamicPlugins, TensorRTBackend) registers it exactly once, with no re-entry into
//     the registry from inside TensorRT's dlopen;
//   - static registration (REGISTER_TENSORRT_PLUGIN's effect: ONNX Runtime's TensorRT EP, which
//     dlopens trt_extra_plugin_lib_paths, trtexec --staticPlugins, polygraphy --plugins) lives in
//     the separate libnuwa_trt_register.so, whose load-time constructor calls
//     nuwa_3dna_register_tensorrt_plugin() below. Never hand that library to loadLibrary.
// Both paths register the one creator object; registering when it is already there is a no-op.
// ------------------------------------------------------------------------------------------------

namespace
{

nuwa::NearbyAttention3DPluginCreator& theCreator() noexcept
{
    static nuwa::NearbyAttention3DPluginCreator sCreator;
    return sCreator;
}

std::mutex gRegistryMutex;

IPluginRegistry* findRegistry() noexcept
{
#if NUWA_TRT_LINKED
    return getPluginRegistry();
#else
    using GetRegistry = IPluginRegistry* (*) ();
    void* sym = dlsym(RTLD_DEFAULT, "getPluginRegistry");
    for (char const* lib : {"libnvinfer.so.11", "libnvinfer.so.10", "libnvinfer.so"})
    {
        if (sym != nullptr)
        {
            break;
        }
        if (void* handle = dlopen(lib, RTLD_LAZY | RTLD_NOLOAD)) // only a TensorRT already loaded
        {
            sym = dlsym(handle, "getPluginRegistry");
            dlclose(handle); // NOLOAD took a reference
        }
    }
    return sym != nullptr ? reinterpret_cast<GetRegistry>(sym)() : nullptr;
#endif
}

} // namespace

extern "C" IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    // No registry calls: loadLibrary registers what this returns (TensorRT's vc plugin library does
    // the same). The array and the creator live as long as the library.
    static IPluginCreatorInterface* const kCREATORS[] = {&theCreator()};
    nbCreators = 1;
    return kCREATORS;
}

extern "C" void setLoggerFinder(ILoggerFinder* /*finder*/) {}

extern "C" int32_t nuwa_3dna_register_tensorrt_plugin(void)
{
    try
    {
        std::lock_guard<std::mutex> lock(gRegistryMutex);
        IPluginRegistry* registry = findRegistry();
        if (registry == nullptr)
        {
            return 0; // no TensorRT in this process (yet)
        }
        if (registry->getCreator(nuwa::kNEARBY_ATTENTION_PLUGIN_NAME, nuwa::kNEARBY_ATTENTION_PLUGIN_VERSION,
                nuwa::kNEARBY_ATTENTION_PLUGIN_NAMESPACE)
            != nullptr)
        {
            return 1; // already registered: by loadLibrary, by libnuwa_trt_register.so or by an earlier call
        }
        return registry->registerCreator(theCreator(), nuwa::kNEARBY_ATTENTION_PLUGIN_NAMESPACE) ? 1 : 0;
    }
    catch (...)
    {
        return 0;
    }
}
