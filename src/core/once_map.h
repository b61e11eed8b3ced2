// A map whose values are built once per key, on first use, by whichever
// thread asks first; later callers of that key wait for that build, callers
// of other keys do not. The map's lock covers only finding or inserting the
// entry, never a build: a JIT compile of one kernel (1-2 s) must not stall
// launches of kernels that are already loaded.
//
// A build that throws leaves the entry unbuilt; the next caller of the key
// builds again (std::call_once semantics). Values never move (entries are
// heap-allocated and never erased), so references stay valid for the map's
// lifetime.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <utility>

namespace tessera::detail {

template <typename Key, typename Value>
class OnceMap {
 public:
  // The value of `key`, built with build() -> std::unique_ptr<Value> the
  // first time (so Value needs to be neither copyable nor movable).
  template <typename Build>
  Value& get(const Key& key, Build&& build) {
    Entry* entry = nullptr;
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      std::unique_ptr<Entry>& slot = entries_[key];
      if (slot == nullptr) slot = std::make_unique<Entry>();
      entry = slot.get();
    }
    std::call_once(entry->built, [&] { entry->value = build(); });
    return *entry->value;
  }

 private:
  struct Entry {
    std::once_flag built;
    std::unique_ptr<Value> value;
  };
  std::mutex mutex_;
  std::map<Key, std::unique_ptr<Entry>> entries_;
};

}  // namespace tessera::detail
