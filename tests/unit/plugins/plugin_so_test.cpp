// The shipped plugins as the proxy sees them: the built shared objects, dlopen()ed and called
// through the C ABI of mqtt_proxy/plugin.h with a fake host.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "mqtt_proxy/plugin.h"

namespace {

// The host's half of the ABI: set() copies into the std::string behind `opaque` and points the
// value at it, as the proxy's does; log() keeps the lines.
struct FakeHost {
  mqtt_proxy_host host{};
  std::vector<std::string> lines;

  FakeHost() {
    host.set = [](mqtt_proxy_value* v, const char* data, std::size_t len) {
      auto* s = static_cast<std::string*>(v->opaque);
      s->assign(data, len);
      v->data = s->data();
      v->len = s->size();
    };
    host.log = [](const mqtt_proxy_host* h, int level, const char* message) {
      static_cast<FakeHost*>(h->opaque)->lines.push_back(std::to_string(level) + " " + message);
    };
    host.opaque = this;
  }
  FakeHost(const FakeHost&) = delete;
  FakeHost& operator=(const FakeHost&) = delete;
};

// A value that starts as `original`; `set` records whether the plugin replaced it.
struct Value {
  std::string original;
  std::string replaced;
  mqtt_proxy_value v{};

  explicit Value(std::string_view s) : original(s) {
    v.data = original.data();
    v.len = original.size();
    v.opaque = &replaced;
  }
  Value(const Value&) = delete;
  Value& operator=(const Value&) = delete;
  std::string_view get() const { return {v.data, v.len}; }
  bool changed() const { return v.data != original.data(); }
};

struct Client {
  std::string id;
  std::string user;
  mqtt_proxy_client c{};

  Client(std::string_view client_id, std::string_view username) : id(client_id), user(username) {
    c.client_id = {id.data(), id.size()};
    c.username = {user.data(), user.size()};
    c.address = {"10.0.0.2", 8};
    c.port = 40000;
    c.protocol_version = 5;
    c.transport = MQTT_PROXY_TRANSPORT_TCP;
    c.connection = 1;
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
};

class Plugin {
 public:
  explicit Plugin(const char* path) : handle_(dlopen(path, RTLD_NOW | RTLD_LOCAL)) {
    if (handle_ == nullptr) {
      ADD_FAILURE() << dlerror();
      return;
    }
    auto entry =
        reinterpret_cast<mqtt_proxy_plugin_entry_fn>(dlsym(handle_, MQTT_PROXY_PLUGIN_ENTRY));
    if (entry == nullptr) {
      ADD_FAILURE() << "no " << MQTT_PROXY_PLUGIN_ENTRY << " in " << path;
      return;
    }
    plugin_ = entry();
  }
  ~Plugin() {
    if (plugin_ != nullptr && self_ != nullptr) plugin_->cleanup(self_);
    if (handle_ != nullptr) dlclose(handle_);
  }
  Plugin(const Plugin&) = delete;
  Plugin& operator=(const Plugin&) = delete;

  const mqtt_proxy_plugin* operator->() const { return plugin_; }
  bool loaded() const { return plugin_ != nullptr; }

  // init() with NAME=VALUE options; the error, empty on success.
  std::string init(const std::vector<std::pair<std::string, std::string>>& opts, FakeHost& host) {
    std::vector<mqtt_proxy_option> options;
    for (const auto& [name, value] : opts) options.push_back({name.c_str(), value.c_str()});
    char error[256] = "";
    self_ = plugin_->init(options.data(), options.size(), &host.host, error, sizeof error);
    return self_ != nullptr ? std::string() : std::string(error);
  }
  void* self() const { return self_; }

