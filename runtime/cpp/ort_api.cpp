#include "ort_api.hpp"

#include <chrono>
#include <cstring>
#include <mutex>

#include "nuwa_error.hpp"

namespace nuwa::ort {

const OrtApi& api() {
  static const OrtApi* table = [] {
    const OrtApi* t = OrtGetApiBase()->GetApi(ORT_API_VERSION);
    if (t == nullptr) {
      throw Error(NUWA_ERROR_BACKEND,
                  std::string("the ONNX Runtime library loaded (") +
                      OrtGetApiBase()->GetVersionString() + ") does not serve ORT_API_VERSION " +
                      std::to_string(ORT_API_VERSION) + "; use ONNX Runtime >= 1." +
                      std::to_string(ORT_API_VERSION));
    }
    return t;
  }();
  return *table;
}

void check(OrtStatus* status, const char* what) {
  if (status == nullptr) return;
  std::string message = api().GetErrorMessage(status);
  api().ReleaseStatus(status);
  auto newline = message.find('\n');
  if (newline != std::string::npos) message.resize(newline);
  throw Error(NUWA_ERROR_BACKEND, std::string(what) + ": " + message);
}

OrtEnv* env() {
  static OrtEnv* e = [] {
    OrtEnv* out = nullptr;
    check(api().CreateEnv(ORT_LOGGING_LEVEL_ERROR, "nuwa", &out), "onnxruntime environment");
    return out;  // lives for the process (ORT's own advice: never release the env at exit)
  }();
  return e;
}

const OrtMemoryInfo* cpu_memory() {
  static OrtMemoryInfo* info = [] {
    OrtMemoryInfo* out = nullptr;
    check(api().CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &out), "memory info");
    return out;
  }();
  return info;
}

namespace {
struct OptionsDeleter {
  void operator()(OrtSessionOptions* o) const { api().ReleaseSessionOptions(o); }
};
}  // namespace

RunClock& run_clock() {
  thread_local RunClock clock;
  return clock;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Session make_session(const std::string& path, int threads, bool arena,
                     const std::function<void(OrtSessionOptions*)>& providers) {
  const OrtApi& a = api();
  OrtSessionOptions* raw = nullptr;
  check(a.CreateSessionOptions(&raw), "session options");
  std::unique_ptr<OrtSessionOptions, OptionsDeleter> opts(raw);
  check(a.SetSessionGraphOptimizationLevel(raw, ORT_ENABLE_ALL), "session options");
  if (threads > 0) {
    check(a.SetIntraOpNumThreads(raw, threads), "session options");
    check(a.SetInterOpNumThreads(raw, 1), "session options");
  }
  check(a.SetSessionLogSeverityLevel(raw, 3), "session options");
  check(arena ? a.EnableCpuMemArena(raw) : a.DisableCpuMemArena(raw), "session options");
  check(a.AddSessionConfigEntry(raw, "session.intra_op.allow_spinning", "0"), "session options");
  if (providers) providers(raw);
  OrtSession* session = nullptr;
  OrtStatus* status = a.CreateSession(env(), path.c_str(), raw, &session);
  if (status != nullptr) {
    std::string message = a.GetErrorMessage(status);
    a.ReleaseStatus(status);
    auto newline = message.find('\n');
    if (newline != std::string::npos) message.resize(newline);
    throw Error(NUWA_ERROR_BACKEND, "onnxruntime cannot load " + path + ": " + message);
  }
  return Session(session);
}

ONNXTensorElementDataType element_type(const std::string& dtype) {
  if (dtype == "float32") return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  if (dtype == "float16") return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
  if (dtype == "int64") return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
  if (dtype == "int32") return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32;
  if (dtype == "uint8") return ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
  if (dtype == "bool") return ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL;
  model_error("unsupported tensor dtype " + dtype + " in the manifest");
}

size_t element_size(ONNXTensorElementDataType type) {
  switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT:
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32:
      return 4;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16:
      return 2;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64:
      return 8;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8:
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL:
      return 1;
    default:
      throw Error(NUWA_ERROR_BACKEND, "unsupported tensor element type " + std::to_string(type));
  }
}

Value tensor(void* data, const std::vector<int64_t>& shape, ONNXTensorElementDataType type) {
  size_t count = 1;
  for (int64_t d : shape) count *= static_cast<size_t>(d);
  OrtValue* out = nullptr;
  check(api().CreateTensorWithDataAsOrtValue(cpu_memory(), data, count * element_size(type),
                                             shape.data(), shape.size(), type, &out),
        "tensor");
  return Value(out);
}

HostTensor::HostTensor(std::vector<int64_t> shape_, ONNXTensorElementDataType type_)
    : shape(std::move(shape_)), type(type_) {
  bytes.assign(count() * element_size(type), 0);
}

size_t HostTensor::count() const {
  size_t n = 1;
  for (int64_t d : shape) n *= static_cast<size_t>(d);
  return n;
}

HostTensor to_host(OrtValue* value) {
  const OrtApi& a = api();
  OrtTensorTypeAndShapeInfo* info = nullptr;
  check(a.GetTensorTypeAndShape(value, &info), "output shape");
  size_t dims = 0;
  ONNXTensorElementDataType type;
  OrtStatus* s = a.GetDimensionsCount(info, &dims);
  std::vector<int64_t> shape(dims);
  if (s == nullptr) s = a.GetDimensions(info, shape.data(), dims);
  if (s == nullptr) s = a.GetTensorElementType(info, &type);
  a.ReleaseTensorTypeAndShapeInfo(info);
  check(s, "output shape");
  HostTensor out(shape, type);
  void* data = nullptr;
  check(a.GetTensorMutableData(value, &data), "output data");
  if (!out.bytes.empty()) std::memcpy(out.bytes.data(), data, out.bytes.size());
  return out;
}

std::vector<HostTensor> run(OrtSession* session, const std::vector<std::string>& input_names,
                            const std::vector<OrtValue*>& inputs,
                            const std::vector<std::string>& output_names) {
  std::vector<const char*> in_names, out_names;
  for (const auto& n : input_names) in_names.push_back(n.c_str());
  for (const auto& n : output_names) out_names.push_back(n.c_str());
  std::vector<OrtValue*> outputs(output_names.size(), nullptr);
  const double start = now_seconds();
  OrtStatus* status = api().Run(session, nullptr, in_names.data(), inputs.data(), inputs.size(),
                                out_names.data(), out_names.size(), outputs.data());
  RunClock& clock = run_clock();
  clock.seconds += now_seconds() - start;
  ++clock.runs;
  std::vector<Value> owned;
  for (OrtValue* v : outputs) owned.emplace_back(v);
  check(status, "onnxruntime run");
  std::vector<HostTensor> result;
  for (OrtValue* v : outputs) result.push_back(to_host(v));
  return result;
}

}  // namespace nuwa::ort
