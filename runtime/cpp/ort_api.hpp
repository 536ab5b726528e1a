// ONNX Runtime's C API, the parts the runtime uses, with RAII handles: the OrtApi table, one
// process-wide OrtEnv, sessions made with the Python runtime's options
// (runtime/backends/onnxruntime/sessions.py session_options), and CPU tensors over caller memory.
#pragma once

#include <onnxruntime_c_api.h>

#include <functional>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace nuwa::ort {

const OrtApi& api();
// Throws nuwa::Error(NUWA_ERROR_BACKEND) with ORT's message (prefixed by `what`) if status != NULL.
void check(OrtStatus* status, const char* what);
OrtEnv* env();
const OrtMemoryInfo* cpu_memory();

struct SessionDeleter {
  void operator()(OrtSession* s) const { api().ReleaseSession(s); }
};
struct ValueDeleter {
  void operator()(OrtValue* v) const { api().ReleaseValue(v); }
};
struct BindingDeleter {
  void operator()(OrtIoBinding* b) const { api().ReleaseIoBinding(b); }
};
using Session = std::unique_ptr<OrtSession, SessionDeleter>;
using Value = std::unique_ptr<OrtValue, ValueDeleter>;
using Binding = std::unique_ptr<OrtIoBinding, BindingDeleter>;

// A session of one graph file: `threads` intra-op threads (0: ORT's default), every graph
// optimization, the CPU memory arena only where `arena` (the decoder steps), no spinning;
// `providers` appends the execution providers (none: the CPU).
Session make_session(const std::string& path, int threads, bool arena,
                     const std::function<void(OrtSessionOptions*)>& providers = {});

// A tensor element type from the manifest's dtype name (float32, float16, int64, ...).
ONNXTensorElementDataType element_type(const std::string& dtype);
size_t element_size(ONNXTensorElementDataType type);

// A CPU tensor over `data` (not owned: it must outlive the value).
Value tensor(void* data, const std::vector<int64_t>& shape, ONNXTensorElementDataType type);

// An owned host tensor: bytes, shape, element type; `value()` wraps it for ORT.
struct HostTensor {
  std::vector<int64_t> shape;
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  std::vector<uint8_t> bytes;

  HostTensor() = default;
  HostTensor(std::vector<int64_t> shape_, ONNXTensorElementDataType type_);
  size_t count() const;
  size_t row_bytes() const { return shape.empty() || shape[0] == 0 ? 0 : bytes.size() / shape[0]; }
  Value value() { return tensor(bytes.data(), shape, type); }
  template <typename T>
  T* data() { return reinterpret_cast<T*>(bytes.data()); }
  template <typename T>
  const T* data() const { return reinterpret_cast<const T*>(bytes.data()); }
};

// Copy an ORT output (CPU) into a HostTensor.
HostTensor to_host(OrtValue* value);

// This thread's time inside ONNX Runtime's Run calls (nuwa_generate_stats): every run, and the
// decoder steps among them. Reset by nuwa_generate at its start; a steady clock around each call.
struct RunClock {
  int64_t runs = 0, step_runs = 0;
  double seconds = 0.0, step_seconds = 0.0;
};
RunClock& run_clock();
double now_seconds();  // a steady clock

// session.run: named inputs -> the named outputs as host tensors.
std::vector<HostTensor> run(OrtSession* session, const std::vector<std::string>& input_names,
                            const std::vector<OrtValue*>& inputs,
                            const std::vector<std::string>& output_names);

}  // namespace nuwa::ort
