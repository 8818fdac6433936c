// Retained messages (MQTT 3.1.1 section 3.3.1.3): the last PUBLISH with RETAIN set, per topic. An
// entry remembers whether it came from a local client or from a peer proxy: local ones are what
// this proxy offers to peers that subscribe; peer ones are a replica that serves later local
// subscribers, dropped when no local subscription wants the topic any more; system ones are the
// broker's own `$SYS` figures, for local subscribers only.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "mqtt_proxy/mqtt/topic.hpp"
#include "mqtt_proxy/util/bytes.hpp"
#include "mqtt_proxy/util/time.hpp"

namespace mqtt_proxy::broker {

class RetainedStore {
 public:
  enum class Origin { Local, Peer, System };
  enum class SetResult { Stored, Deleted, Full };
  struct Message {
    Bytes payload;
    Origin origin = Origin::Local;
    Bytes properties;                     // v5 PUBLISH properties, for v5 subscribers
    std::optional<TimePoint> expires_at;  // v5 Message Expiry Interval
    std::uint8_t qos = 0;                 // the publisher's: new subscribers get at most this
  };

  explicit RetainedStore(std::size_t max_messages) : max_messages_(max_messages) {}

  // Stores `payload` for `topic`, replacing what was there, whoever set it (the last message seen
  // wins, as on one broker). An empty payload deletes [MQTT-3.3.1-10/11]. A new topic beyond the
  // limit is refused.
  SetResult set(std::string_view topic, ByteSpan payload, Origin origin, ByteSpan properties = {},
                std::optional<TimePoint> expires_at = {}, std::uint8_t qos = 0) {
    auto it = entries_.find(topic);
    if (payload.empty()) {
      if (it != entries_.end()) {
        bytes_ -= it->second.payload.size();
        entries_.erase(it);
      }
      return SetResult::Deleted;
    }
    if (it == entries_.end()) {
      if (entries_.size() >= max_messages_) return SetResult::Full;
      it = entries_.emplace(std::string(topic), Message{}).first;
    }
    bytes_ -= it->second.payload.size();
    it->second.payload.assign(payload.begin(), payload.end());
    it->second.origin = origin;
    it->second.properties.assign(properties.begin(), properties.end());
    it->second.expires_at = expires_at;
    it->second.qos = qos;
    bytes_ += payload.size();
    return SetResult::Stored;
  }

  // Deletes the messages whose Message Expiry Interval has passed [MQTT-3.3.2-5].
  std::size_t drop_expired(TimePoint now) {
    return erase_if(
        [&](const std::string&, const Message& m) { return m.expires_at && *m.expires_at <= now; });
  }

  // fn(topic, message) for every entry `filter` matches. A linear scan: retained topics on an edge
  // proxy number in the thousands, and this runs once per SUBSCRIBE, never per PUBLISH.
  template <typename Fn>
  void for_each_match(std::string_view filter, Fn&& fn) const {
    for (const auto& [topic, m] : entries_) {
      if (mqtt::topic_matches(filter, topic)) fn(std::string_view(topic), m);
    }
  }

  // Drops replica entries matching `filter` that `still_wanted(topic)` declines.
  template <typename Pred>
  std::size_t drop_peer_entries(std::string_view filter, Pred&& still_wanted) {
    return erase_if([&](const std::string& topic, const Message& m) {
      return m.origin == Origin::Peer && mqtt::topic_matches(filter, topic) &&
             !still_wanted(std::string_view(topic));
    });
  }

  std::size_t size() const { return entries_.size(); }
  std::size_t payload_bytes() const { return bytes_; }

 private:
  template <typename Pred>
  std::size_t erase_if(Pred&& doomed) {
    std::size_t n = 0;
    for (auto it = entries_.begin(); it != entries_.end();) {
      if (doomed(it->first, it->second)) {
        bytes_ -= it->second.payload.size();
        it = entries_.erase(it);
        ++n;
      } else {
        ++it;
      }
    }
    return n;
  }

  std::map<std::string, Message, std::less<>> entries_;
  std::size_t max_messages_;
  std::size_t bytes_ = 0;
};

}  // namespace mqtt_proxy::broker
