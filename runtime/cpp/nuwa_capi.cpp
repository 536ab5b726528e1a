// The C boundary (include/nuwa/nuwa.h): every entry point catches everything, turns it into a
// nuwa_status and this thread's nuwa_last_error() message. No exception crosses it.
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstring>
#include <exception>
#include <future>
#include <new>
#include <string>
#include <utility>

#include "capi_guard.hpp"
#include "execution_providers.hpp"
#include "frame_handoff.hpp"
#include "nuwa/nuwa.h"
#include "nuwa_error.hpp"
#include "runtime_model.hpp"
#include "sampling_random.hpp"
#include "task_request.hpp"
#include "token_walk.hpp"

#ifndef NUWA_RUNTIME_VERSION
#define NUWA_RUNTIME_VERSION "0.0.0"
#endif

namespace {

using nuwa::capi::Cancelled;
using nuwa::capi::guarded;
using nuwa::capi::last_error;
using nuwa::capi::last_warnings;
using nuwa::capi::require;
thread_local nuwa_generate_stats last_stats{};  // nuwa_last_generate_stats

// The ORT runs of a piece of work kept apart from the rest of its thread's, into `out` (the work
// may run on a thread of its own: the decode loop, the unconditional rows' encoder).
struct ClockApart {
  nuwa::ort::RunClock& out;
  nuwa::ort::RunClock saved = nuwa::ort::run_clock();
  explicit ClockApart(nuwa::ort::RunClock& out_) : out(out_) { nuwa::ort::run_clock() = {}; }
  ~ClockApart() {
    out = nuwa::ort::run_clock();
    nuwa::ort::run_clock() = saved;
  }
};

// Adds runs kept apart into this thread's clock when it goes out of scope (the work ended).
struct AddRuns {
  const nuwa::ort::RunClock& apart;
  explicit AddRuns(const nuwa::ort::RunClock& apart_) : apart(apart_) {}
  ~AddRuns() {
    nuwa::ort::RunClock& c = nuwa::ort::run_clock();
    c.runs += apart.runs, c.step_runs += apart.step_runs;
    c.seconds += apart.seconds, c.step_seconds += apart.step_seconds;
  }
};

// {first(), second()}: second() on a thread of its own meanwhile where this thread may use a
// second core, else in turn. Both have ended when this returns or throws (first()'s error
// first); second()'s ORT runs are counted into this thread's clock.
template <typename T, typename F, typename G>
std::pair<T, T> side_by_side(F first, G second) {
  if (nuwa::usable_cores() < 2) {
    T a = first();
    return {std::move(a), second()};
  }
  nuwa::ort::RunClock apart;
  AddRuns add(apart);  // after `later` below has waited for its thread
  std::future<T> later = std::async(std::launch::async, [&] {
    ClockApart clock(apart);
    return second();
  });
  T a = first();
  return {std::move(a), later.get()};
}

nuwa::TaskRequest check(const nuwa::Model& model, const nuwa_request& request) {
  nuwa::TaskRequest r =
      nuwa::check_request(model.manifest(), model.input_rules(), model.generation_config(), request);
  for (const auto& w : r.warnings) last_warnings += (last_warnings.empty() ? "" : "\n") + w;
  return r;
}

// The conditional rows' cross K/V, then the unconditional rows' under guidance (concat_conditions).
std::vector<nuwa::ort::HostTensor> encode_conditions(nuwa::Model& mod, const nuwa::TaskRequest& r) {
  auto encode = [&](const std::vector<int64_t>& x) {
    return r.sketch ? mod.encode_sketch(x, r.rows, r.sketch_frames) : mod.encode_text(x, r.rows);
  };
  if (!r.guided) return encode(r.condition);
  // the two encoders' runs side by side where a second core can take one (the same runs, so the
  // same K/V as one after the other)
  using Tensors = std::vector<nuwa::ort::HostTensor>;
  std::pair<Tensors, Tensors> encoded = side_by_side<Tensors>(
      [&] { return encode(r.condition); }, [&] { return encode(r.uncondition); });
  Tensors cross = std::move(encoded.first);
  const Tensors& uncond = encoded.second;
  for (size_t k = 0; k < cross.size(); ++k) {
    std::vector<int64_t> shape = cross[k].shape;
    shape[0] *= 2;
    nuwa::ort::HostTensor both(shape, cross[k].type);
    std::memcpy(both.bytes.data(), cross[k].bytes.data(), cross[k].bytes.size());
    std::memcpy(both.bytes.data() + cross[k].bytes.size(), uncond[k].bytes.data(), uncond[k].bytes.size());
    cross[k] = std::move(both);
  }
  return cross;
}

// tasks.py encode_request: the source frames' codes forced where marked, in every row.
nuwa::ForcedTokens forced_tokens(nuwa::Model& mod, const nuwa::TaskRequest& r) {
  nuwa::ForcedTokens f;
  if (r.source_frames == 0) return f;
  std::vector<int64_t> codes = mod.encode_frames(r.source, r.source_frames);
  const size_t n = static_cast<size_t>(r.num_frames) * mod.manifest().tokens_per_frame();
  f.known.assign(static_cast<size_t>(r.rows) * n, 0);
  f.mask.assign(static_cast<size_t>(r.rows) * n, 0);
  for (int b = 0; b < r.rows; ++b) {
    std::copy(codes.begin(), codes.end(), f.known.begin() + b * n);
    std::copy(r.forced.begin(), r.forced.end(), f.mask.begin() + b * n);
  }
  return f;
}

nuwa::SamplingRule sampling_rule(const nuwa::SamplingValues& v) {
  nuwa::SamplingRule rule;
  rule.temperature = v.temperature;
  rule.top_k = v.top_k.value_or(0);
  rule.top_p = v.top_p.value_or(1.0);
  return rule;
}

nuwa_output_shape shape_of(const nuwa::Manifest& m, const nuwa::TaskRequest& r) {
  nuwa_output_shape s{};
  s.struct_size = sizeof(s);
  s.rows = r.rows;
  s.frames = r.num_frames;
  s.image_size = m.config.image_size;
  s.grid_h = m.decoder.grid_h;
  s.grid_w = m.decoder.grid_w;
  s.frame_bytes = static_cast<size_t>(s.rows) * s.frames * s.image_size * s.image_size * 3;
  s.token_count = static_cast<size_t>(s.rows) * s.frames * s.grid_h * s.grid_w;
  return s;
}

nuwa_status generate_body(nuwa_model* model, const nuwa_request* request, uint8_t* frames,
                          size_t frames_size, int64_t* tokens, size_t tokens_count,
                          nuwa_frame_callback callback, void* user_data);

}  // namespace

