// An export directory's manifest.json (spec/manifest.py documents the schema): the graphs, their
// I/O names and dtypes, the decoder's cache geometry and I/O patterns, the conditions, the
// decoder steps per (condition, frames), the prefills and the model config the runtime reads.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace nuwa {

struct TensorSpec {
  std::string name;
  std::string dtype;
};

struct GraphSpec {
  std::string name;
  std::string file;
  std::string kind;
  std::vector<TensorSpec> inputs;
  std::vector<TensorSpec> outputs;
  std::map<std::string, std::string> prepared;  // prepared form key (cpu, ...) -> file

  const TensorSpec& tensor(const std::string& name) const;  // an input or output by name
  std::vector<std::string> input_names() const;
  std::vector<std::string> output_names() const;
};

struct DecoderSpec {
  int num_layers = 0, num_heads = 0, head_dim = 0, cache_slots = 0, vocab_size = 0, bos_id = 0;
  int frames = 0, grid_h = 0, grid_w = 0;  // decoder.grid
  std::string input_ids, positions, logits;
  std::vector<std::string> past, present, cross;  // [key 0, value 0, key 1, ...]
};

struct ConditionSpec {
  std::string key;      // text, sketch_t{Ts}
  std::string encoder;  // graph name
};

struct DecoderStepSpec {
  std::string graph, condition;
  int frames = 0;
};

// The parts of the model config (manifest "config") the runtime reads (spec/model_spec.py).
struct ModelConfig {
  int image_size = 0;
  int max_text_len = 0;
  int sketch_frames = 0;
  int frames = 0;
  int sketch_size = 0;     // vqgan_seg.image_size
  int sketch_classes = 0;  // vqgan_seg.in_channels: class ids 0 .. sketch_classes-1
};

struct Manifest {
  std::string directory;
  std::string target, precision;
  DecoderSpec decoder;
  ModelConfig config;
  std::map<std::string, ConditionSpec> conditions;
  std::vector<DecoderStepSpec> decoder_steps;
  std::map<std::string, std::string> decoder_prefills;
  std::map<std::string, GraphSpec> graphs;

  const GraphSpec& graph(const std::string& name) const;
  std::string path(const std::string& file) const { return directory + "/" + file; }
  // The decoder_step graph of a condition key and a request's frame count (spec/manifest.py).
  const GraphSpec& decoder_step(const std::string& condition, int num_frames) const;
  int tokens_per_frame() const { return decoder.grid_h * decoder.grid_w; }
};

// Read and check `directory`/manifest.json (nuwa::Error NUWA_ERROR_MODEL / INPUT on failure).
Manifest load_manifest(const std::string& directory);

}  // namespace nuwa
