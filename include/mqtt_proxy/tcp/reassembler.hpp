// Out-of-order receive queue. Positions are 64-bit stream offsets (bytes since the first data
// byte), so wraparound of 32-bit sequence numbers never reaches this class. Overlaps keep the bytes
// stored first.
#pragma once

#include <cstdint>
#include <map>

#include "mqtt_proxy/util/bytes.hpp"

namespace mqtt_proxy::tcp {

class Reassembler {
 public:
  // Stores the parts of [offset, offset + data.size()) not already held. Returns the number of
  // bytes that overlapped stored data with different contents (first data wins; counted for
  // diagnostics).
  std::size_t insert(std::uint64_t offset, ByteSpan data);

  // Moves the contiguous run starting at `offset` into `out`; returns how many bytes moved.
  // Anything stored below `offset` is discarded.
  std::size_t pop_contiguous(std::uint64_t offset, Bytes& out);

  std::size_t buffered_bytes() const { return buffered_; }
  std::size_t segments() const { return chunks_.size(); }
  bool empty() const { return chunks_.empty(); }
  void clear() {
    chunks_.clear();
    buffered_ = 0;
  }

 private:
  std::map<std::uint64_t, Bytes> chunks_;  // start offset -> bytes; never overlapping
  std::size_t buffered_ = 0;
};

}  // namespace mqtt_proxy::tcp
