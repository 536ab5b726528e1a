#include "task_request.hpp"

#include <cmath>
#include <cstdio>

#include "nuwa_error.hpp"
#include "python_text.hpp"
#include "text_tokenizer.hpp"

namespace nuwa {

namespace {

struct TaskRow {
  const char* name;
  const char* title;
  bool video;
  bool guided;
};

// spec/tasks.py TASKS, in its order
constexpr TaskRow kTasks[] = {
    {"t2i", "text to image", false, true},
    {"s2i", "sketch to image", false, true},
    {"i2i", "image completion", false, false},
    {"ti2i", "text-guided image manipulation", false, true},
    {"t2v", "text to video", true, true},
    {"s2v", "sketch to video", true, true},
    {"v2v", "video prediction", true, false},
    {"tv2v", "text-guided video manipulation", true, true},
};

const TaskRow& task_info(const char* task) {
  if (task == nullptr) input_error("task must be a string (t2i ... tv2v), got NoneType");
  std::string lower(task);
  for (char& c : lower) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  for (const auto& row : kTasks) {
    if (lower == row.name) return row;
  }
  std::string names;
  for (const auto& row : kTasks) names += std::string(names.empty() ? "" : ", ") + row.name;
  input_error("unknown task " + py_repr(task) + "; choose one of: " + names);
}

void check_real(double value, const char* name) {
  if (!std::isfinite(value)) {
    input_error(std::string(name) + " must be a finite number, got " + py_float(value));
  }
}

std::string gib(double n) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", n / static_cast<double>(1ULL << 30));
  return buf;
}

// runtime/limits.py
constexpr long long kMaxRequestBytes = 2LL << 30;
constexpr long long kCacheItemBytes = 4;

long long row_bytes(const Manifest& m, long long frames, bool guided) {
  const DecoderSpec& d = m.decoder;
  long long per = static_cast<long long>(d.num_layers) * 2 * d.num_heads * d.head_dim * kCacheItemBytes;
  long long ring = d.cache_slots * per;
  long long cond_len = std::max<long long>(m.config.max_text_len,
                                           static_cast<long long>(m.config.sketch_frames) * m.tokens_per_frame());
  long long cross = cond_len * per;
  long long caches = 2 * (ring + cross) * (guided ? 2 : 1);
  long long tokens = frames * m.tokens_per_frame();
  long long layout = tokens * (8 + 1 + 8);
  long long pixels = frames * m.config.image_size * m.config.image_size * 3;
  return caches + layout + pixels;
}

void check_request_size(const Manifest& m, long long prompts, long long batch, long long frames,
                        bool guided) {
  long long rows = prompts * batch;
  long long need = rows * row_bytes(m, frames, guided);
  if (need <= kMaxRequestBytes) return;
  long long fixed = row_bytes(m, 0, guided);
  long long per_frame = row_bytes(m, 1, guided) - fixed;
  long long max_frames = std::max(0LL, (kMaxRequestBytes / rows - fixed) / per_frame);
  long long max_batch = kMaxRequestBytes / (prompts * row_bytes(m, frames, guided));
  std::vector<std::string> fits;
  if (max_frames >= 1) fits.push_back(std::to_string(max_frames) + " frames at batch " + std::to_string(batch));
  if (max_batch >= 1) fits.push_back("batch " + std::to_string(max_batch) + " at " + std::to_string(frames) + " frames");
  std::string advice;
  if (fits.empty()) {
    advice = "fewer than " + std::to_string(prompts) + " prompts";
  } else {
    advice = "at most " + fits[0] + (fits.size() > 1 ? " or " + fits[1] : "");
  }
  std::string of_prompts = prompts > 1 ? " for each of " + std::to_string(prompts) + " prompts" : "";
  input_error("num-frames " + std::to_string(frames) + " with batch " + std::to_string(batch) +
              of_prompts + " needs about " + gib(static_cast<double>(need)) + "; a request may use " +
              gib(static_cast<double>(kMaxRequestBytes)) +
              " (nuwa.runtime.limits.MAX_REQUEST_BYTES: KV caches, tokens and frames): " + advice);
}

}  // namespace

