// Outgoing frames of one event-loop turn, packed into one buffer so the loop can hand them to the
// kernel in a single batched send.
#pragma once

#include <cstddef>
#include <vector>

#include "mqtt_proxy/util/bytes.hpp"

namespace mqtt_proxy::core {

class FrameBatch {
 public:
  struct Entry {
    std::size_t iface = 0;
    std::size_t offset = 0;
    std::size_t size = 0;
  };

  // Space for one frame of `size` bytes on interface `iface`; valid until the next add().
  MutableByteSpan add(std::size_t iface, std::size_t size) {
    const std::size_t offset = storage_.size();
    storage_.resize(offset + size);
    entries_.push_back(Entry{iface, offset, size});
    return MutableByteSpan{storage_}.subspan(offset, size);
  }

  ByteSpan frame(const Entry& e) const { return ByteSpan{storage_}.subspan(e.offset, e.size); }
  const std::vector<Entry>& entries() const { return entries_; }
  bool empty() const { return entries_.empty(); }
  std::size_t size() const { return entries_.size(); }
  void clear() {
    storage_.clear();
    entries_.clear();
  }

 private:
  Bytes storage_;
  std::vector<Entry> entries_;
};

}  // namespace mqtt_proxy::core
