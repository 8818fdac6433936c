// Plugins: shared objects built against mqtt_proxy/plugin.h, loaded with dlopen and wrapped as
// Hooks. A plugin built against another API version is refused before any of its code but the
// entry function runs (docs/plugins.md).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "mqtt_proxy/hooks/hooks.hpp"

namespace mqtt_proxy::hooks {

struct PluginSpec {
  std::string path;
  std::vector<std::pair<std::string, std::string>> options;  // --plugin-opt NAME=VALUE, in order
};

struct LoadError {
  std::string message;  // one line, naming the plugin's path
};

// Loads the plugin and calls its init(). The Hooks it returns calls cleanup() and unloads it when
// destroyed.
std::variant<std::unique_ptr<Hooks>, LoadError> load_plugin(const PluginSpec& spec,
                                                            log::Logger& log);

}  // namespace mqtt_proxy::hooks
