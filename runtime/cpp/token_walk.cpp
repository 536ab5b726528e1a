#include "token_walk.hpp"

#include "nuwa_error.hpp"

namespace nuwa {

StepBindings::StepBindings(Model& model, const std::string& condition, int num_frames, int rows,
                           std::vector<ort::HostTensor> cross)
    : model_(model),
      condition_(condition),
      decoder_(model.manifest().decoder),
      rows_(rows),
      cross_(std::move(cross)) {
  const Manifest& m = model.manifest();
  const GraphSpec& graph = m.decoder_step(condition, num_frames);
  GraphSession gs = model.session(graph.name);
  session_ = gs.session;
  in_place_ = gs.prepared_cpu;
  auto type = [&](const std::string& name) { return ort::element_type(graph.tensor(name).dtype); };
  if (type(decoder_.logits) != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) {
    model_error(graph.name + ": the C runtime reads float32 logits");
  }
  ids_ = ort::HostTensor({rows}, type(decoder_.input_ids));
  positions_ = ort::HostTensor({rows}, type(decoder_.positions));
  if (ids_.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 ||
      positions_.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64) {
    model_error(graph.name + ": the C runtime feeds int64 input_ids and positions");
  }
  logits_ = ort::HostTensor({rows, decoder_.vocab_size}, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT);
  auto cache_type = type(decoder_.past.at(0));
  std::vector<int64_t> shape = {rows, decoder_.num_heads, decoder_.cache_slots, decoder_.head_dim};
  cache_.resize(in_place_ ? 1 : 2);
  for (auto& set : cache_) {
    for (size_t k = 0; k < decoder_.past.size(); ++k) set.emplace_back(shape, cache_type);  // zeroed
  }
  bindings_.push_back(bind(0));
  if (!in_place_) bindings_.push_back(bind(1));
}

ort::Binding StepBindings::bind(int current) {
  const OrtApi& a = ort::api();
  OrtIoBinding* raw = nullptr;
  ort::check(a.CreateIoBinding(session_, &raw), "io binding");
  ort::Binding binding(raw);
  auto input = [&](const std::string& name, ort::HostTensor& t) {
    values_.push_back(t.value());
    ort::check(a.BindInput(raw, name.c_str(), values_.back().get()), "io binding");
  };
  auto output = [&](const std::string& name, ort::HostTensor& t) {
    values_.push_back(t.value());
    ort::check(a.BindOutput(raw, name.c_str(), values_.back().get()), "io binding");
  };
  std::vector<ort::HostTensor>& past = cache_[current];
  std::vector<ort::HostTensor>& present = cache_[in_place_ ? current : 1 - current];
  input(decoder_.input_ids, ids_);
  input(decoder_.positions, positions_);
  for (size_t k = 0; k < decoder_.past.size(); ++k) input(decoder_.past[k], past[k]);
  for (size_t k = 0; k < decoder_.cross.size(); ++k) input(decoder_.cross[k], cross_[k]);
  output(decoder_.logits, logits_);
  for (size_t k = 0; k < decoder_.present.size(); ++k) output(decoder_.present[k], present[k]);
  return binding;
}

const float* StepBindings::step(const std::vector<int64_t>& tokens, int64_t position) {
  int64_t* ids = ids_.data<int64_t>();
  int64_t* pos = positions_.data<int64_t>();
  for (int r = 0; r < rows_; ++r) {
    ids[r] = tokens[r];
    pos[r] = position;
  }
  const double start = ort::now_seconds();
  OrtStatus* status = ort::api().RunWithBinding(session_, nullptr, bindings_[current_].get());
  const double spent = ort::now_seconds() - start;
  ort::RunClock& clock = ort::run_clock();
  clock.seconds += spent, clock.step_seconds += spent;
  ++clock.runs, ++clock.step_runs;
  ort::check(status, "decoder step");
  if (!in_place_) current_ = 1 - current_;
  return logits_.data<float>();
}

bool StepBindings::prefill(std::vector<int64_t> grid, int frames) {
  const Manifest& m = model_.manifest();
  auto it = m.decoder_prefills.find(condition_);
  if (it == m.decoder_prefills.end() || frames > decoder_.frames) return false;
  const GraphSpec& graph = m.graph(it->second);
  const OrtApi& a = ort::api();
  OrtSession* session = model_.session(graph.name).session;
  OrtIoBinding* raw = nullptr;
  ort::check(a.CreateIoBinding(session, &raw), "io binding");
  ort::Binding binding(raw);
  std::vector<ort::Value> values;
  values.push_back(ort::tensor(grid.data(), {rows_, frames, decoder_.grid_h, decoder_.grid_w},
                               ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64));
  ort::check(a.BindInput(raw, graph.inputs.at(0).name.c_str(), values.back().get()), "io binding");
  for (size_t k = 0; k < decoder_.cross.size(); ++k) {  // the last layer's cross K/V: not taken
    bool taken = false;
    for (const auto& t : graph.inputs) taken = taken || t.name == decoder_.cross[k];
    if (!taken) continue;
    values.push_back(cross_[k].value());
    ort::check(a.BindInput(raw, decoder_.cross[k].c_str(), values.back().get()), "io binding");
  }
  std::vector<ort::HostTensor>& now = cache_[in_place_ ? 0 : current_];  // written in place
  for (size_t k = 0; k < decoder_.present.size(); ++k) {
    values.push_back(now[k].value());
    ort::check(a.BindOutput(raw, decoder_.present[k].c_str(), values.back().get()), "io binding");
  }
  const double start = ort::now_seconds();
  OrtStatus* status = a.RunWithBinding(session, nullptr, raw);
  ort::run_clock().seconds += ort::now_seconds() - start;
  ++ort::run_clock().runs;
  ort::check(status, "decoder prefill");
  return true;
}

std::vector<int64_t> decode_tokens(Model& model, const std::string& condition, int batch,
                                   int num_frames, std::vector<ort::HostTensor> cross,
                                   double guidance_scale, TokenSampler& sampler,
                                   const ForcedTokens& forced, const FrameDone& frame_done,
                                   const std::atomic<bool>* stop) {
  const DecoderSpec& dec = model.manifest().decoder;
  const int64_t per_frame = model.manifest().tokens_per_frame();
  const int64_t total = per_frame * num_frames;
  const bool guided = guidance_scale != 1.0;
  const int rows = guided ? 2 * batch : batch;
  StepBindings steps(model, condition, num_frames, rows, std::move(cross));
  const int vocab = dec.vocab_size;
  const float scale = static_cast<float>(guidance_scale);  // NumPy: a float32 array op
  const bool has_forced = !forced.mask.empty();
  auto known = [&](int b, int64_t pos) { return forced.known[static_cast<size_t>(b) * total + pos]; };
  auto is_forced = [&](int b, int64_t pos) {
    return has_forced && forced.mask[static_cast<size_t>(b) * total + pos] != 0;
  };
  std::vector<int64_t> out(static_cast<size_t>(batch) * total, 0);
  std::vector<int64_t> prev(batch, dec.bos_id), feed(rows);
  auto stopped = [&] { return stop != nullptr && stop->load(std::memory_order_relaxed); };
  auto feed_prev = [&] {
    for (int r = 0; r < rows; ++r) feed[r] = prev[r % batch];  // np.tile(prev, rows // batch)
  };
  // forced_prefix_length: the leading positions forced in every row
  int64_t start = 0;
  while (has_forced && start < total) {
    bool all = true;
    for (int b = 0; b < batch && all; ++b) all = is_forced(b, start);
    if (!all) break;
    ++start;
  }
  if (start > 0) {  // engine.py prefill: whole leading frames in one run where it can, then steps
    int64_t fed = 0;
    int frames = static_cast<int>(std::min<int64_t>(start / per_frame, dec.frames));
    if (frames > 0) {
      std::vector<int64_t> grid(static_cast<size_t>(rows) * frames * per_frame);
      for (int r = 0; r < rows; ++r) {
        for (int64_t i = 0; i < frames * per_frame; ++i) grid[r * frames * per_frame + i] = known(r % batch, i);
      }
      if (steps.prefill(std::move(grid), frames)) {
        fed = frames * per_frame;
        for (int b = 0; b < batch; ++b) prev[b] = known(b, fed - 1);
      }
    }
    for (int64_t pos = fed; pos < start; ++pos) {
      if (stopped()) return out;
      feed_prev();
      steps.step(feed, pos);
      for (int b = 0; b < batch; ++b) prev[b] = known(b, pos);
    }
    for (int b = 0; b < batch; ++b) {
      for (int64_t pos = 0; pos < start; ++pos) out[static_cast<size_t>(b) * total + pos] = known(b, pos);
    }
    if (start / per_frame > 0 && frame_done) frame_done(0, static_cast<int>(start / per_frame), out);
  }
  std::vector<float> mixed(vocab);
  for (int64_t pos = start; pos < total; ++pos) {
    if (stopped()) return out;
    feed_prev();
    const float* logits = steps.step(feed, pos);
    bool all_forced = has_forced;
    for (int b = 0; b < batch && all_forced; ++b) all_forced = is_forced(b, pos);
    for (int b = 0; b < batch; ++b) {
      int64_t token = 0;
      if (all_forced) {
        token = known(b, pos);  // the step only filled the cache; nothing to choose
      } else {
        const float* row = logits + static_cast<size_t>(b) * vocab;
        if (guided) {  // apply_guidance: uncond + scale * (cond - uncond)
          const float* u = logits + static_cast<size_t>(batch + b) * vocab;
          for (int v = 0; v < vocab; ++v) mixed[v] = u[v] + scale * (row[v] - u[v]);
          row = mixed.data();
        }
        token = is_forced(b, pos) ? known(b, pos) : sampler.choose(row, b, pos);
      }
      out[static_cast<size_t>(b) * total + pos] = token;
      prev[b] = token;
    }
    if ((pos + 1) % per_frame == 0 && frame_done) {
      int frame = static_cast<int>((pos + 1) / per_frame - 1);
      frame_done(frame, frame + 1, out);
    }
  }
  return out;
}

}  // namespace nuwa
