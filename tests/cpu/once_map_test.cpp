#include "../../src/core/once_map.h"  // host-only, tested directly

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace tessera::detail {
namespace {

using namespace std::chrono_literals;

TEST(OnceMap, BuildsEachKeyOnceAcrossThreads) {
  OnceMap<int, std::string> map;
  std::atomic<int> builds{0};
  std::vector<std::thread> threads;
  std::vector<const std::string*> seen(16, nullptr);
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&, i] {
      seen[i] = &map.get(i % 2, [&] {
        ++builds;
        std::this_thread::sleep_for(20ms);  // others arrive during the build
        return std::make_unique<std::string>(i % 2 == 0 ? "even" : "odd");
      });
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(builds.load(), 2);
  for (int i = 0; i < 16; ++i) {
    ASSERT_NE(seen[i], nullptr);
    EXPECT_EQ(*seen[i], i % 2 == 0 ? "even" : "odd");
    EXPECT_EQ(seen[i], seen[i % 2]) << "one value per key";
  }
}

TEST(OnceMap, ASlowBuildDoesNotBlockOtherKeys) {
  OnceMap<int, int> map;
  std::promise<void> other_key_done;
  std::future<void> done = other_key_done.get_future();
  // Key 1's build waits until key 2 was built and read by another thread;
  // a map that held its lock across builds would deadlock here (the wait
  // times out and the test fails instead of hanging).
  std::future<bool> slow = std::async(std::launch::async, [&] {
    bool other_finished = false;
    map.get(1, [&] {
      other_finished = done.wait_for(10s) == std::future_status::ready;
      return std::make_unique<int>(1);
    });
    return other_finished;
  });
  std::this_thread::sleep_for(20ms);  // key 1's build is (very likely) running
  std::thread other([&] {
    EXPECT_EQ(map.get(2, [] { return std::make_unique<int>(2); }), 2);
    other_key_done.set_value();
  });
  other.join();
  EXPECT_TRUE(slow.get());
  EXPECT_EQ(map.get(1, [] { return std::make_unique<int>(-1); }), 1) << "key 1 is built once";
}

TEST(OnceMap, AFailedBuildIsRetriedByTheNextCaller) {
  OnceMap<std::string, int> map;
  EXPECT_THROW(
      map.get("k", []() -> std::unique_ptr<int> { throw std::runtime_error("compile failed"); }),
      std::runtime_error);
  int builds = 0;
  EXPECT_EQ(map.get("k",
                    [&] {
                      ++builds;
                      return std::make_unique<int>(7);
                    }),
            7);
  EXPECT_EQ(map.get("k",
                    [&] {
                      ++builds;
                      return std::make_unique<int>(8);
                    }),
            7);
  EXPECT_EQ(builds, 1);
}

}  // namespace
}  // namespace tessera::detail
