/* The plugin interface of mqtt_proxy: a small C ABI, so that a plugin built with another compiler,
 * another C++ standard library or in C works, and so that the proxy can tell a plugin built
 * against another version of this header from one it can call (docs/plugins.md).
 *
 * A plugin is a shared object that exports one function, mqtt_proxy_plugin_entry(), returning a
 * description: the API version it was built against, its name, and the hooks it implements. A
 * hook left NULL is not called (and costs nothing: mqtt_proxy_plugin.auth_read, called for every
 * message delivered, is the one to leave NULL unless the plugin needs it).
 *
 * Every call comes from the proxy's one event-loop thread, in the order the plugins were given on
 * the command line; a hook must not block (each call is timed, and one over the budget is logged
 * and counted). Strings are not NUL-terminated: each comes with its length, and lives only for
 * the call. A hook that changes a value does so through mqtt_proxy_host.set(), which copies it.
 */
#ifndef MQTT_PROXY_PLUGIN_H
#define MQTT_PROXY_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever a struct below changes its layout or a hook its meaning. The proxy loads only
 * plugins whose api_version equals its own. */
#define MQTT_PROXY_PLUGIN_API_VERSION 1

/* The value a hook returns: MQTT_PROXY_OK lets the packet through; anything else refuses it. A
 * reason code (0x80-0xff) is what the client is told (translated for an MQTT 3.1/3.1.1 client);
 * any other value refuses as MQTT_PROXY_UNSPECIFIED_ERROR, so that 1, true or a Mosquitto error
 * code never lets a packet through. */
#define MQTT_PROXY_OK 0x00
#define MQTT_PROXY_UNSPECIFIED_ERROR 0x80
#define MQTT_PROXY_IMPLEMENTATION_SPECIFIC_ERROR 0x83
#define MQTT_PROXY_CLIENT_IDENTIFIER_NOT_VALID 0x85
#define MQTT_PROXY_BAD_USER_NAME_OR_PASSWORD 0x86
#define MQTT_PROXY_NOT_AUTHORIZED 0x87
#define MQTT_PROXY_SERVER_UNAVAILABLE 0x88
#define MQTT_PROXY_BANNED 0x8A
#define MQTT_PROXY_TOPIC_FILTER_INVALID 0x8F
#define MQTT_PROXY_TOPIC_NAME_INVALID 0x90
#define MQTT_PROXY_PAYLOAD_FORMAT_INVALID 0x99
#define MQTT_PROXY_QUOTA_EXCEEDED 0x97

/* Log levels of mqtt_proxy_host.log(). */
#define MQTT_PROXY_LOG_DEBUG 1
#define MQTT_PROXY_LOG_INFO 2
#define MQTT_PROXY_LOG_WARN 3
#define MQTT_PROXY_LOG_ERROR 4

typedef struct mqtt_proxy_str {
  const char* data;
  size_t len;
} mqtt_proxy_str;

/* A value a hook may change: read data/len, write through mqtt_proxy_host.set(). */
typedef struct mqtt_proxy_value {
  const char* data;
  size_t len;
  void* opaque; /* the proxy's; do not touch */
} mqtt_proxy_value;

/* Who a hook is about. Fixed for the connection once its CONNECT was accepted. */
typedef struct mqtt_proxy_client {
  mqtt_proxy_str client_id;
  mqtt_proxy_str username;  /* empty: none */
  mqtt_proxy_str address;   /* the client's IP address as text; from a PROXY header if any */
  uint16_t port;            /* the client's TCP port */
  uint8_t protocol_version; /* 3 (MQTT 3.1), 4 (3.1.1) or 5 */
  uint8_t transport;        /* MQTT_PROXY_TRANSPORT_* */
  mqtt_proxy_str tls_cn;    /* a verified client certificate's CN reported by a PROXY header */
  uint64_t connection;      /* unique for the proxy's lifetime */
} mqtt_proxy_client;

#define MQTT_PROXY_TRANSPORT_TCP 0
#define MQTT_PROXY_TRANSPORT_WEBSOCKET 1

