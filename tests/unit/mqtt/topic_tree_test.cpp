#include "mqtt_proxy/mqtt/topic_tree.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

#include "mqtt_proxy/mqtt/topic.hpp"

namespace mqtt_proxy::mqtt {
namespace {

std::multiset<int> matches(const TopicTree<int>& t, std::string_view topic) {
  std::multiset<int> out;
  t.match(topic, [&](int s) { out.insert(s); });
  return out;
}

TEST(TopicTree, ReportsFirstAndLastSubscriberOfAFilter) {
  TopicTree<int> t;
  EXPECT_TRUE(t.add("a/b", 1));
  EXPECT_FALSE(t.add("a/b", 2));
  EXPECT_FALSE(t.add("a/b", 2));  // already there
  EXPECT_EQ(t.filter_count(), 1u);
  EXPECT_FALSE(t.remove("a/b", 1));
  EXPECT_FALSE(t.remove("a/b", 7));  // never subscribed
  EXPECT_TRUE(t.remove("a/b", 2));
  EXPECT_EQ(t.filter_count(), 0u);
  EXPECT_FALSE(t.remove("x/y", 1));
}

TEST(TopicTree, MatchesWildcardsAndExact) {
  TopicTree<int> t;
  t.add("sport/tennis/player1", 1);
  t.add("sport/tennis/+", 2);
  t.add("sport/#", 3);
  t.add("#", 4);
  t.add("+/+/+", 5);
  t.add("$SYS/#", 6);
  EXPECT_EQ(matches(t, "sport/tennis/player1"), (std::multiset<int>{1, 2, 3, 4, 5}));
  EXPECT_EQ(matches(t, "sport"), (std::multiset<int>{3, 4}));
  EXPECT_EQ(matches(t, "sport/tennis/player1/ranking"), (std::multiset<int>{3, 4}));
  EXPECT_EQ(matches(t, "$SYS/broker/load"), (std::multiset<int>{6}));  // not 4, not 5
  EXPECT_EQ(matches(t, "other"), (std::multiset<int>{4}));
}

TEST(TopicTree, PrunesEmptyBranches) {
  TopicTree<int> t;
  t.add("a/b/c/d", 1);
  t.add("a/b", 2);
  t.remove("a/b/c/d", 1);
  EXPECT_TRUE(t.has_subscribers("a/b"));
  EXPECT_FALSE(t.has_subscribers("a/b/c/d"));
  t.remove("a/b", 2);
  EXPECT_EQ(matches(t, "a/b").size(), 0u);
}

TEST(TopicTree, DeepTopicsDoNotRecurse) {
  TopicTree<int> t;
  std::string deep;
  for (int i = 0; i < 30000; ++i) deep += i ? "/a" : "a";
  t.add(deep, 1);
  t.add("a/#", 2);
  EXPECT_EQ(matches(t, deep), (std::multiset<int>{1, 2}));
  EXPECT_TRUE(t.remove(deep, 1));
}

// The tree must agree with the reference matcher on random filters and topics.
TEST(TopicTree, AgreesWithTopicMatchesOnRandomInput) {
  std::mt19937 rng(42);
  const char* levels[] = {"a", "b", "", "$x", "c"};
  auto random_topic = [&](bool filter) {
    std::string s;
    const int n = 1 + static_cast<int>(rng() % 4);
    for (int i = 0; i < n; ++i) {
      if (i) s += "/";
      const auto r = rng() % 7;
      if (filter && r == 5) {
        s += "+";
      } else if (filter && r == 6 && i == n - 1) {
        s += "#";
      } else {
        s += levels[rng() % 5];
      }
    }
    return s;
  };
  TopicTree<int> t;
  std::vector<std::string> filters;
  for (int i = 0; i < 200; ++i) {
    auto f = random_topic(true);
    if (!mqtt::is_valid_topic_filter(f)) continue;
    filters.push_back(f);
    t.add(f, static_cast<int>(filters.size() - 1));
  }
  for (int i = 0; i < 2000; ++i) {
    const auto topic = random_topic(false);
    std::multiset<int> expected;
    for (std::size_t k = 0; k < filters.size(); ++k) {
      if (mqtt::topic_matches(filters[k], topic)) expected.insert(static_cast<int>(k));
    }
    EXPECT_EQ(matches(t, topic), expected) << topic;
  }
}

// Found by the malformed-input catalogue under ASan: the tree's destructor recursed once per level.
TEST(TopicTree, AFilterHundredsOfThousandsOfLevelsDeepIsAddedMatchedAndDestroyed) {
  std::string deep = "a";
  for (int i = 1; i < 200000; ++i) deep += "/a";
  {
    TopicTree<int> t;
    EXPECT_TRUE(t.add(deep, 1));
    int hits = 0;
    t.match(deep, [&](int) { ++hits; });
    EXPECT_EQ(hits, 1);
  }  // destroyed here, without recursion
  TopicTree<int> t;
  t.add(deep, 1);
  EXPECT_TRUE(t.remove(deep, 1));  // pruning is iterative too
  EXPECT_EQ(t.filter_count(), 0u);
}

}  // namespace
}  // namespace mqtt_proxy::mqtt