extern "C" {

NUWA_API const char* nuwa_version(void) { return NUWA_RUNTIME_VERSION; }

NUWA_API int nuwa_abi_version(void) { return NUWA_ABI_VERSION; }

NUWA_API const char* nuwa_last_error(void) { return last_error.c_str(); }

NUWA_API const char* nuwa_last_warnings(void) { return last_warnings.c_str(); }

NUWA_API void nuwa_open_options_init(nuwa_open_options* options) {
  if (options == nullptr) return;
  std::memset(options, 0, sizeof(*options));
  options->struct_size = sizeof(*options);
}

NUWA_API nuwa_status nuwa_open(const char* export_dir, const nuwa_open_options* options,
                               nuwa_model** out) {
  return guarded([&] {
    require(out != nullptr, "nuwa_open: out must not be NULL");
    *out = nullptr;
    require(export_dir != nullptr, "model_dir must be a str or Path (or None), got NoneType");
    int threads = 0;
    nuwa::DeviceChoice choice;
    if (options != nullptr) {
      // the ABI-2 size (struct_size, threads) still opens; a field past struct_size is not read
      auto covers = [&](size_t offset) { return options->struct_size >= offset + sizeof(const char*); };
      require(options->struct_size >= offsetof(nuwa_open_options, device),
              "nuwa_open_options.struct_size is too small: call nuwa_open_options_init() first");
      require(options->threads >= 0, "threads must be >= 0 (0: ONNX Runtime's default)");
      threads = options->threads;
      choice = nuwa::parse_device(covers(offsetof(nuwa_open_options, device)) ? options->device : nullptr);
      const char* plugin =
          covers(offsetof(nuwa_open_options, trt_plugin_library)) ? options->trt_plugin_library : nullptr;
      const char* cache = covers(offsetof(nuwa_open_options, trt_cache_dir)) ? options->trt_cache_dir : nullptr;
      if (plugin != nullptr) choice.plugin_library = plugin;
      if (cache != nullptr) choice.cache_dir = cache;
    }
    nuwa::check_providers(choice);  // before the directory is read
    *out = new nuwa_model(export_dir, threads, std::move(choice));
  });
}

NUWA_API void nuwa_close(nuwa_model* model) { delete model; }

NUWA_API nuwa_status nuwa_model_get_info(const nuwa_model* model, nuwa_model_info* info) {
  return guarded([&] {
    require(model != nullptr && info != nullptr, "nuwa_model_get_info: model and info must not be NULL");
    require(info->struct_size >= sizeof(nuwa_model_info),
            "nuwa_model_info.struct_size must be sizeof(nuwa_model_info)");
    const nuwa::Manifest& m = model->model.manifest();
    info->image_size = m.config.image_size;
    info->frames = m.decoder.frames;
    info->grid_h = m.decoder.grid_h;
    info->grid_w = m.decoder.grid_w;
    info->vocab_size = m.decoder.vocab_size;
    info->max_prompt_bytes = m.config.max_text_len - 1;
  });
}

NUWA_API void nuwa_request_init(nuwa_request* request) {
  if (request == nullptr) return;
  std::memset(request, 0, sizeof(*request));
  request->struct_size = sizeof(*request);
  request->task = "t2i";
  request->batch = 1;
  request->set_options = 0;  // every sampling option: the model's default
  request->temperature = 0.0;
  request->guidance_scale = 1.0;
  request->top_p = 1.0;
}

NUWA_API nuwa_status nuwa_request_shape(const nuwa_model* model, const nuwa_request* request,
                                        nuwa_output_shape* shape) {
  last_warnings.clear();
  return guarded([&] {
    require(model != nullptr && request != nullptr && shape != nullptr,
            "nuwa_request_shape: model, request and shape must not be NULL");
    const nuwa::Manifest& m = model->model.manifest();
    *shape = shape_of(m, check(model->model, *request));
  });
}

NUWA_API nuwa_status nuwa_last_generate_stats(nuwa_generate_stats* stats) {
  return guarded([&] {
    require(stats != nullptr, "nuwa_last_generate_stats: stats must not be NULL");
    require(stats->struct_size >= sizeof(nuwa_generate_stats),
            "nuwa_generate_stats.struct_size must be sizeof(nuwa_generate_stats)");
    *stats = last_stats;
    stats->struct_size = sizeof(nuwa_generate_stats);
  });
}

NUWA_API nuwa_status nuwa_generate(nuwa_model* model, const nuwa_request* request,
                                   uint8_t* frames, size_t frames_size, int64_t* tokens,
                                   size_t tokens_count, nuwa_frame_callback callback,
                                   void* user_data) {
  nuwa::ort::run_clock() = {};
  const double start = nuwa::ort::now_seconds();
  nuwa_status status = generate_body(model, request, frames, frames_size, tokens, tokens_count,
                                     callback, user_data);
  const nuwa::ort::RunClock& clock = nuwa::ort::run_clock();
  last_stats = {sizeof(nuwa_generate_stats), nuwa::ort::now_seconds() - start, clock.seconds,
                clock.step_seconds, clock.runs, clock.step_runs};
  return status;
}

}  // extern "C"

