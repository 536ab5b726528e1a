#include "token_walk.hpp"

#include "nuwa_error.hpp"

namespace nuwa {

StepBindings::StepBindings(Model& model, const std::string& condition, int num_frames, int rows,
                           std::vector<ort::HostTensor> cross)
    : decoder_(model.manifest().decoder), rows_(rows), cross_(std::move(cross)) {
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
  ort::check(ort::api().RunWithBinding(session_, nullptr, bindings_[current_].get()),
             "decoder step");
  if (!in_place_) current_ = 1 - current_;
  return logits_.data<float>();
}

std::vector<int64_t> greedy_tokens(Model& model, int batch, int num_frames,
                                   std::vector<ort::HostTensor> cross, double guidance_scale,
                                   const FrameDone& frame_done) {
  const DecoderSpec& dec = model.manifest().decoder;
  const int64_t per_frame = model.manifest().tokens_per_frame();
  const int64_t total = per_frame * num_frames;
  const bool guided = guidance_scale != 1.0;
  const int rows = guided ? 2 * batch : batch;
  StepBindings steps(model, "text", num_frames, rows, std::move(cross));
  const int vocab = dec.vocab_size;
  const float scale = static_cast<float>(guidance_scale);  // NumPy: a float32 array op
  std::vector<int64_t> out(static_cast<size_t>(batch) * total, 0);
  std::vector<int64_t> prev(batch, dec.bos_id), feed(rows);
  std::vector<float> mixed(vocab);
  for (int64_t pos = 0; pos < total; ++pos) {
    for (int r = 0; r < rows; ++r) feed[r] = prev[r % batch];  // np.tile(prev, rows // batch)
    const float* logits = steps.step(feed, pos);
    for (int b = 0; b < batch; ++b) {
      const float* row = logits + static_cast<size_t>(b) * vocab;
      if (guided) {  // apply_guidance: uncond + scale * (cond - uncond)
        const float* u = logits + static_cast<size_t>(batch + b) * vocab;
        for (int v = 0; v < vocab; ++v) mixed[v] = u[v] + scale * (row[v] - u[v]);
        row = mixed.data();
      }
      int best = 0;  // np.argmax: the first maximum
      for (int v = 1; v < vocab; ++v) {
        if (row[v] > row[best]) best = v;
      }
      out[static_cast<size_t>(b) * total + pos] = best;
      prev[b] = best;
    }
    if ((pos + 1) % per_frame == 0 && frame_done) {
      frame_done(static_cast<int>((pos + 1) / per_frame - 1), out);
    }
  }
  return out;
}

}  // namespace nuwa