TaskRequest check_request(const Manifest& manifest, const nuwa_request& r) {
  if (r.struct_size < sizeof(nuwa_request)) {
    input_error("nuwa_request.struct_size is " + std::to_string(r.struct_size) +
                ": call nuwa_request_init() first");
  }
  const TaskRow& info = task_info(r.task);
  // runtime/request_sampling.py resolve_sampling
  check_real(r.temperature, "temperature");
  check_real(r.guidance_scale, "guidance_scale");
  if (!info.guided && r.guidance_scale != 1.0) {
    input_error(std::string(info.name) + " (" + info.title +
                ") takes no classifier-free guidance (its condition is the empty prompt); got "
                "guidance_scale " + py_float(r.guidance_scale));
  }
  if (!(r.temperature >= 0)) input_error("temperature must be >= 0, got " + py_float(r.temperature));
  if (!(r.guidance_scale >= 0)) {
    input_error("guidance scale must be >= 0, got " + py_float(r.guidance_scale));
  }
  if (r.temperature != 0.0) {
    input_error("temperature " + py_float(r.temperature) +
                ": this version of the C runtime decodes greedily only (temperature 0); sampling "
                "waits for the portable random generator (issue 39)");
  }
  std::string name = info.name;
  if (name != "t2i" && name != "t2v") {
    input_error(name + " (" + info.title + ") is not in this version of the C runtime yet: it "
                "runs t2i and t2v");
  }
  // runtime/task_request.py check_task_request
  if (r.batch < 1) input_error("batch must be >= 1, got " + std::to_string(r.batch));
  if (r.num_frames < 0) input_error("num_frames must be >= 1, got " + std::to_string(r.num_frames));
  if (!info.video && r.num_frames > 1) {
    input_error(name + " makes one image; num-frames must be 1, not " + std::to_string(r.num_frames));
  }
  if (r.prompts == nullptr || (r.num_prompts == 1 && r.prompts[0] == nullptr)) {
    input_error(name + " (" + info.title + ") needs a prompt: the text");
  }
  std::vector<std::string> prompts;
  for (size_t i = 0; i < r.num_prompts; ++i) {
    std::string what = r.num_prompts == 1 ? "the prompt" : "prompt[" + std::to_string(i) + "]";
    if (r.prompts[i] == nullptr) input_error(what + " must be a string, got NoneType");
    std::string text = r.prompts[i];
    long bad = utf8_error_at(text);
    if (bad >= 0) {
      char byte[8];
      std::snprintf(byte, sizeof byte, "0x%02x", static_cast<unsigned char>(text[bad]));
      input_error(what + " is not valid UTF-8: byte " + byte + " at position " + std::to_string(bad));
    }
    prompts.push_back(text);
  }
  TaskRequest out;
  out.task = name;
  out.video = info.video;
  out.guidance_scale = r.guidance_scale;
  out.guided = r.guidance_scale != 1.0;
  out.num_frames = !info.video ? 1 : (r.num_frames > 0 ? r.num_frames : manifest.config.frames);
  check_request_size(manifest, static_cast<long long>(prompts.size()), r.batch, out.num_frames,
                     out.guided);
  if (prompts.empty()) input_error("the prompt is empty");
  int length = manifest.config.max_text_len;
  std::vector<std::vector<int64_t>> ids;
  for (size_t i = 0; i < prompts.size(); ++i) {
    std::string what = r.num_prompts == 1 ? "the prompt" : "prompt[" + std::to_string(i) + "]";
    ids.push_back(encode_prompt(prompts[i], length, false, what));
  }
  out.rows = static_cast<int>(prompts.size()) * r.batch;
  for (const auto& row : ids) {
    for (int k = 0; k < r.batch; ++k) out.condition.insert(out.condition.end(), row.begin(), row.end());
  }
  if (out.guided) {
    std::vector<int64_t> empty = encode_prompt("", length, true, "the prompt");
    for (int k = 0; k < out.rows; ++k) out.uncondition.insert(out.uncondition.end(), empty.begin(), empty.end());
  }
  return out;
}

}  // namespace nuwa