/* What the proxy offers a plugin. */
typedef struct mqtt_proxy_host {
  /* Replaces a value's bytes with a copy of data[0..len). */
  void (*set)(mqtt_proxy_value* value, const char* data, size_t len);
  /* A line in the proxy's log, prefixed with the plugin's name. */
  void (*log)(const struct mqtt_proxy_host* host, int level, const char* message);
  void* opaque; /* the proxy's; do not touch */
} mqtt_proxy_host;

/* --plugin-opt NAME=VALUE, in the order given. */
typedef struct mqtt_proxy_option {
  const char* name;  /* NUL-terminated */
  const char* value; /* NUL-terminated */
} mqtt_proxy_option;

typedef struct mqtt_proxy_plugin {
  uint32_t api_version; /* MQTT_PROXY_PLUGIN_API_VERSION of the header the plugin was built with */
  uint32_t struct_size; /* sizeof(mqtt_proxy_plugin), the same check by another route */
  const char* name;     /* for the log and the metrics */

  /* Called once at start; required (a plugin without it is refused). Returns the plugin's state,
   * passed back as `self` to every hook, or NULL to stop the proxy: then `error` (capacity
   * `error_len`, NUL-terminated) says why. `options` live only for this call (copy what is kept);
   * `host` lives as long as the plugin. */
  void* (*init)(const mqtt_proxy_option* options, size_t option_count, const mqtt_proxy_host* host,
                char* error, size_t error_len);
  /* Called once at exit. */
  void (*cleanup)(void* self);

  /* CONNECT: may change the client id, the username and the password (set), or refuse. A refusal
   * is CONNACK with the reason (3.1.1: 0x85 is 2, 0x86 is 4, 0x88 is 3, others 5). `client` has
   * the address, port, version and transport; its client_id and username are the CONNECT's. */
  int (*auth_connect)(void* self, const mqtt_proxy_client* client, mqtt_proxy_value* client_id,
                      mqtt_proxy_value* username, mqtt_proxy_value* password);
  /* A client's PUBLISH (and its will, at CONNECT): may change the topic and the payload, or
   * refuse. A refused one is dropped and counted; the client gets PUBACK or PUBREC with the
   * reason (3.1.1: a plain acknowledgement, which is all 3.1.1 has; QoS 0: nothing). A refused
   * will is dropped, and the CONNECT goes on (as Mosquitto 2 does with a will its ACL refuses). */
  int (*auth_publish)(void* self, const mqtt_proxy_client* client, mqtt_proxy_value* topic,
                      mqtt_proxy_value* payload, uint8_t qos, int retain);
  /* One filter of a SUBSCRIBE (called for each): may change the filter, or refuse it (SUBACK 0x80
   * for 3.1.1, the reason for 5). `qos` is the one requested. */
  int (*auth_subscribe)(void* self, const mqtt_proxy_client* client, mqtt_proxy_value* filter,
                        uint8_t qos);
  /* A message about to be delivered to a subscriber (Mosquitto's read access): refusing skips this
   * subscriber. Leave NULL unless needed: it is called for every delivery. */
  int (*auth_read)(void* self, const mqtt_proxy_client* client, mqtt_proxy_str topic);

  /* Notifications, after the fact. */
  void (*on_connect)(void* self, const mqtt_proxy_client* client);
  void (*on_publish)(void* self, const mqtt_proxy_client* client, mqtt_proxy_str topic,
                     mqtt_proxy_str payload);
  void (*on_subscribe)(void* self, const mqtt_proxy_client* client, const mqtt_proxy_str* filters,
                       size_t count);
  void (*on_unsubscribe)(void* self, const mqtt_proxy_client* client, const mqtt_proxy_str* filters,
                         size_t count);
  void (*on_disconnect)(void* self, const mqtt_proxy_client* client);
} mqtt_proxy_plugin;

/* The one symbol a plugin exports. */
#define MQTT_PROXY_PLUGIN_ENTRY "mqtt_proxy_plugin_entry"
typedef const mqtt_proxy_plugin* (*mqtt_proxy_plugin_entry_fn)(void);
const mqtt_proxy_plugin* mqtt_proxy_plugin_entry(void);

#ifdef __cplusplus
}
#endif

#endif /* MQTT_PROXY_PLUGIN_H */
