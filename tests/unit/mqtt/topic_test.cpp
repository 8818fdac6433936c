#include "mqtt_proxy/mqtt/topic.hpp"

#include <gtest/gtest.h>

#include <string>

namespace mqtt_proxy::mqtt {
namespace {

// The examples of MQTT 3.1.1 section 4.7.1 and 4.7.2, one by one.
TEST(TopicMatches, MultiLevelWildcardExamples) {
  EXPECT_TRUE(topic_matches("sport/tennis/player1/#", "sport/tennis/player1"));
  EXPECT_TRUE(topic_matches("sport/tennis/player1/#", "sport/tennis/player1/ranking"));
  EXPECT_TRUE(topic_matches("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon"));
  EXPECT_TRUE(topic_matches("sport/#", "sport"));
  EXPECT_TRUE(topic_matches("#", "sport/tennis"));
  EXPECT_FALSE(topic_matches("sport/tennis/#", "sport"));
}

TEST(TopicMatches, SingleLevelWildcardExamples) {
  EXPECT_TRUE(topic_matches("sport/tennis/+", "sport/tennis/player1"));
  EXPECT_TRUE(topic_matches("sport/tennis/+", "sport/tennis/player2"));
  EXPECT_FALSE(topic_matches("sport/tennis/+", "sport/tennis/player1/ranking"));
  EXPECT_FALSE(topic_matches("sport/+", "sport"));
  EXPECT_TRUE(topic_matches("sport/+", "sport/"));
  EXPECT_TRUE(topic_matches("+/+", "/finance"));
  EXPECT_TRUE(topic_matches("/+", "/finance"));
  EXPECT_FALSE(topic_matches("+", "/finance"));
  EXPECT_TRUE(topic_matches("+/tennis/#", "sport/tennis/player1"));
}

TEST(TopicMatches, DollarTopicsAreNotMatchedByLeadingWildcards) {
  EXPECT_FALSE(topic_matches("#", "$SYS/broker/clients"));
  EXPECT_FALSE(topic_matches("+/monitor/Clients", "$SYS/monitor/Clients"));
  EXPECT_TRUE(topic_matches("$SYS/#", "$SYS/monitor/Clients"));
  EXPECT_TRUE(topic_matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
}

TEST(TopicMatches, ExactAndCaseSensitive) {
  EXPECT_TRUE(topic_matches("topic1", "topic1"));
  EXPECT_FALSE(topic_matches("topic1", "Topic1"));
  EXPECT_FALSE(topic_matches("a/b", "a/b/c"));
  EXPECT_FALSE(topic_matches("a/b/c", "a/b"));
  EXPECT_TRUE(topic_matches("a//c", "a//c"));
  EXPECT_TRUE(topic_matches("a/+/c", "a//c"));
}

TEST(TopicFilter, Validity) {
  for (const char* ok :
       {"#", "+", "a/#", "a/+/b", "+/+", "/", "a//b", "sport/tennis/#", "$SYS/#"}) {
    EXPECT_TRUE(is_valid_topic_filter(ok)) << ok;
  }
  for (const char* bad : {"", "a#", "a/#/b", "#/a", "a+", "a/b+/c", "+a", "##"}) {
    EXPECT_FALSE(is_valid_topic_filter(bad)) << bad;
  }
}

TEST(TopicName, Validity) {
  EXPECT_TRUE(is_valid_topic_name("a/b"));
  EXPECT_TRUE(is_valid_topic_name("/"));
  EXPECT_FALSE(is_valid_topic_name(""));
  EXPECT_FALSE(is_valid_topic_name("a/+"));
  EXPECT_FALSE(is_valid_topic_name("a/#"));
}

TEST(Utf8, AcceptsWellFormedAndRejectsTheRest) {
  EXPECT_EQ(check_utf8("plain"), Utf8Status::Ok);
  EXPECT_EQ(check_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), Utf8Status::Ok);
  EXPECT_EQ(check_utf8(std::string("a\0b", 3)), Utf8Status::ContainsNull);
  EXPECT_EQ(check_utf8("\xc0\xaf"), Utf8Status::Invalid);          // overlong '/'
  EXPECT_EQ(check_utf8("\xe0\x80\xaf"), Utf8Status::Invalid);      // overlong, 3 bytes
  EXPECT_EQ(check_utf8("\xed\xa0\x80"), Utf8Status::Invalid);      // U+D800 surrogate
  EXPECT_EQ(check_utf8("\xf4\x90\x80\x80"), Utf8Status::Invalid);  // above U+10FFFF
  EXPECT_EQ(check_utf8("\xe2\x82"), Utf8Status::Invalid);          // truncated
  EXPECT_EQ(check_utf8("\x80"), Utf8Status::Invalid);              // stray continuation
  EXPECT_EQ(check_utf8("\xff"), Utf8Status::Invalid);
}

}  // namespace
}  // namespace mqtt_proxy::mqtt
