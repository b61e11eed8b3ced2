// Host-time checks (the planners): each call timed on its own, so a test can
// assert the fastest call, which is what the code costs, while a loaded CI
// machine stretches the mean (the last stop's CI failed a mean-based bound).
#pragma once

#include <algorithm>
#include <chrono>
#include <limits>

namespace tessera::testing {

struct HostTimes {
  double mean_us = 0.0;
  double fastest_us = std::numeric_limits<double>::infinity();
};

template <typename Call>
HostTimes time_host_calls(int iterations, Call&& call) {
  HostTimes t;
  double total_us = 0.0;
  for (int i = 0; i < iterations; ++i) {
    const auto start = std::chrono::steady_clock::now();
    call();
    const double us =
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
    total_us += us;
    t.fastest_us = std::min(t.fastest_us, us);
  }
  t.mean_us = iterations > 0 ? total_us / iterations : 0.0;
  return t;
}

}  // namespace tessera::testing
