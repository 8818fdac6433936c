// The acl_file plugin: Mosquitto's acl_file (acl.hpp) behind the C ABI of mqtt_proxy/plugin.h.
//
//   --plugin mqtt_proxy_acl_file.so --plugin-opt acl_file=/etc/mqtt_proxy/acl
//
// PUBLISH and wills need write access, each delivery to a subscriber read access (auth_read);
// SUBSCRIBE is not checked, as Mosquitto 2.0 does not check it (acl.hpp), so auth_subscribe is
// left NULL. A refusal is MQTT_PROXY_NOT_AUTHORIZED and one debug line.
// Nothing here throws across the ABI: an exception (out of memory) refuses the packet.
#include "mqtt_proxy/plugin.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <string_view>

#include "acl.hpp"

namespace mqtt_proxy::acl_file {
namespace {

struct State {
  Acl acl;
  const mqtt_proxy_host* host;
};

std::string_view view(mqtt_proxy_str s) {
  return {s.data, s.len};
}
std::string_view view(const mqtt_proxy_value* v) {
  return {v->data, v->len};
}

void write_error(char* error, std::size_t error_len, const std::string& message) {
  if (error == nullptr || error_len == 0) return;
  std::snprintf(error, error_len, "%s", message.c_str());
}

// Network bytes for a log line: controls (a CR/LF would forge a line), '"' and '\\' escaped.
void append_escaped(std::string& line, std::string_view v) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (const char ch : v) {
    const auto u = static_cast<unsigned char>(ch);
    if (u < 0x20 || u == 0x7f || ch == '"' || ch == '\\') {
      line += "\\x";
      line += kHex[u >> 4];
      line += kHex[u & 0xf];
    } else {
      line += ch;
    }
  }
}

void log_refusal(const State& s, const mqtt_proxy_client* c, const char* what,
                 std::string_view topic) {
  if (s.host == nullptr || s.host->log == nullptr) return;
  std::string line = "denied ";
  line += what;
  line += " \"";
  append_escaped(line, topic);
  line += "\" to client \"";
  append_escaped(line, view(c->client_id));
  line += "\"";
  if (c->username.len != 0) {
    line += " (user \"";
    append_escaped(line, view(c->username));
    line += "\")";
  }
  s.host->log(s.host, MQTT_PROXY_LOG_DEBUG, line.c_str());
}

// The whole file, or false with errno set.
bool read_file(const char* path, std::string& out) {
  std::FILE* f = std::fopen(path, "rb");
  if (f == nullptr) return false;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  const bool failed = std::ferror(f) != 0;
  const int saved = errno;
  std::fclose(f);
  errno = saved;
  return !failed;
}

void* acl_init(const mqtt_proxy_option* options, std::size_t option_count,
               const mqtt_proxy_host* host, char* error, std::size_t error_len) {
  try {
    const char* path = nullptr;
    for (std::size_t i = 0; i < option_count; ++i) {
      if (std::strcmp(options[i].name, "acl_file") == 0) {
        path = options[i].value;
      } else {
        write_error(error, error_len,
                    std::string("unknown option \"") + options[i].name + "\" (acl_file=PATH)");
        return nullptr;
      }
    }
    if (path == nullptr || *path == '\0') {
      write_error(error, error_len, "acl_file=PATH is required");
      return nullptr;
    }
    std::string text;
    if (!read_file(path, text)) {
      write_error(error, error_len, std::string("acl_file ") + path + ": " + std::strerror(errno));
      return nullptr;
    }
    auto acl = Acl::parse(text);
    if (!acl) {
      write_error(error, error_len, std::string("acl_file ") + path + ": " + acl.error());
      return nullptr;
    }
    auto state = std::make_unique<State>(State{std::move(*acl), host});
    if (host != nullptr && host->log != nullptr) {
      for (const std::string& w : state->acl.warnings()) {
        host->log(host, MQTT_PROXY_LOG_WARN, (std::string("acl_file ") + path + ": " + w).c_str());
      }
      const std::string summary = std::string("acl_file ") + path + ": " +
                                  std::to_string(state->acl.user_count()) + " user sections" +
                                  (state->acl.has_anonymous() ? " (with anonymous)" : "") + ", " +
                                  std::to_string(state->acl.pattern_count()) + " patterns";
      host->log(host, MQTT_PROXY_LOG_INFO, summary.c_str());
    }
    return state.release();
  } catch (const std::exception& e) {
    write_error(error, error_len, std::string("acl_file: ") + e.what());
    return nullptr;
  }
}

void acl_cleanup(void* self) {
  delete static_cast<State*>(self);
}

int acl_auth_publish(void* self, const mqtt_proxy_client* client, mqtt_proxy_value* topic,
                     mqtt_proxy_value* /*payload*/, std::uint8_t /*qos*/, int /*retain*/) {
  const auto& s = *static_cast<const State*>(self);
  try {
    if (s.acl.may_write(view(client->client_id), view(client->username), view(topic)))
      return MQTT_PROXY_OK;
    log_refusal(s, client, "PUBLISH to", view(topic));
  } catch (const std::exception&) {  // bad_alloc: refuse rather than let it cross the ABI
  }
  return MQTT_PROXY_NOT_AUTHORIZED;
}

int acl_auth_read(void* self, const mqtt_proxy_client* client, mqtt_proxy_str topic) {
  const auto& s = *static_cast<const State*>(self);
  try {
    if (s.acl.may_read(view(client->client_id), view(client->username), view(topic)))
      return MQTT_PROXY_OK;
    log_refusal(s, client, "delivery of", view(topic));
  } catch (const std::exception&) {
  }
  return MQTT_PROXY_NOT_AUTHORIZED;
}

const mqtt_proxy_plugin kPlugin = [] {
  mqtt_proxy_plugin p{};
  p.api_version = MQTT_PROXY_PLUGIN_API_VERSION;
  p.struct_size = sizeof(mqtt_proxy_plugin);
  p.name = "acl_file";
  p.init = acl_init;
  p.cleanup = acl_cleanup;
  p.auth_publish = acl_auth_publish;
  p.auth_read = acl_auth_read;
  return p;
}();

}  // namespace
}  // namespace mqtt_proxy::acl_file

extern "C" __attribute__((visibility("default"))) const mqtt_proxy_plugin* mqtt_proxy_plugin_entry(
    void) {
  return &mqtt_proxy::acl_file::kPlugin;
}
