#include "frame_handoff.hpp"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>

#ifdef __linux__
#include <sched.h>
#endif

namespace nuwa {

namespace {

// What the two threads share: the ranges handed over and not yet taken, whether the loop has
// ended, and the first exception of either side.
struct Handoff {
  std::mutex mutex;
  std::condition_variable changed;
  std::deque<FinishedFrames> ready;
  bool loop_ended = false;
  std::exception_ptr first_error;
  std::atomic<bool> stop{false};

  void fail(std::exception_ptr error) {  // under the lock: the first one is kept
    std::lock_guard<std::mutex> lock(mutex);
    if (!first_error) first_error = std::move(error);
    stop.store(true);
  }
};

}  // namespace

std::vector<int64_t> overlapped(const DecodeLoop& loop, const FrameConsumer& consume) {
  Handoff h;
  std::vector<int64_t> tokens;
  FrameSink sink = [&h](FinishedFrames frames) {
    {
      std::lock_guard<std::mutex> lock(h.mutex);
      h.ready.push_back(std::move(frames));
    }
    h.changed.notify_one();
  };
  std::thread worker([&] {
    try {
      tokens = loop(sink, h.stop);
    } catch (...) {
      h.fail(std::current_exception());
    }
    {
      std::lock_guard<std::mutex> lock(h.mutex);
      h.loop_ended = true;
    }
    h.changed.notify_one();
  });
  try {
    std::unique_lock<std::mutex> lock(h.mutex);
    for (;;) {
      h.changed.wait(lock, [&] { return h.first_error || !h.ready.empty() || h.loop_ended; });
      if (h.first_error || h.ready.empty()) break;  // an error, or the loop ended, all consumed
      FinishedFrames frames = std::move(h.ready.front());
      h.ready.pop_front();
      lock.unlock();
      consume(frames);
      lock.lock();
    }
  } catch (...) {
    h.fail(std::current_exception());
  }
  h.stop.store(true);  // nothing more to hand over (a no-op after a normal end)
  worker.join();
  if (h.first_error) std::rethrow_exception(h.first_error);
  return tokens;
}

std::vector<int64_t> in_turn(const DecodeLoop& loop, const FrameConsumer& consume) {
  const std::atomic<bool> never{false};
  return loop([&consume](FinishedFrames frames) { consume(frames); }, never);
}

int usable_cores() {
#ifdef __linux__
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace nuwa
