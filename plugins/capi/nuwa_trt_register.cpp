/*
 * nuwa_trt_register.cpp — libnuwa_trt_register.so: static registration of the TensorRT plugin.
 *
 * The effect of REGISTER_TENSORRT_PLUGIN, kept out of libnuwa_plugins.so (a TensorRT *dynamic* plugin
 * library, loaded by IPluginRegistry::loadLibrary, which must not see registry calls while it
 * dlopens the library): when this library is loaded by a plain dlopen, its constructor registers
 * nuwa::NearbyAttention3D v1 with the TensorRT registry of the process (idempotent, see
 * nuwa_3dna_register_tensorrt_plugin). For ONNX Runtime's TensorRT EP (trt_extra_plugin_lib_paths),
 * trtexec --staticPlugins and polygraphy --plugins, loaded after TensorRT. Do not pass it to
 * loadLibrary / trtexec --dynamicPlugins: pass libnuwa_plugins.so there.
 */
#include "nuwa_plugins.h"

namespace
{

struct StaticRegistrar
{
    StaticRegistrar() noexcept
    {
        nuwa_3dna_register_tensorrt_plugin(); // 0 without TensorRT in the process: nothing to do
    }
};

StaticRegistrar const gStaticRegistrar;

} // namespace
