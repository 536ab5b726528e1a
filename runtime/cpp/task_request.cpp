#include "task_request.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "nuwa_error.hpp"
#include "python_text.hpp"
#include "caption_words.hpp"
#include "task_inputs.hpp"
#include "text_tokenizer.hpp"

namespace nuwa {

namespace {

struct TaskRow {
  const char* name;
  const char* title;
  bool video;
  bool guided;
  const char* needs[3];  // spec/tasks.py TaskInfo.needs, in order (nullptr: none more)
};

// spec/tasks.py TASKS, in its order
constexpr TaskRow kTasks[] = {
    {"t2i", "text to image", false, true, {"prompt"}},
    {"s2i", "sketch to image", false, true, {"sketch"}},
    {"i2i", "image completion", false, false, {"image", "mask"}},
    {"ti2i", "text-guided image manipulation", false, true, {"prompt", "image", "mask"}},
    {"t2v", "text to video", true, true, {"prompt"}},
    {"s2v", "sketch to video", true, true, {"sketch"}},
    {"v2v", "video prediction", true, false, {"video"}},
    {"tv2v", "text-guided video manipulation", true, true, {"prompt", "video", "mask"}},
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

// runtime/task_request.py INPUT_HINTS
const char* input_hint(const std::string& name) {
  if (name == "prompt") return "the text";
  if (name == "sketch") return "palette-coloured RGB or class ids";
  if (name == "image") return "an RGB image";
  if (name == "mask") return "the region to generate: x0,y0,x1,y1 in pixels, or a mask picture (white = generate)";
  return "RGB frames";
}

bool needs(const TaskRow& info, const std::string& name) {
  for (const char* n : info.needs) {
    if (n != nullptr && name == n) return true;
  }
  return false;
}

// runtime/task_request.py check_task_inputs
void check_task_inputs(const TaskRow& info, const std::vector<std::pair<std::string, bool>>& given) {
  auto has = [&](const std::string& name) {
    for (const auto& [n, g] : given) {
      if (n == name) return g;
    }
    return false;
  };
  std::string name = info.name;
  if (has("image") && has("video")) input_error("an image and a video were given together: give one of them");
  if (has("mask") && !(has("image") || has("video"))) {
    input_error("a mask was given without an image or a video: the mask marks the region of that "
                "input to generate");
  }
  if (name == "v2v" && has("prompt") && has("video") && !has("mask")) {
    input_error("a prompt with a video and no mask: text-guided video manipulation (tv2v) needs a "
                "mask of the region to change; video prediction (v2v) takes no prompt");
  }
  for (const auto& [input, present] : given) {
    if (present && !needs(info, input)) input_error(name + " (" + info.title + ") takes no " + input);
  }
  for (const char* n : info.needs) {
    if (n != nullptr && !has(n)) {
      input_error(name + " (" + info.title + ") needs a " + n + ": " + input_hint(n));
    }
  }
}

// runtime/request_sampling.py resolve_sampling: the caller's values, the model's defaults for
// the rest, each checked
SamplingValues resolve_sampling(const TaskRow& info, const GenerationConfig& generation,
                                const nuwa_request& r) {
  const unsigned set = r.set_options;
  if ((set & NUWA_SET_TOP_K) && r.top_k < 0) input_error("top_k must be >= 0, got " + std::to_string(r.top_k));
  if (set & NUWA_SET_TEMPERATURE) check_real(r.temperature, "temperature");
  if (set & NUWA_SET_TOP_P) check_real(r.top_p, "top_p");
  if (set & NUWA_SET_GUIDANCE) check_real(r.guidance_scale, "guidance_scale");
  if (!info.guided && (set & NUWA_SET_GUIDANCE) && r.guidance_scale != 1.0) {
    input_error(std::string(info.name) + " (" + info.title +
                ") takes no classifier-free guidance (its condition is the empty prompt); got "
                "guidance_scale " + py_float(r.guidance_scale));
  }
  SamplingValues v = generation.for_task(info.name, info.guided);
  if (set & NUWA_SET_TEMPERATURE) v.temperature = r.temperature;
  if (set & NUWA_SET_GUIDANCE) v.guidance_scale = r.guidance_scale;
  if (set & NUWA_SET_TOP_K) v.top_k = r.top_k;
  if (set & NUWA_SET_TOP_P) v.top_p = r.top_p;
  if (v.top_k && *v.top_k == 0) v.top_k.reset();
  // SamplingOptions.validate
  if (!(v.temperature >= 0)) input_error("temperature must be >= 0, got " + py_float(v.temperature));
  if (v.top_p && !(*v.top_p > 0.0 && *v.top_p <= 1.0)) input_error("top-p must be in (0, 1], got " + py_float(*v.top_p));
  if (!(v.guidance_scale >= 0)) input_error("guidance scale must be >= 0, got " + py_float(v.guidance_scale));
  return v;
}

}  // namespace

TaskRequest check_request(const Manifest& manifest, const InputRules& rules,
                          const GenerationConfig& generation, const nuwa_request& r) {
  if (r.struct_size < sizeof(nuwa_request)) {
    input_error("nuwa_request.struct_size is " + std::to_string(r.struct_size) +
                ": call nuwa_request_init() first");
  }
  const TaskRow& info = task_info(r.task);
  const std::string name = info.name;
  TaskRequest out;
  out.task = name;
  out.video = info.video;
  out.sampling = resolve_sampling(info, generation, r);
  if (r.set_options & NUWA_SET_SEED) out.seed = r.seed;
  const bool guidance = out.sampling.guidance_scale != 1.0;  // options.uses_guidance
  // runtime/task_request.py check_task_request
  if (r.batch < 1) input_error("batch must be >= 1, got " + std::to_string(r.batch));
  if (r.num_frames < 0) input_error("num_frames must be >= 1, got " + std::to_string(r.num_frames));
  if (!info.video && r.num_frames > 1) {
    input_error(name + " makes one image; num-frames must be 1, not " + std::to_string(r.num_frames));
  }
  const bool has_prompt = r.prompts != nullptr && !(r.num_prompts == 1 && r.prompts[0] == nullptr);
  const bool has_video = r.video.data != nullptr;
  check_task_inputs(info, {{"prompt", has_prompt},
                           {"sketch", r.sketch.data != nullptr},
                           {"image", r.image.data != nullptr},
                           {"mask", mask_given(r.mask)},
                           {"video", has_video}});
  std::vector<std::string> prompts;
  for (size_t i = 0; has_prompt && i < r.num_prompts; ++i) {
    std::string what = r.num_prompts == 1 ? "the prompt" : "prompt[" + std::to_string(i) + "]";
    if (r.prompts[i] == nullptr) input_error(what + " must be a string, got NoneType");
    check_utf8(r.prompts[i], what);
    prompts.push_back(r.prompts[i]);
  }
  const int batch = r.batch;
  const long long size_rows = (has_prompt && (name == "t2i" || name == "t2v")) ? static_cast<long long>(prompts.size()) : 1;
  int frames;
  if (!info.video) {
    frames = 1;
  } else if (name == "tv2v" && has_video) {
    frames = std::min(r.num_frames > 0 ? r.num_frames : r.video.frames, r.video.frames);
  } else {
    frames = r.num_frames > 0 ? r.num_frames : manifest.config.frames;
  }
  check_request_size(manifest, size_rows, batch, frames, guidance);
  const int length = manifest.config.max_text_len;
  std::vector<std::vector<int64_t>> ids;
  if (has_prompt) {
    if (prompts.empty()) input_error("the prompt is empty");
    for (const auto& prompt : prompts) ids.push_back(encode_prompt(prompt, length, false));
    std::vector<std::string> seen;  // warn_unknown_words: one warning per distinct prompt
    for (size_t i = 0; i < prompts.size() && rules.has_caption; ++i) {
      if (std::find(seen.begin(), seen.end(), prompts[i]) != seen.end()) continue;
      seen.push_back(prompts[i]);
      std::string message = unknown_words_message(normalise(prompts[i]), rules.caption_words);
      if (!message.empty()) out.warnings.push_back(message);
    }
  }
  out.guided = guidance && info.guided;
  const std::vector<int64_t> empty_ids = encode_prompt("", length, true);
  const int size = manifest.config.image_size;
  const int h = manifest.decoder.grid_h, w = manifest.decoder.grid_w;

  if (name == "s2i" || name == "s2v") {
    int given = 0;
    std::vector<int64_t> maps = sketch_class_maps(r.sketch, info.video, rules.sketch,
                                                  manifest.config.sketch_classes, &given,
                                                  &out.warnings);
    out.num_frames = !info.video ? 1 : (r.num_frames > 0 ? r.num_frames : manifest.config.frames);
    out.sketch = true;
    out.sketch_frames = std::min(out.num_frames, manifest.config.sketch_frames);
    maps = spread_frames(maps, given, out.sketch_frames, rules.sketch.size);
    out.rows = batch;
    for (int b = 0; b < batch; ++b) out.condition.insert(out.condition.end(), maps.begin(), maps.end());
    if (out.guided) out.uncondition.assign(out.condition.size(), 0);  // the blank sketch
    return out;
  }
  // forced_outside: the region outside the mask, the same in every frame, is forced
  auto forced_outside = [&](Frames& f, const char* what) {
    int mh = 0, mw = 0;
    std::vector<uint8_t> pixels = pixel_mask(r.mask, f.height, f.width, rules.frame_size,
                                             rules.mask_threshold, &mh, &mw, &out.warnings);
    std::vector<uint8_t> generate = token_mask(pixels, mh, mw, h, w);
    fit_frames(f, what, size, rules.resize_filter, &out.warnings);
    for (int t = 0; t < f.frames; ++t) {
      for (uint8_t g : generate) out.forced.push_back(g ? 0 : 1);
    }
  };
  if (name == "t2i" || name == "t2v") {
    out.num_frames = !info.video ? 1 : (r.num_frames > 0 ? r.num_frames : manifest.config.frames);
    for (const auto& row : ids) {
      for (int k = 0; k < batch; ++k) out.condition.insert(out.condition.end(), row.begin(), row.end());
    }
  } else if (name == "i2i" || name == "ti2i") {
    out.num_frames = 1;
    Frames f = read_frames(r.image, "image", false);
    forced_outside(f, "image");
    out.source = std::move(f.pixels);
    out.source_frames = 1;
    for (int k = 0; k < batch && name == "i2i"; ++k) {  // ti2i: its prompts, below
      out.condition.insert(out.condition.end(), empty_ids.begin(), empty_ids.end());
    }
  } else if (name == "v2v") {
    Frames f = read_frames(r.video, "video", true);
    fit_frames(f, "video", size, rules.resize_filter, &out.warnings);
    out.num_frames = r.num_frames > 0 ? r.num_frames : manifest.config.frames;
    if (out.num_frames <= f.frames) {
      input_error("video prediction continues the given " + std::to_string(f.frames) +
                  " frame(s); num-frames (" + std::to_string(out.num_frames) + ") must be larger");
    }
    out.forced.assign(static_cast<size_t>(f.frames) * h * w, 1);
    out.source = std::move(f.pixels);
    out.source_frames = f.frames;
    for (int k = 0; k < batch; ++k) out.condition.insert(out.condition.end(), empty_ids.begin(), empty_ids.end());
  } else {  // tv2v
    nuwa_pixels video = r.video;
    if (r.num_frames > 0) {
      if (video.format == NUWA_PIXELS_RGB && video.frames > 0 && r.num_frames > video.frames) {
        input_error("the video has " + std::to_string(video.frames) + " frames; num-frames (" +
                    std::to_string(r.num_frames) + ") can be at most that for manipulation");
      }
      video.frames = std::min(video.frames, r.num_frames);
    }
    Frames f = read_frames(video, "video", true);
    out.num_frames = f.frames;
    forced_outside(f, "video");
    out.source = std::move(f.pixels);
    out.source_frames = f.frames;
  }
  if (name == "ti2i" || name == "tv2v") {  // batch-major: np.concatenate([ids] * batch)
    for (int k = 0; k < batch; ++k) {
      for (const auto& row : ids) out.condition.insert(out.condition.end(), row.begin(), row.end());
    }
  }
  out.rows = static_cast<int>(out.condition.size() / length);
  if (out.guided) {
    for (int k = 0; k < out.rows; ++k) out.uncondition.insert(out.uncondition.end(), empty_ids.begin(), empty_ids.end());
  }
  return out;
}

}  // namespace nuwa
