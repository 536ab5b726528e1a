/*
 * nearbyAttention3DPlugin.h — TensorRT IPluginV3 adapter of the 3DNA kernels.
 *
 * Plugin "NearbyAttention3D", version "1", namespace "nuwa" (the ONNX node nuwa::NearbyAttention3D).
 * Inputs q (B, nh, Nq, hd), k (B, nh, Nk, hd), v (B, nh, Nk, hd) of one type (FP32/FP16/BF16),
 * optional q_positions int32 (B, Nq); output (B, nh, Nq, hd) of q's type. Attributes exactly
 * NearbyAttentionSpec.onnx_attributes(): q_grid, k_grid, extents (ints[3]), causal, ring_cache,
 * num_heads (int), scale (float). Compiles against the headers of TensorRT 10.3 and 11.x.
 */
#pragma once

#include "nearbyAttention3DKernel.h"

#include <NvInferRuntime.h>

#include <string>
#include <vector>

namespace nuwa
{

constexpr char const* kNEARBY_ATTENTION_PLUGIN_NAME = "NearbyAttention3D";
constexpr char const* kNEARBY_ATTENTION_PLUGIN_VERSION = "1";
constexpr char const* kNEARBY_ATTENTION_PLUGIN_NAMESPACE = "nuwa";

//! The node's attributes (shapes come from the tensors at enqueue).
struct NearbyAttentionAttributes
{
    int32_t qGrid[3]{1, 1, 1};
    int32_t kGrid[3]{1, 1, 1};
    int32_t extents[3]{-1, -1, -1};
    int32_t causal{0};
    int32_t ringCache{0};
    int32_t numHeads{1};
    float scale{1.F};
};

class NearbyAttention3DPlugin : public nvinfer1::IPluginV3,
                                public nvinfer1::IPluginV3OneCore,
                                public nvinfer1::IPluginV3OneBuild,
                                public nvinfer1::IPluginV3OneRuntime
{
public:
    explicit NearbyAttention3DPlugin(NearbyAttentionAttributes const& attrs);
    ~NearbyAttention3DPlugin() override = default;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t getNbOutputs() const noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

    NearbyAttentionAttributes const& attributes() const noexcept
    {
        return mAttrs;
    }

private:
    //! Kernel parameters of a call with these inputs (q, k, v[, q_positions]); false if their dims do
    //! not fit each other (v like k, q_positions (B, Nq)) or the attributes.
    bool makeParams(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, NearbyAttentionParams& p) const noexcept;

    NearbyAttentionAttributes mAttrs;
    int32_t mNbInputs{3}; //!< 4 with q_positions
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

class NearbyAttention3DPluginCreator : public nvinfer1::IPluginCreatorV3One
{
public:
    NearbyAttention3DPluginCreator();
    ~NearbyAttention3DPluginCreator() override = default;

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;

    //! Attributes from a field collection; nullptr on success, else a message.
    static char const* parseFields(nvinfer1::PluginFieldCollection const* fc, NearbyAttentionAttributes& attrs) noexcept;

private:
    std::vector<nvinfer1::PluginField> mFieldNames;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

} // namespace nuwa

//! Exported for IPluginRegistry::loadLibrary / trtexec --dynamicPlugins (TensorRT >= 10).
extern "C" __attribute__((visibility("default"))) nvinfer1::IPluginCreatorInterface* const* getCreators(
    int32_t& nbCreators);
extern "C" __attribute__((visibility("default"))) void setLoggerFinder(nvinfer1::ILoggerFinder* finder);
