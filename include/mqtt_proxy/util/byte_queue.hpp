// A FIFO of bytes in one contiguous buffer: append at the back, pop from the front, view any range.
// Used for TCP send and receive buffers, where the view of a range must be contiguous to become a
// segment payload without a copy.
#pragma once

#include <algorithm>
#include <cassert>
#include <cstddef>

#include "mqtt_proxy/util/bytes.hpp"

namespace mqtt_proxy {

class ByteQueue {
 public:
  std::size_t size() const { return buf_.size() - head_; }
  bool empty() const { return size() == 0; }

  void push(ByteSpan b) { buf_.insert(buf_.end(), b.begin(), b.end()); }

  void pop(std::size_t n) {
    assert(n <= size());
    head_ += n;
    if (head_ == buf_.size()) {
      buf_.clear();
      head_ = 0;
    } else if (head_ >= 4096 && head_ * 2 >= buf_.size()) {
      // Compact once the dead prefix dominates, so the cost stays amortized O(1) per byte.
      buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }

  ByteSpan view(std::size_t off, std::size_t len) const {
    assert(off + len <= size());
    return ByteSpan{buf_}.subspan(head_ + off, len);
  }
  ByteSpan all() const { return view(0, size()); }

  void clear() {
    buf_.clear();
    buf_.shrink_to_fit();
    head_ = 0;
  }

 private:
  Bytes buf_;
  std::size_t head_ = 0;
};

}  // namespace mqtt_proxy
