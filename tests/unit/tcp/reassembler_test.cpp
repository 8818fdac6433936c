#include "mqtt_proxy/tcp/reassembler.hpp"

#include <gtest/gtest.h>

#include <random>

#include "test_util.hpp"

namespace mqtt_proxy::test {
namespace {

TEST(Reassembler, JoinsChunksInAnyOrder) {
  tcp::Reassembler r;
  r.insert(6, text("ghi"));
  r.insert(3, text("def"));
  EXPECT_EQ(r.buffered_bytes(), 6u);
  Bytes out;
  EXPECT_EQ(r.pop_contiguous(0, out), 0u);  // the hole at 0..3
  EXPECT_EQ(r.pop_contiguous(3, out), 6u);
  EXPECT_EQ(str(out), "defghi");
  EXPECT_TRUE(r.empty());
}

TEST(Reassembler, FirstDataWinsOnOverlap) {
  tcp::Reassembler r;
  r.insert(2, text("cdef"));
  EXPECT_EQ(r.insert(0, text("abCDEFgh")), 4u);  // four bytes differ from what is held
  Bytes out;
  r.pop_contiguous(0, out);
  EXPECT_EQ(str(out), "abcdefgh");
}

TEST(Reassembler, PopFromInsideAChunkAndDropsWhatIsBehind) {
  tcp::Reassembler r;
  r.insert(0, text("abcdef"));
  r.insert(10, text("xyz"));
  Bytes out;
  EXPECT_EQ(r.pop_contiguous(4, out), 2u);
  EXPECT_EQ(str(out), "ef");
  EXPECT_EQ(r.segments(), 1u);
  EXPECT_EQ(r.buffered_bytes(), 3u);
}

TEST(Reassembler, RandomSplitsReassembleExactly) {
  std::mt19937 rng(7);
  std::string data(5000, '\0');
  for (auto& c : data) c = static_cast<char>('a' + rng() % 26);
  for (int round = 0; round < 50; ++round) {
    tcp::Reassembler r;
    std::vector<std::pair<std::size_t, std::size_t>> pieces;
    for (std::size_t i = 0; i < 300; ++i) {
      const std::size_t off = rng() % data.size();
      const std::size_t len = 1 + rng() % std::min<std::size_t>(200, data.size() - off);
      pieces.emplace_back(off, len);
    }
    pieces.emplace_back(0, data.size());  // make sure everything is covered
    std::shuffle(pieces.begin(), pieces.end(), rng);
    for (auto [off, len] : pieces) {
      EXPECT_EQ(r.insert(off, as_bytes(std::string_view(data).substr(off, len))), 0u);
    }
    Bytes out;
    EXPECT_EQ(r.pop_contiguous(0, out), data.size());
    EXPECT_EQ(str(out), data);
  }
}

}  // namespace
}  // namespace mqtt_proxy::test