 private:
  void* handle_;
  const mqtt_proxy_plugin* plugin_ = nullptr;
  void* self_ = nullptr;
};

std::string write_file(const std::string& name, std::string_view text) {
  const std::string path = testing::TempDir() + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

TEST(AclFilePlugin, DescribesItselfWithThisHeadersVersion) {
  Plugin p(MQTT_PROXY_ACL_FILE_PLUGIN);
  ASSERT_TRUE(p.loaded());
  EXPECT_EQ(p->api_version, MQTT_PROXY_PLUGIN_API_VERSION);
  EXPECT_EQ(p->struct_size, sizeof(mqtt_proxy_plugin));
  EXPECT_STREQ(p->name, "acl_file");
  EXPECT_NE(p->auth_publish, nullptr);
  EXPECT_NE(p->auth_read, nullptr);
  EXPECT_EQ(p->auth_subscribe, nullptr);  // Mosquitto 2.0 checks no subscription
  EXPECT_EQ(p->auth_connect, nullptr);
}

TEST(AclFilePlugin, InitNeedsAReadableValidFile) {
  Plugin p(MQTT_PROXY_ACL_FILE_PLUGIN);
  ASSERT_TRUE(p.loaded());
  FakeHost host;
  EXPECT_EQ(p.init({}, host), "acl_file=PATH is required");
  EXPECT_EQ(p.init({{"acl_file", "/nonexistent/acl"}}, host),
            "acl_file /nonexistent/acl: No such file or directory");
  const std::string bad = write_file("acl_bad", "topic read a\ntopic sometimes b\n");
  EXPECT_EQ(p.init({{"acl_file", bad}}, host),
            "acl_file " + bad +
                ": line 2: invalid topic access type \"sometimes\" (read, write, readwrite or "
                "deny)");
  EXPECT_EQ(p.init({{"acl", "x"}}, host), "unknown option \"acl\" (acl_file=PATH)");
}

TEST(AclFilePlugin, RefusesWritesAndReadsTheFileDoesNotGrant) {
  Plugin p(MQTT_PROXY_ACL_FILE_PLUGIN);
  ASSERT_TRUE(p.loaded());
  FakeHost host;
  const std::string path =
      write_file("acl_ok",
                 "topic read public/#\nuser bob\ntopic readwrite bob/#\npattern write dev/%c/out\n"
                 "pattern read a/b\n");
  ASSERT_EQ(p.init({{"acl_file", path}}, host), "");
  ASSERT_EQ(host.lines.size(), 2u);
  EXPECT_EQ(host.lines[0],
            "3 acl_file " + path + ": line 5: ACL pattern \"a/b\" does not contain %c or %u");
  EXPECT_EQ(host.lines[1], "2 acl_file " + path + ": 2 user sections (with anonymous), 2 patterns");
  host.lines.clear();

  const Client bob("b1", "bob");
  const Client anon("d7", "");
  Value payload("x");
  {
    Value topic("bob/t");
    EXPECT_EQ(p->auth_publish(p.self(), &bob.c, &topic.v, &payload.v, 1, 0), MQTT_PROXY_OK);
    EXPECT_FALSE(topic.changed());
  }
  {
    Value topic("public/t");
    EXPECT_EQ(p->auth_publish(p.self(), &anon.c, &topic.v, &payload.v, 0, 0),
              MQTT_PROXY_NOT_AUTHORIZED);
    ASSERT_EQ(host.lines.size(), 1u);
    EXPECT_EQ(host.lines[0], "1 denied PUBLISH to \"public/t\" to client \"d7\"");
  }
  {
    Value topic("dev/d7/out");
    EXPECT_EQ(p->auth_publish(p.self(), &anon.c, &topic.v, &payload.v, 0, 1), MQTT_PROXY_OK);
  }
  EXPECT_EQ(p->auth_read(p.self(), &anon.c, {"public/news", 11}), MQTT_PROXY_OK);
  EXPECT_EQ(p->auth_read(p.self(), &bob.c, {"public/news", 11}), MQTT_PROXY_NOT_AUTHORIZED);
  EXPECT_EQ(host.lines.back(),
            "1 denied delivery of \"public/news\" to client \"b1\" (user \"bob\")");
}

TEST(TopicRewritePlugin, DescribesItselfWithThisHeadersVersion) {
  Plugin p(MQTT_PROXY_TOPIC_REWRITE_PLUGIN);
  ASSERT_TRUE(p.loaded());
  EXPECT_EQ(p->api_version, MQTT_PROXY_PLUGIN_API_VERSION);
  EXPECT_EQ(p->struct_size, sizeof(mqtt_proxy_plugin));
  EXPECT_STREQ(p->name, "topic_rewrite");
  EXPECT_NE(p->auth_publish, nullptr);
  EXPECT_NE(p->auth_subscribe, nullptr);
  EXPECT_EQ(p->auth_read, nullptr);
}

TEST(TopicRewritePlugin, RefusesBadOptions) {
  Plugin p(MQTT_PROXY_TOPIC_REWRITE_PLUGIN);
  ASSERT_TRUE(p.loaded());
  FakeHost host;
  const std::string bad_prefix =
      "expected FROM:TO, each whole topic levels (no wildcards, no leading '$' or trailing '/')";
  EXPECT_EQ(p.init({{"prefix", "a"}}, host), "prefix=a: " + bad_prefix);
  EXPECT_EQ(p.init({{"prefix", "a/#:b"}}, host), "prefix=a/#:b: " + bad_prefix);
  EXPECT_EQ(p.init({{"prefix", "a:b/"}}, host), "prefix=a:b/: " + bad_prefix);
  EXPECT_EQ(p.init({{"prefix", ":b"}}, host), "prefix=:b: " + bad_prefix);
  EXPECT_EQ(p.init({{"max_payload", "-1"}}, host), "max_payload=-1: expected a number of bytes");
  EXPECT_EQ(p.init({{"max_payload", "12k"}}, host), "max_payload=12k: expected a number of bytes");
  EXPECT_EQ(p.init({{"require_utf8", "yes"}}, host), "require_utf8=yes: expected 1 or 0");
  EXPECT_EQ(p.init({{"rule", "a=b"}}, host),
            "unknown option \"rule\" (prefix, max_payload, require_utf8)");
}

class TopicRewrite : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(p_.loaded());
    ASSERT_EQ(p_.init({{"prefix", "sensors:site1/sensors"},
                       {"prefix", "cmd:site1/cmd"},
                       {"max_payload", "8"},
                       {"require_utf8", "1"}},
                      host_),
              "");
    ASSERT_EQ(host_.lines.size(), 1u);
    EXPECT_EQ(host_.lines[0], "2 2 prefix rules, max_payload set, require_utf8 on");
  }

