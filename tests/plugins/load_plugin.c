/* load_plugin PLUGIN.so: what the proxy does with a plugin, in a few lines of C, for the
 * out-of-tree build test (out_of_tree.sh): dlopen() it, check that it was built against this
 * header's API version, then init(greeting=hi), one on_connect() and cleanup(), printing what the
 * plugin logs. Exits 1 on any mismatch.
 */
#include <dlfcn.h>
#include <mqtt_proxy/plugin.h>
#include <stdio.h>
#include <string.h>

static void host_set(mqtt_proxy_value* value, const char* data, size_t len) {
  (void)value;
  (void)data;
  (void)len;
}

static void host_log(const mqtt_proxy_host* host, int level, const char* message) {
  (void)host;
  printf("log %d: %s\n", level, message);
}

int main(int argc, char** argv) {
  void* handle;
  void* symbol;
  mqtt_proxy_plugin_entry_fn entry;
  const mqtt_proxy_plugin* plugin;
  mqtt_proxy_host host = {host_set, host_log, NULL};
  mqtt_proxy_option options[] = {{"greeting", "hi"}};
  mqtt_proxy_client client;
  char error[256] = "";
  void* self;
  if (argc != 2) {
    fprintf(stderr, "usage: load_plugin PLUGIN.so\n");
    return 2;
  }
  handle = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (handle == NULL) {
    fprintf(stderr, "%s\n", dlerror());
    return 1;
  }
  symbol = dlsym(handle, MQTT_PROXY_PLUGIN_ENTRY);
  if (symbol == NULL) {
    fprintf(stderr, "%s: no %s\n", argv[1], MQTT_PROXY_PLUGIN_ENTRY);
    return 1;
  }
  memcpy(&entry, &symbol, sizeof entry); /* ISO C has no cast from void* to a function pointer */
  plugin = entry();
  if (plugin->api_version != MQTT_PROXY_PLUGIN_API_VERSION ||
      plugin->struct_size != sizeof(mqtt_proxy_plugin)) {
    fprintf(stderr,
            "plugin %s: built against plugin API %u (struct size %u), this host has %d (%zu)\n",
            plugin->name, (unsigned)plugin->api_version, (unsigned)plugin->struct_size,
            MQTT_PROXY_PLUGIN_API_VERSION, sizeof(mqtt_proxy_plugin));
    return 1;
  }
  printf("plugin %s: api_version %u, struct_size %u\n", plugin->name, (unsigned)plugin->api_version,
         (unsigned)plugin->struct_size);
  self = plugin->init(options, 1, &host, error, sizeof error);
  if (self == NULL) {
    fprintf(stderr, "plugin %s: %s\n", plugin->name, error);
    return 1;
  }
  memset(&client, 0, sizeof client);
  client.client_id.data = "c1";
  client.client_id.len = 2;
  client.protocol_version = 4;
  if (plugin->on_connect != NULL) plugin->on_connect(self, &client);
  if (plugin->cleanup != NULL) plugin->cleanup(self);
  dlclose(handle);
  return 0;
}
