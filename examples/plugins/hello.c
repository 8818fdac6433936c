/* hello: the smallest useful plugin, built outside mqtt_proxy's tree against its one installed
 * header (docs/plugins.md, "A plugin built outside the tree"):
 *
 *   cc -std=c11 -shared -fPIC -I PREFIX/include hello.c -o hello.so
 *   mqtt_proxy ... --plugin ./hello.so --plugin-opt greeting=hi
 *
 * It logs each accepted CONNECT and counts them; everything but the entry point is static, so
 * that is the one symbol it exports.
 */
#include <mqtt_proxy/plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct hello {
  const mqtt_proxy_host* host;
  char greeting[32]; /* a copy: the options live only for the call to init() */
  unsigned long connects;
};

static void* hello_init(const mqtt_proxy_option* options, size_t option_count,
                        const mqtt_proxy_host* host, char* error, size_t error_len) {
  struct hello* h = calloc(1, sizeof *h);
  size_t i;
  if (h == NULL) {
    snprintf(error, error_len, "out of memory");
    return NULL;
  }
  h->host = host;
  snprintf(h->greeting, sizeof h->greeting, "hello");
  for (i = 0; i < option_count; ++i) {
    if (strcmp(options[i].name, "greeting") == 0) {
      snprintf(h->greeting, sizeof h->greeting, "%s", options[i].value);
    } else {
      snprintf(error, error_len, "unknown option \"%s\" (greeting)", options[i].name);
      free(h);
      return NULL;
    }
  }
  return h;
}

static void hello_on_connect(void* self, const mqtt_proxy_client* client) {
  struct hello* h = self;
  char line[256];
  ++h->connects;
  snprintf(line, sizeof line, "%s, %.*s (connection %lu)", h->greeting, (int)client->client_id.len,
           client->client_id.data, h->connects);
  h->host->log(h->host, MQTT_PROXY_LOG_INFO, line);
}

static void hello_cleanup(void* self) {
  struct hello* h = self;
  char line[64];
  snprintf(line, sizeof line, "%lu connections", h->connects);
  h->host->log(h->host, MQTT_PROXY_LOG_INFO, line);
  free(h);
}

static const mqtt_proxy_plugin kHello = {
    .api_version = MQTT_PROXY_PLUGIN_API_VERSION,
    .struct_size = sizeof(mqtt_proxy_plugin),
    .name = "hello",
    .init = hello_init,
    .cleanup = hello_cleanup,
    .on_connect = hello_on_connect,
};

const mqtt_proxy_plugin* mqtt_proxy_plugin_entry(void) {
  return &kHello;
}