  // The topic after auth_publish, or "refused 0x.." .
  std::string publish(std::string_view topic, std::string_view payload = "ok") {
    Value t(topic);
    Value pl(payload);
    const int rc = p_->auth_publish(p_.self(), &client_.c, &t.v, &pl.v, 1, 0);
    if (rc != MQTT_PROXY_OK) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "refused 0x%02x", static_cast<unsigned>(rc));
      return buf;
    }
    return std::string(t.get());
  }
  std::string subscribe(std::string_view filter) {
    Value f(filter);
    EXPECT_EQ(p_->auth_subscribe(p_.self(), &client_.c, &f.v, 1), MQTT_PROXY_OK);
    return std::string(f.get());
  }

  FakeHost host_;  // before the plugin: its cleanup() logs
  Plugin p_{MQTT_PROXY_TOPIC_REWRITE_PLUGIN};
  Client client_{"c1", ""};
};

TEST_F(TopicRewrite, RewritesPublishTopicsByWholeLevels) {
  EXPECT_EQ(publish("sensors/t1"), "site1/sensors/t1");
  EXPECT_EQ(publish("sensors"), "site1/sensors");
  EXPECT_EQ(publish("cmd/reboot"), "site1/cmd/reboot");
  EXPECT_EQ(publish("sensorsX/t1"), "sensorsX/t1");
  EXPECT_EQ(publish("other/sensors/t1"), "other/sensors/t1");
}

TEST_F(TopicRewrite, RewritesSubscriptionFiltersTheSameWay) {
  EXPECT_EQ(subscribe("sensors/#"), "site1/sensors/#");
  EXPECT_EQ(subscribe("sensors/+/temp"), "site1/sensors/+/temp");
  EXPECT_EQ(subscribe("sensors"), "site1/sensors");
  EXPECT_EQ(subscribe("$share/g1/sensors/#"), "$share/g1/site1/sensors/#");
  EXPECT_EQ(subscribe("#"), "#");  // not literally under "sensors": left alone
  EXPECT_EQ(subscribe("+/temp"), "+/temp");
}

TEST_F(TopicRewrite, RefusesLargePayloadsAndNonUtf8) {
  EXPECT_EQ(publish("sensors/t", "12345678"), "site1/sensors/t");
  EXPECT_EQ(publish("sensors/t", "123456789"), "refused 0x97");
  EXPECT_EQ(publish("a", "\xc3\xa9t\xc3\xa9"), "a");
  EXPECT_EQ(publish("a", "\xff"), "refused 0x99");
  EXPECT_EQ(publish("a", "\xc0\xaf"), "refused 0x99");          // overlong '/'
  EXPECT_EQ(publish("a", "\xed\xa0\x80"), "refused 0x99");      // a surrogate
  EXPECT_EQ(publish("a", "\xf4\x90\x80\x80"), "refused 0x99");  // above U+10FFFF
  EXPECT_EQ(publish("a", "\xe2\x82"), "refused 0x99");          // cut short
}

}  // namespace
