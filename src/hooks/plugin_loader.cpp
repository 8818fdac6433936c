#include "mqtt_proxy/hooks/plugin_loader.hpp"

#include <dlfcn.h>

#include <array>

#include "mqtt_proxy/plugin.h"

namespace mqtt_proxy::hooks {

namespace {

mqtt_proxy_str view(std::string_view s) {
  return mqtt_proxy_str{s.data(), s.size()};
}

// mqtt_proxy_host.set(): the value's opaque is the Field it stands for.
void set_value(mqtt_proxy_value* v, const char* data, std::size_t len) {
  auto* field = static_cast<Field*>(v->opaque);
  field->set(std::string_view(data, len));
  const std::string_view now = field->get();
  v->data = now.data();
  v->len = now.size();
}

mqtt_proxy_value value_of(Field& f) {
  const std::string_view v = f.get();
  return mqtt_proxy_value{v.data(), v.size(), &f};
}

class PluginHooks final : public Hooks {
 public:
  PluginHooks(void* library, const mqtt_proxy_plugin* plugin, log::Logger& log)
      : library_(library), p_(plugin), log_(log), name_(plugin->name ? plugin->name : "plugin") {
    host_.set = &set_value;
    host_.log = &log_line;
    host_.opaque = this;
    component_ = "plugin:" + name_;
  }
  ~PluginHooks() override {
    if (self_ && p_->cleanup) p_->cleanup(self_);
    dlclose(library_);
  }
  PluginHooks(const PluginHooks&) = delete;
  PluginHooks& operator=(const PluginHooks&) = delete;

  // init(): false (and `error`) when the plugin refuses to start.
  bool init(const PluginSpec& spec, std::string& error) {
    std::vector<mqtt_proxy_option> opts;
    opts.reserve(spec.options.size());
    for (const auto& [k, v] : spec.options) opts.push_back({k.c_str(), v.c_str()});
    std::array<char, 512> err{};
    self_ = p_->init(opts.data(), opts.size(), &host_, err.data(), err.size());
    if (self_) return true;
    err.back() = '\0';
    error = err[0] ? err.data() : "init failed and said nothing";
    return false;
  }

  std::string_view name() const override { return name_; }
  bool reads() const override { return p_->auth_read != nullptr; }

  Reason auth_connect(const Client& c, Credentials& cred) override {
    if (!p_->auth_connect) return kOk;
    const mqtt_proxy_client client = to_c(c);
    mqtt_proxy_value id = value_of(cred.client_id);
    mqtt_proxy_value user = value_of(cred.username);
    mqtt_proxy_value pass = value_of(cred.password);
    const int r = p_->auth_connect(self_, &client, &id, &user, &pass);
    // Setting a username or password gives the CONNECT one.
    cred.has_username = cred.has_username || cred.username.changed();
    cred.has_password = cred.has_password || cred.password.changed();
    return reason(r);
  }
  Reason auth_publish(const Client& c, Field& topic, Field& payload, std::uint8_t qos,
                      bool retain) override {
    if (!p_->auth_publish) return kOk;
    const mqtt_proxy_client client = to_c(c);
    mqtt_proxy_value t = value_of(topic);
    mqtt_proxy_value b = value_of(payload);
    return reason(p_->auth_publish(self_, &client, &t, &b, qos, retain ? 1 : 0));
  }
  Reason auth_subscribe(const Client& c, Field& filter, std::uint8_t qos) override {
    if (!p_->auth_subscribe) return kOk;
    const mqtt_proxy_client client = to_c(c);
    mqtt_proxy_value f = value_of(filter);
    return reason(p_->auth_subscribe(self_, &client, &f, qos));
  }
  Reason auth_read(const Client& c, std::string_view topic) override {
    const mqtt_proxy_client client = to_c(c);
    return reason(p_->auth_read(self_, &client, view(topic)));
  }
  void on_connect(const Client& c) override {
    if (!p_->on_connect) return;
    const mqtt_proxy_client client = to_c(c);
    p_->on_connect(self_, &client);
  }
  void on_publish(const Client& c, std::string_view topic, std::string_view payload) override {
    if (!p_->on_publish) return;
    const mqtt_proxy_client client = to_c(c);
    p_->on_publish(self_, &client, view(topic), view(payload));
  }
  void on_subscribe(const Client& c, std::span<const std::string> filters) override {
    if (p_->on_subscribe) list(p_->on_subscribe, c, filters);
  }
  void on_unsubscribe(const Client& c, std::span<const std::string> filters) override {
    if (p_->on_unsubscribe) list(p_->on_unsubscribe, c, filters);
  }
  void on_disconnect(const Client& c) override {
    if (!p_->on_disconnect) return;
    const mqtt_proxy_client client = to_c(c);
    p_->on_disconnect(self_, &client);
  }

