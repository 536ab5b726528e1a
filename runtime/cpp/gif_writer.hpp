// Frames written as a looping GIF with giflib, as the Python runtime's write_video writes a
// .gif (runtime/media.py: every frame shown max(1, round(1000 / fps)) ms, stored in GIF's
// hundredths of a second as Pillow stores it, no control block for 0; loop forever). Each frame
// gets its own colour table: its exact colours when it has at most 256, else giflib's
// GifQuantizeBuffer (median cut on colours reduced to 5 bits a channel) refined by two Lloyd
// (k-means) rounds on the full colours, each pixel then given its nearest colour; so a frame of
// more colours is approximate (tests/runtime_cpp/test_picture_files.py measures it).
#pragma once

#include <cstdint>
#include <string>

namespace nuwa {

// `frames` count x height x width x 3 uint8 RGB.
void write_gif(const std::string& path, const uint8_t* frames, int count, int height, int width,
               double fps);

}  // namespace nuwa
