#include "mqtt_proxy/tcp/reassembler.hpp"

#include <algorithm>

namespace mqtt_proxy::tcp {

std::size_t Reassembler::insert(std::uint64_t offset, ByteSpan data) {
  std::size_t mismatched = 0;
  std::uint64_t pos = offset;
  const std::uint64_t end = offset + data.size();
  // Start from the chunk that may cover `pos`.
  auto it = chunks_.upper_bound(pos);
  if (it != chunks_.begin()) --it;
  while (pos < end) {
    while (it != chunks_.end() && it->first + it->second.size() <= pos) ++it;
    const std::uint64_t next_start = (it == chunks_.end()) ? end : std::min(end, it->first);
    if (pos < next_start) {
      // A gap [pos, next_start): new bytes.
      const auto from = data.subspan(pos - offset, next_start - pos);
      chunks_.emplace_hint(it, pos, Bytes(from.begin(), from.end()));
      buffered_ += from.size();
      pos = next_start;
      continue;
    }
    // `it` covers pos: keep the stored bytes, count differences.
    const std::uint64_t covered_end = std::min(end, it->first + it->second.size());
    for (std::uint64_t p = pos; p < covered_end; ++p) {
      if (it->second[p - it->first] != data[p - offset]) ++mismatched;
    }
    pos = covered_end;
    ++it;
  }
  return mismatched;
}

std::size_t Reassembler::pop_contiguous(std::uint64_t offset, Bytes& out) {
  std::size_t moved = 0;
  auto it = chunks_.begin();
  while (it != chunks_.end() && it->first <= offset) {
    const std::uint64_t chunk_end = it->first + it->second.size();
    if (chunk_end > offset) {
      const auto skip = offset - it->first;
      out.insert(out.end(), it->second.begin() + static_cast<std::ptrdiff_t>(skip),
                 it->second.end());
      moved += it->second.size() - skip;
      offset = chunk_end;
    }
    buffered_ -= it->second.size();
    it = chunks_.erase(it);
  }
  return moved;
}

}  // namespace mqtt_proxy::tcp
