/*
 * trt_plugin_check.cpp — header-only checks of the TensorRT plugin, no TensorRT runtime needed.
 *
 * Built by the root CMakeLists.txt when TensorRT headers are found (target nuwa_trt_plugin_check),
 * run by tests/plugins/test_tensorrt_plugin.py. Through the exported getCreators() it creates the
 * plugin from the ONNX node's fields, checks names/version/namespace, capability interfaces,
 * output types and shapes, format combinations, the serialization round trip (fields ->
 * createPlugin -> fields), clone, and that bad fields are refused. The creator's declared fields
 * and the serialized fields must equal the C API's nuwa_3dna_attribute_fields() (which the Python
 * test compares with NearbyAttentionSpec.onnx_attributes()); the creator's are printed as
 * "creator fields: name:type:length,...". Exit status 0 = all passed.
 */
#include "nuwa_plugins.h"

#include <NvInferRuntime.h>

#include <dlfcn.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

using namespace nvinfer1;

extern "C" IPluginCreatorInterface* const* getCreators(int32_t& nbCreators);

namespace
{

int gRegistryLookups = 0; // calls of getPluginRegistry() below (constant-initialized: valid at load)

//! A TensorRT plugin registry that counts what libnuwa_plugins.so asks of it. The library finds it
//! the way it finds TensorRT's: getPluginRegistry in the process (this executable exports it).
class CountingRegistry : public IPluginRegistry
{
public:
    int registerCalls{0};
    int otherCalls{0};
    std::vector<IPluginCreatorInterface*> creators;
    std::vector<std::string> namespaces;

#if NV_TENSORRT_MAJOR < 11
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    bool registerCreator(IPluginCreator&, AsciiChar const* const) noexcept override
    {
        ++otherCalls;
        return false;
    }
    IPluginCreator* const* getPluginCreatorList(int32_t* const n) const noexcept override
    {
        *n = 0;
        return nullptr;
    }
    IPluginCreator* getPluginCreator(AsciiChar const*, AsciiChar const*, AsciiChar const*) noexcept override
    {
        ++otherCalls;
        return nullptr;
    }
    bool deregisterCreator(IPluginCreator const&) noexcept override
    {
        ++otherCalls;
        return false;
    }
#pragma GCC diagnostic pop
#endif
    void setErrorRecorder(IErrorRecorder* const) noexcept override {}
    IErrorRecorder* getErrorRecorder() const noexcept override
    {
        return nullptr;
    }
    bool isParentSearchEnabled() const override
    {
        return false;
    }
    void setParentSearchEnabled(bool const) override {}
    PluginLibraryHandle loadLibrary(AsciiChar const*) noexcept override
    {
        ++otherCalls;
        return nullptr;
    }
    void deregisterLibrary(PluginLibraryHandle) noexcept override
    {
        ++otherCalls;
    }
    bool registerCreator(IPluginCreatorInterface& creator, AsciiChar const* const ns) noexcept override
    {
        ++registerCalls;
        if (find(static_cast<IPluginCreatorV3One&>(creator).getPluginName(), ns) != nullptr)
        {
            return false; // TensorRT refuses a second creator of one name/version/namespace
        }
        creators.push_back(&creator);
        namespaces.emplace_back(ns);
        return true;
    }
    IPluginCreatorInterface* const* getAllCreators(int32_t* const n) const noexcept override
    {
        *n = static_cast<int32_t>(creators.size());
        return creators.data();
    }
    IPluginCreatorInterface* getCreator(
        AsciiChar const* const name, AsciiChar const* const /*version*/, AsciiChar const* const ns) noexcept override
    {
        return find(name, ns);
    }
    bool deregisterCreator(IPluginCreatorInterface const&) noexcept override
    {
        ++otherCalls;
        return false;
    }
    IPluginResource* acquirePluginResource(AsciiChar const*, IPluginResource*) noexcept override
    {
        return nullptr;
    }
    int32_t releasePluginResource(AsciiChar const*) noexcept override
    {
        return 0;
    }
#if NV_TENSORRT_MAJOR >= 11
    IPluginCreatorInterface* const* getAllCreatorsRecursive(int32_t* const n) noexcept override
    {
        return getAllCreators(n);
    }
#endif

private:
    IPluginCreatorInterface* find(char const* name, char const* ns) const
    {
        for (size_t i = 0; i < creators.size(); ++i)
        {
            auto* c = static_cast<IPluginCreatorV3One*>(creators[i]);
            if (std::strcmp(c->getPluginName(), name) == 0 && namespaces[i] == ns)
            {
                return creators[i];
            }
        }
        return nullptr;
    }
};

CountingRegistry& countingRegistry()
{
    static CountingRegistry sRegistry;
    return sRegistry;
}

int gFailures = 0;

#define CHECK(cond)                                                                                                    \
    do                                                                                                                 \
    {                                                                                                                  \
        if (!(cond))                                                                                                   \
        {                                                                                                              \
            std::fprintf(stderr, "FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond);                                     \
            ++gFailures;                                                                                               \
        }                                                                                                              \
    } while (0)

struct Fields
{
    int32_t qGrid[3]{4, 8, 8};
    int32_t kGrid[3]{4, 8, 8};
    int32_t extents[3]{3, 3, 3};
    int32_t causal{1};
    int32_t ringCache{0};
    float scale{0.125F};
    int32_t numHeads{2};
    std::vector<PluginField> list() const
    {
        return {PluginField("q_grid", qGrid, PluginFieldType::kINT32, 3),
            PluginField("k_grid", kGrid, PluginFieldType::kINT32, 3),
            PluginField("extents", extents, PluginFieldType::kINT32, 3),
            PluginField("causal", &causal, PluginFieldType::kINT32, 1),
            PluginField("ring_cache", &ringCache, PluginFieldType::kINT32, 1),
            PluginField("scale", &scale, PluginFieldType::kFLOAT32, 1),
            PluginField("num_heads", &numHeads, PluginFieldType::kINT32, 1)};
    }
};

struct UnusedExprBuilder : IExprBuilder
{
};

IPluginV3* create(IPluginCreatorV3One* creator, std::vector<PluginField> const& fields)
{
    PluginFieldCollection fc{};
    fc.nbFields = static_cast<int32_t>(fields.size());
    fc.fields = fields.data();
    return creator->createPlugin("node", &fc, TensorRTPhase::kBUILD);
}

DynamicPluginTensorDesc desc(DataType type, int32_t nbDims, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    DynamicPluginTensorDesc d{};
    d.desc.type = type;
    d.desc.format = TensorFormat::kLINEAR;
    d.desc.dims.nbDims = nbDims;
    int64_t const v[4] = {d0, d1, d2, d3};
    for (int i = 0; i < nbDims; ++i)
    {
        d.desc.dims.d[i] = v[i];
    }
    return d;
}

int32_t fieldInt(PluginFieldCollection const* fc, char const* name, int i)
{
    for (int32_t j = 0; j < fc->nbFields; ++j)
    {
        if (std::strcmp(fc->fields[j].name, name) == 0)
        {
            return static_cast<int32_t const*>(fc->fields[j].data)[i];
        }
    }
    return -999;
}

//! "name:type:length,..." of a field collection (the format of nuwa_3dna_attribute_fields()).
std::string describe(PluginFieldCollection const* fc)
{
    std::string s;
    for (int32_t j = 0; fc != nullptr && j < fc->nbFields; ++j)
    {
        PluginField const& f = fc->fields[j];
        char const* type = f.type == PluginFieldType::kINT32 ? "int32"
            : f.type == PluginFieldType::kFLOAT32            ? "float32"
                                                             : "other";
        s += (j == 0 ? "" : ",") + std::string(f.name != nullptr ? f.name : "?") + ":" + type + ":"
            + std::to_string(f.length);
    }
    return s;
}

} // namespace

extern "C" __attribute__((visibility("default"))) IPluginRegistry* getPluginRegistry() noexcept
{
    ++gRegistryLookups;
    return &countingRegistry();
}

int main()
{
    // Loading libnuwa_plugins.so (before main) registered nothing and looked no registry up: it is a
    // dynamic plugin library, so TensorRT's loadLibrary is never re-entered from inside its dlopen.
    CHECK(gRegistryLookups == 0 && countingRegistry().registerCalls == 0);
    int32_t n = 0;
    IPluginCreatorInterface* const* creators = getCreators(n);
    CHECK(gRegistryLookups == 0 && countingRegistry().registerCalls == 0); // getCreators: no registry call
    CHECK(n == 1 && creators != nullptr);
    if (n != 1 || creators == nullptr)
    {
        return 1;
    }
    CHECK(std::strcmp(creators[0]->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0);
    auto* creator = static_cast<IPluginCreatorV3One*>(creators[0]);
    CHECK(std::strcmp(creator->getPluginName(), "NearbyAttention3D") == 0);
    CHECK(std::strcmp(creator->getPluginVersion(), "1") == 0);
    CHECK(std::strcmp(creator->getPluginNamespace(), "nuwa") == 0);
    PluginFieldCollection const* names = creator->getFieldNames();
    CHECK(names != nullptr && names->nbFields == 7);
    std::string const creatorFields = describe(names);
    std::printf("creator fields: %s\n", creatorFields.c_str());
    CHECK(creatorFields == nuwa_3dna_attribute_fields());

    Fields f;
    IPluginV3* plugin = create(creator, f.list());
    CHECK(plugin != nullptr);
    if (plugin == nullptr)
    {
        return 1;
    }
    auto* core = static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE));
    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    CHECK(core != nullptr && build != nullptr && runtime != nullptr);
    CHECK(std::strcmp(core->getPluginName(), "NearbyAttention3D") == 0);
    CHECK(std::strcmp(core->getPluginNamespace(), "nuwa") == 0);
    CHECK(build->getNbOutputs() == 1);

    // output type follows q
    DataType in3[3] = {DataType::kHALF, DataType::kHALF, DataType::kHALF};
    DataType outType = DataType::kFLOAT;
    CHECK(build->getOutputDataTypes(&outType, 1, in3, 3) == 0 && outType == DataType::kHALF);
    DataType in4[4] = {DataType::kFLOAT, DataType::kFLOAT, DataType::kFLOAT, DataType::kINT32};
    CHECK(build->getOutputDataTypes(&outType, 1, in4, 4) == 0 && outType == DataType::kFLOAT);

    // output shape = q's shape (expressions copied, the builder is not needed)
    DimsExprs shapes[3]{};
    for (auto& s : shapes)
    {
        s.nbDims = 4;
    }
    DimsExprs outShape{};
    UnusedExprBuilder builder; // the plugin only copies q's expressions
    CHECK(build->getOutputShapes(shapes, 3, nullptr, 0, &outShape, 1, builder) == 0 && outShape.nbDims == 4);
    shapes[1].nbDims = 3;
    CHECK(build->getOutputShapes(shapes, 3, nullptr, 0, &outShape, 1, builder) != 0);

    // formats: FP32/FP16/BF16 linear, k/v/out same type as q, q_positions int32
    for (DataType t : {DataType::kFLOAT, DataType::kHALF, DataType::kBF16})
    {
        DynamicPluginTensorDesc io[5] = {desc(t, 4, 1, 2, 256, 64), desc(t, 4, 1, 2, 256, 64),
            desc(t, 4, 1, 2, 256, 64), desc(DataType::kINT32, 2, 1, 256, 0, 0), desc(t, 4, 1, 2, 256, 64)};
        for (int pos = 0; pos < 5; ++pos)
        {
            CHECK(build->supportsFormatCombination(pos, io, 4, 1));
        }
        DynamicPluginTensorDesc io3[4] = {io[0], io[1], io[2], io[4]};
        for (int pos = 0; pos < 4; ++pos)
        {
            CHECK(build->supportsFormatCombination(pos, io3, 3, 1));
        }
        io[3].desc.type = DataType::kINT64;
        CHECK(!build->supportsFormatCombination(3, io, 4, 1));
    }
    {
        DynamicPluginTensorDesc io[4] = {desc(DataType::kHALF, 4, 1, 2, 256, 64),
            desc(DataType::kFLOAT, 4, 1, 2, 256, 64), desc(DataType::kHALF, 4, 1, 2, 256, 64),
            desc(DataType::kHALF, 4, 1, 2, 256, 64)};
        CHECK(!build->supportsFormatCombination(1, io, 3, 1)); // mixed types refused
        io[0].desc.type = DataType::kINT8;
        CHECK(!build->supportsFormatCombination(0, io, 3, 1));
        io[0].desc.type = DataType::kHALF;
        io[0].desc.format = TensorFormat::kCHW32;
        CHECK(!build->supportsFormatCombination(0, io, 3, 1));
    }

    // configure / shape change: num_heads must match q's head axis
    {
        DynamicPluginTensorDesc in[3] = {desc(DataType::kHALF, 4, 1, 2, 256, 64),
            desc(DataType::kHALF, 4, 1, 2, 256, 64), desc(DataType::kHALF, 4, 1, 2, 256, 64)};
        DynamicPluginTensorDesc out = desc(DataType::kHALF, 4, 1, 2, 256, 64);
        CHECK(build->configurePlugin(in, 3, &out, 1) == 0);
        PluginTensorDesc rin[3] = {in[0].desc, in[1].desc, in[2].desc};
        CHECK(runtime->onShapeChange(rin, 3, &out.desc, 1) == 0);
        rin[0].dims.d[1] = 3;
        CHECK(runtime->onShapeChange(rin, 3, &out.desc, 1) != 0);
        in[0].desc.dims.d[1] = 5;
        CHECK(build->configurePlugin(in, 3, &out, 1) != 0);
    }
    // shape change: v must be shaped like k, q_positions (B, Nq), and Nk <= Tk*Hk*Wk (no ring)
    {
        DynamicPluginTensorDesc in[4] = {desc(DataType::kHALF, 4, 1, 2, 256, 64),
            desc(DataType::kHALF, 4, 1, 2, 256, 64), desc(DataType::kHALF, 4, 1, 2, 256, 64),
            desc(DataType::kINT32, 2, 1, 256, 0, 0)};
        DynamicPluginTensorDesc out = desc(DataType::kHALF, 4, 1, 2, 256, 64);
        PluginTensorDesc rin[4] = {in[0].desc, in[1].desc, in[2].desc, in[3].desc};
        CHECK(runtime->onShapeChange(rin, 4, &out.desc, 1) == 0);
        for (int axis = 0; axis < 4; ++axis) // each axis of v differing from k's
        {
            PluginTensorDesc bad[4] = {rin[0], rin[1], rin[2], rin[3]};
            bad[2].dims.d[axis] += 1;
            CHECK(runtime->onShapeChange(bad, 4, &out.desc, 1) != 0);
        }
        {
            PluginTensorDesc bad[4] = {rin[0], rin[1], rin[2], rin[3]};
            bad[3].dims.d[1] = 255; // one position short
            CHECK(runtime->onShapeChange(bad, 4, &out.desc, 1) != 0);
            bad[3].dims.d[1] = 256;
            bad[3].dims.d[0] = 2; // another batch
            CHECK(runtime->onShapeChange(bad, 4, &out.desc, 1) != 0);
            bad[3].dims.nbDims = 3;
            bad[3].dims.d[0] = 1;
            bad[3].dims.d[2] = 1;
            CHECK(runtime->onShapeChange(bad, 4, &out.desc, 1) != 0);
        }
        {
            PluginTensorDesc bad[3] = {rin[0], rin[1], rin[2]};
            bad[1].dims.d[2] = 257; // one key past the 4x8x8 grid
            bad[2].dims.d[2] = 257;
            CHECK(runtime->onShapeChange(bad, 3, &out.desc, 1) != 0);
        }
    }
    // getCreators() is side-effect free and stable (loadLibrary may call it again)
    {
        int32_t n2 = 0;
        IPluginCreatorInterface* const* again = getCreators(n2);
        CHECK(n2 == 1 && again == creators && again[0] == creators[0]);
    }

    // serialization round trip: fields -> createPlugin(kRUNTIME) -> same fields
    PluginFieldCollection const* ser = runtime->getFieldsToSerialize();
    CHECK(ser != nullptr && ser->nbFields == 7);
    CHECK(describe(ser) == nuwa_3dna_attribute_fields());
    IPluginV3* restored = creator->createPlugin("node", ser, TensorRTPhase::kRUNTIME);
    CHECK(restored != nullptr);
    if (restored != nullptr)
    {
        auto* rt2 = static_cast<IPluginV3OneRuntime*>(restored->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
        PluginFieldCollection const* ser2 = rt2->getFieldsToSerialize();
        for (char const* name : {"q_grid", "k_grid", "extents"})
        {
            for (int i = 0; i < 3; ++i)
            {
                CHECK(fieldInt(ser, name, i) == fieldInt(ser2, name, i));
            }
        }
        CHECK(fieldInt(ser2, "extents", 0) == 3 && fieldInt(ser2, "causal", 0) == 1);
        CHECK(fieldInt(ser2, "num_heads", 0) == 2 && fieldInt(ser2, "ring_cache", 0) == 0);
        for (int32_t j = 0; j < ser2->nbFields; ++j)
        {
            if (std::strcmp(ser2->fields[j].name, "scale") == 0)
            {
                CHECK(ser2->fields[j].type == PluginFieldType::kFLOAT32);
                CHECK(*static_cast<float const*>(ser2->fields[j].data) == 0.125F);
            }
        }
        delete restored;
    }
    IPluginV3* copy = plugin->clone();
    CHECK(copy != nullptr);
    delete copy;
    IPluginV3* attached = runtime->attachToContext(nullptr);
    CHECK(attached != nullptr);
    delete attached;

    // ONNX parsers may hand ints as INT64 and scale as FLOAT64
    {
        int64_t q64[3] = {2, 4, 4}, e64[3] = {-1, 1, 0}, one = 1, heads = 2;
        double scale = 0.5;
        std::vector<PluginField> fields = {PluginField("q_grid", q64, PluginFieldType::kINT64, 3),
            PluginField("k_grid", q64, PluginFieldType::kINT64, 3),
            PluginField("extents", e64, PluginFieldType::kINT64, 3),
            PluginField("causal", &one, PluginFieldType::kINT64, 1),
            PluginField("ring_cache", &one, PluginFieldType::kINT64, 1),
            PluginField("scale", &scale, PluginFieldType::kFLOAT64, 1),
            PluginField("num_heads", &heads, PluginFieldType::kINT64, 1)};
        IPluginV3* p64 = create(creator, fields);
        CHECK(p64 != nullptr);
        delete p64;
    }
    // refused: missing field, bad extents, ring cache without causal, wrong length
    {
        auto fields = f.list();
        fields.pop_back(); // no num_heads
        CHECK(create(creator, fields) == nullptr);
        Fields bad = f;
        bad.extents[1] = -2;
        CHECK(create(creator, bad.list()) == nullptr);
        bad = f;
        bad.ringCache = 1;
        bad.causal = 0;
        CHECK(create(creator, bad.list()) == nullptr);
        bad = f; // causal attention on unequal grids (DESIGN §4)
        bad.kGrid[0] = 2;
        CHECK(create(creator, bad.list()) == nullptr);
        bad.causal = 0; // the same grids without causality: cross-attention, accepted
        IPluginV3* cross = create(creator, bad.list());
        CHECK(cross != nullptr);
        delete cross;
        auto wrong = f.list();
        wrong[0].length = 2;
        CHECK(create(creator, wrong) == nullptr);
    }
    delete plugin;

    // Static registration: idempotent, the same creator getCreators() hands out, namespace "nuwa";
    // libnuwa_trt_register.so (beside this program) registers at dlopen through it.
    {
        CountingRegistry& registry = countingRegistry();
        CHECK(nuwa_3dna_register_tensorrt_plugin() == 1);
        CHECK(registry.registerCalls == 1 && registry.creators.size() == 1);
        CHECK(!registry.creators.empty() && registry.creators[0] == creators[0]);
        CHECK(!registry.namespaces.empty() && registry.namespaces[0] == "nuwa");
        CHECK(nuwa_3dna_register_tensorrt_plugin() == 1); // already registered: left as is
        CHECK(registry.registerCalls == 1 && registry.creators.size() == 1);
        std::string self(4096, '\0');
        ssize_t const len = readlink("/proc/self/exe", self.data(), self.size() - 1);
        CHECK(len > 0);
        self.resize(len > 0 ? static_cast<size_t>(len) : 0);
        std::string const lib = self.substr(0, self.rfind('/') + 1) + "libnuwa_trt_register.so";
        void* handle = dlopen(lib.c_str(), RTLD_NOW);
        CHECK(handle != nullptr);
        CHECK(registry.registerCalls == 1 && registry.creators.size() == 1); // found it registered
        CHECK(registry.otherCalls == 0); // no loadLibrary, no deregistering, no V2-era calls
    }
    if (gFailures == 0)
    {
        std::printf("trt_plugin_check: all checks passed (TensorRT headers %d.%d.%d)\n", NV_TENSORRT_MAJOR,
            NV_TENSORRT_MINOR, NV_TENSORRT_PATCH);
    }
    return gFailures == 0 ? 0 : 1;
}
