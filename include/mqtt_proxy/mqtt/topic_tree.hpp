// Subscriptions indexed by topic level, so matching a topic costs its depth times the wildcard
// fan-out, not the number of filters. Matching, pruning and destruction are iterative: a filter
// 30,000 levels deep cannot overflow a stack.
#pragma once

#include <algorithm>
#include <boost/container/small_vector.hpp>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace mqtt_proxy::mqtt {

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

template <typename Sub>
class TopicTree {
 public:
  TopicTree() = default;
  TopicTree(const TopicTree&) = delete;
  TopicTree& operator=(const TopicTree&) = delete;
  // The default destructor would recurse once per level.
  ~TopicTree() {
    std::vector<std::unique_ptr<Node>> pending;
    auto detach_children = [&](Node& n) {
      for (auto& [key, child] : n.children) pending.push_back(std::move(child));
      n.children.clear();
    };
    detach_children(root_);
    while (!pending.empty()) {
      std::unique_ptr<Node> n = std::move(pending.back());
      pending.pop_back();
      detach_children(*n);
    }  // each node is destroyed childless
  }

  // Adds `sub` to `filter`. Returns true when the filter had no subscriber before (the first one).
  bool add(std::string_view filter, const Sub& sub) {
    Node* n = &root_;
    for_each_level(filter, [&](std::string_view level) {
      auto it = n->children.find(level);
      if (it == n->children.end()) {
        auto child = std::make_unique<Node>();
        child->parent = n;
        child->key = std::string(level);
        it = n->children.emplace(child->key, std::move(child)).first;
      }
      n = it->second.get();
    });
    if (std::find(n->subs.begin(), n->subs.end(), sub) != n->subs.end()) return false;
    n->subs.push_back(sub);
    if (n->subs.size() == 1) ++filters_;
    return n->subs.size() == 1;
  }

  // Removes `sub` from `filter`. Returns true when the filter has no subscriber left (the last one
  // went); false when it still has some or `sub` was not subscribed.
  bool remove(std::string_view filter, const Sub& sub) {
    Node* n = find(filter);
    if (!n) return false;
    auto it = std::find(n->subs.begin(), n->subs.end(), sub);
    if (it == n->subs.end()) return false;
    *it = n->subs.back();
    n->subs.pop_back();
    if (!n->subs.empty()) return false;
    --filters_;
    prune(n);
    return true;
  }

  bool has_subscribers(std::string_view filter) const {
    const Node* n = find(filter);
    return n && !n->subs.empty();
  }

  // Calls fn(sub) for each subscription whose filter matches `topic`; a subscriber with several
  // matching filters is visited once per filter.
  template <typename Fn>
  void match(std::string_view topic, Fn&& fn) const {
    // Inline capacity for the usual topic, so that matching allocates nothing per message.
    boost::container::small_vector<std::string_view, 16> levels;
    for_each_level(topic, [&](std::string_view l) { levels.push_back(l); });
    // [MQTT-4.7.2-1]: a leading wildcard does not match topics starting with '$'.
    const bool dollar = !topic.empty() && topic[0] == '$';
    boost::container::small_vector<std::pair<const Node*, std::size_t>, 32> stack{{&root_, 0}};
    while (!stack.empty()) {
      const auto [n, i] = stack.back();
      stack.pop_back();
      const bool wildcard_ok = !(dollar && i == 0);
      if (wildcard_ok) {
        if (auto h = n->children.find(std::string_view("#")); h != n->children.end()) {
          for (const auto& s : h->second->subs) fn(s);
        }
      }
      if (i == levels.size()) {
        for (const auto& s : n->subs) fn(s);
        continue;
      }
      if (wildcard_ok) {
        if (auto p = n->children.find(std::string_view("+")); p != n->children.end()) {
          stack.emplace_back(p->second.get(), i + 1);
        }
      }
      if (levels[i] != "+" && levels[i] != "#") {
        if (auto c = n->children.find(levels[i]); c != n->children.end()) {
          stack.emplace_back(c->second.get(), i + 1);
        }
      }
    }
  }

  // Number of filters with at least one subscriber.
  std::size_t filter_count() const { return filters_; }

 private:
  struct Node {
    Node* parent = nullptr;
    std::string key;
    std::unordered_map<std::string, std::unique_ptr<Node>, StringHash, std::equal_to<>> children;
    std::vector<Sub> subs;
  };

  template <typename Fn>
  static void for_each_level(std::string_view s, Fn&& fn) {
    std::size_t start = 0;
    for (;;) {
      const auto slash = s.find('/', start);
      if (slash == std::string_view::npos) {
        fn(s.substr(start));
        return;
      }
      fn(s.substr(start, slash - start));
      start = slash + 1;
    }
  }

  Node* find(std::string_view filter) const {
    const Node* n = &root_;
    bool missing = false;
    for_each_level(filter, [&](std::string_view level) {
      if (missing) return;
      auto it = n->children.find(level);
      if (it == n->children.end()) {
        missing = true;
        return;
      }
      n = it->second.get();
    });
    return missing ? nullptr : const_cast<Node*>(n);
  }

  void prune(Node* n) {
    while (n != &root_ && n->subs.empty() && n->children.empty()) {
      Node* parent = n->parent;
      const std::string key = n->key;  // erasing destroys n, and n->key with it
      parent->children.erase(key);
      n = parent;
    }
  }

  Node root_;
  std::size_t filters_ = 0;
};

}  // namespace mqtt_proxy::mqtt
