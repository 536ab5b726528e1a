// The decode loop and the decoding of its finished frames, overlapped as the Python runtime
// overlaps them (runtime/pipeline.py run, runtime/frame_decoding.py FrameDecoder): the decode
// loop runs on a worker thread and hands each finished range of frames (its codes copied) to the
// calling thread, which decodes it (the VQ decoder, the caller's frame callback) while the loop
// steps on; the last frame is decoded after the loop ends. With a core to spare, the VQ
// decoder's time hides behind the decoder steps.
//
// `in_turn` is the slow, obvious reference (and what a process allowed only one core runs, where
// a second thread can hide nothing): the loop on the calling thread, each range consumed the
// moment it is handed over. Both hand the consumer the same ranges in the same order, on the
// calling thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

namespace nuwa {

// Frames [first, end) of a request, finished: their codes (rows, end - first, h, w), row-major.
struct FinishedFrames {
  int first = 0, end = 0;
  std::vector<int64_t> codes;
};

// Where the decode loop hands a finished range (it may be called on the loop's thread).
using FrameSink = std::function<void(FinishedFrames)>;

// The decode loop: hands finished ranges to `finished` in order; once `stop` is set it may
// return at once (its result is then discarded). Returns the token grid.
using DecodeLoop =
    std::function<std::vector<int64_t>(const FrameSink& finished, const std::atomic<bool>& stop)>;

// Decodes one finished range; runs on the calling thread. May throw (a cancelled callback).
using FrameConsumer = std::function<void(const FinishedFrames&)>;

// `loop` on a worker thread, `consume` on this thread for every range it hands over, in order,
// while it runs. The first exception of either side wins: the other side is stopped (the loop
// through `stop`, before its next step; the consumer takes no further range), the worker is
// joined, and the exception is rethrown here. Nothing is left running when this returns.
std::vector<int64_t> overlapped(const DecodeLoop& loop, const FrameConsumer& consume);

// The reference: `loop` on this thread, `consume` called from inside it at each handover.
std::vector<int64_t> in_turn(const DecodeLoop& loop, const FrameConsumer& consume);

// How many cores this thread may run on (its affinity mask; at least 1).
int usable_cores();

}  // namespace nuwa