 private:
  using ListFn = void (*)(void*, const mqtt_proxy_client*, const mqtt_proxy_str*, std::size_t);
  void list(ListFn fn, const Client& c, std::span<const std::string> filters) {
    const mqtt_proxy_client client = to_c(c);
    std::vector<mqtt_proxy_str> v;
    v.reserve(filters.size());
    for (const auto& f : filters) v.push_back(view(f));
    fn(self_, &client, v.data(), v.size());
  }
  // A plugin's int, as a reason: 0 passes; a reason code (0x80-0xff) refuses with itself; any
  // other value refuses too, as 0x80, failing closed (a plugin returning 1 or a Mosquitto error
  // code such as MOSQ_ERR_ACL_DENIED means "no").
  static Reason reason(int r) {
    if (r == MQTT_PROXY_OK) return kOk;
    if (r < 0x80 || r > 0xff) return 0x80;
    return static_cast<Reason>(r);
  }
  static mqtt_proxy_client to_c(const Client& c) {
    mqtt_proxy_client out{};
    out.client_id = view(c.client_id);
    out.username = view(c.username);
    out.address = view(c.address_text);
    out.port = c.address.port;
    out.protocol_version = c.protocol_version;
    out.transport = c.transport == Transport::WebSocket ? MQTT_PROXY_TRANSPORT_WEBSOCKET
                                                        : MQTT_PROXY_TRANSPORT_TCP;
    out.tls_cn = view(c.tls_cn);
    out.connection = c.connection;
    return out;
  }
  static void log_line(const mqtt_proxy_host* host, int level, const char* message) {
    auto* self = static_cast<PluginHooks*>(host->opaque);
    const std::string_view m = message ? message : "";
    switch (level) {
      case MQTT_PROXY_LOG_DEBUG:
        self->log_.debug(self->component_, "{}", m);
        break;
      case MQTT_PROXY_LOG_WARN:
        self->log_.warn(self->component_, "{}", m);
        break;
      case MQTT_PROXY_LOG_ERROR:
        self->log_.error(self->component_, "{}", m);
        break;
      default:
        self->log_.info(self->component_, "{}", m);
    }
  }

  void* library_;
  const mqtt_proxy_plugin* p_;
  log::Logger& log_;
  std::string name_;
  std::string component_;
  mqtt_proxy_host host_{};
  void* self_ = nullptr;
};

}  // namespace

std::variant<std::unique_ptr<Hooks>, LoadError> load_plugin(const PluginSpec& spec,
                                                            log::Logger& log) {
  auto fail = [&](std::string_view why) {
    return LoadError{fmt::format("plugin {}: {}", spec.path, why)};
  };
  // RTLD_LOCAL: two plugins may use the same symbol names without meeting.
  void* lib = dlopen(spec.path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* e = dlerror();
    return fail(e ? e : "cannot be loaded");
  }
  auto close_with = [&](std::string_view why) {
    dlclose(lib);
    return fail(why);
  };
  void* sym = dlsym(lib, MQTT_PROXY_PLUGIN_ENTRY);
  if (!sym) return close_with("does not export " MQTT_PROXY_PLUGIN_ENTRY " (not a plugin?)");
  auto entry = reinterpret_cast<mqtt_proxy_plugin_entry_fn>(sym);  // NOLINT: dlsym's contract
  const mqtt_proxy_plugin* p = entry();
  if (!p) return close_with(MQTT_PROXY_PLUGIN_ENTRY " returned nothing");
  if (p->api_version != MQTT_PROXY_PLUGIN_API_VERSION) {
    return close_with(
        fmt::format("built against plugin API {}, this mqtt_proxy has {}; rebuild "
                    "it against this version's mqtt_proxy/plugin.h",
                    p->api_version, MQTT_PROXY_PLUGIN_API_VERSION));
  }
  if (p->struct_size != sizeof(mqtt_proxy_plugin)) {
    return close_with(
        fmt::format("its mqtt_proxy_plugin is {} bytes, this mqtt_proxy's is {} "
                    "(a header of another version); rebuild it",
                    p->struct_size, sizeof(mqtt_proxy_plugin)));
  }
  if (!p->init) return close_with("has no init()");
  auto hooks = std::make_unique<PluginHooks>(lib, p, log);
  std::string error;
  if (!hooks->init(spec, error)) return fail(fmt::format("init failed: {}", error));
  log.info("hooks", "plugin {} loaded from {} with {} option(s)", hooks->name(), spec.path,
           spec.options.size());
  return hooks;
}

}  // namespace mqtt_proxy::hooks