namespace {

nuwa_status generate_body(nuwa_model* model, const nuwa_request* request, uint8_t* frames,
                          size_t frames_size, int64_t* tokens, size_t tokens_count,
                          nuwa_frame_callback callback, void* user_data) {
  last_warnings.clear();
  return guarded([&] {
    require(model != nullptr && request != nullptr, "nuwa_generate: model and request must not be NULL");
    nuwa::Model& mod = model->model;
    const nuwa::Manifest& m = mod.manifest();
    nuwa::TaskRequest r = check(mod, *request);
    nuwa_output_shape s = shape_of(m, r);
    if (frames == nullptr || frames_size < s.frame_bytes) {
      nuwa::input_error("the frames buffer holds " + std::to_string(frames == nullptr ? 0 : frames_size) +
                        " bytes; this request needs " + std::to_string(s.frame_bytes) +
                        " (rows x frames x S x S x 3: nuwa_request_shape)");
    }
    if (tokens != nullptr && tokens_count < s.token_count) {
      nuwa::input_error("the tokens buffer holds " + std::to_string(tokens_count) +
                        " values; this request needs " + std::to_string(s.token_count));
    }
    std::vector<nuwa::ort::HostTensor> cross = encode_conditions(mod, r);
    nuwa::ForcedTokens forced = forced_tokens(mod, r);
    const int64_t per_frame = m.tokens_per_frame();
    const int64_t total = per_frame * r.num_frames;
    const size_t frame_pixels = static_cast<size_t>(s.image_size) * s.image_size * 3;
    std::vector<uint8_t> pixels, one(static_cast<size_t>(r.rows) * frame_pixels);
    // frames [first, end) decoded in one VQ-GAN run, row-major (FrameDecoder.update); on this thread
    auto decode = [&](const nuwa::FinishedFrames& done) {
      const int n = done.end - done.first;
      pixels.resize(static_cast<size_t>(r.rows) * n * frame_pixels);
      mod.decode_frames(done.codes, r.rows * n, pixels.data());
      for (int b = 0; b < r.rows; ++b) {
        std::memcpy(frames + (static_cast<size_t>(b) * r.num_frames + done.first) * frame_pixels,
                    pixels.data() + static_cast<size_t>(b) * n * frame_pixels, n * frame_pixels);
      }
      for (int f = done.first; f < done.end && callback != nullptr; ++f) {
        for (int b = 0; b < r.rows; ++b) {
          std::memcpy(one.data() + b * frame_pixels,
                      frames + (static_cast<size_t>(b) * r.num_frames + f) * frame_pixels, frame_pixels);
        }
        if (callback(user_data, f, one.data(), r.rows, s.image_size) != 0) throw Cancelled{};
      }
    };
    std::string condition = r.sketch ? "sketch_t" + std::to_string(r.sketch_frames) : "text";
    nuwa::TokenSampler sampler(sampling_rule(r.sampling), r.seed ? *r.seed : nuwa::fresh_seed(),
                               m.decoder.vocab_size);
    nuwa::ort::RunClock loop_clock;  // the decode loop's ORT runs, on whichever thread ran it
    auto loop = [&](const nuwa::FrameSink& finished, const std::atomic<bool>& stop) {
      ClockApart clock(loop_clock);
      // the finished frames' codes (rows, n, h, w), copied for the decoding thread
      auto frame_done = [&](int first, int end, const std::vector<int64_t>& grid) {
        const int n = end - first;
        nuwa::FinishedFrames done{first, end, std::vector<int64_t>(static_cast<size_t>(r.rows) * n * per_frame)};
        for (int b = 0; b < r.rows; ++b) {
          std::memcpy(done.codes.data() + static_cast<size_t>(b) * n * per_frame,
                      grid.data() + b * total + first * per_frame, n * per_frame * sizeof(int64_t));
        }
        finished(std::move(done));
      };
      return nuwa::decode_tokens(mod, condition, r.rows, r.num_frames, std::move(cross),
                                 r.guided ? r.sampling.guidance_scale : 1.0, sampler, forced,
                                 frame_done, &stop);
    };
    AddRuns add(loop_clock);  // into this thread's, however the call ends
    std::vector<int64_t> out =
        nuwa::usable_cores() > 1 ? nuwa::overlapped(loop, decode) : nuwa::in_turn(loop, decode);
    if (tokens != nullptr) std::memcpy(tokens, out.data(), out.size() * sizeof(int64_t));
  });
}

}  // namespace
