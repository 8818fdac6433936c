/* topic_rewrite: an example plugin, in plain C11, of what a plugin can do to the packets it sees
 * (docs/plugins.md): rewrite topic prefixes and refuse payloads.
 *
 *   --plugin mqtt_proxy_topic_rewrite.so
 *     --plugin-opt prefix=sensors:site1/sensors     repeatable; the first rule that applies wins
 *     --plugin-opt max_payload=1024                 larger payloads: QUOTA_EXCEEDED (0x97)
 *     --plugin-opt require_utf8=1                   other payloads: PAYLOAD_FORMAT_INVALID (0x99)
 *
 * prefix=FROM:TO (split at the first ':') rewrites a PUBLISH topic (and a will's) that is FROM or
 * starts with FROM/ to the same topic under TO, and a SUBSCRIBE filter in the same way, so that
 * clients of this proxy publish and subscribe in FROM while the broker and its peers see TO. Only
 * a filter that starts with FROM literally is rewritten ("sensors/#", "sensors/+/t"; not "#" or
 * "+/t"); in "$share/GROUP/FILTER" the FILTER is. Messages are delivered under the topic they have
 * in the broker: a subscriber to "sensors/#" receives "site1/sensors/..." (this plugin has no
 * hook on delivery).
 *
 * The proxy calls every hook from one thread, so the state needs no lock, and the rewritten
 * topic is built in one buffer that host->set() copies from.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt_proxy/plugin.h"

#define EXPORT __attribute__((visibility("default")))

struct rule {
  char* from;
  size_t from_len;
  char* to;
  size_t to_len;
};

struct state {
  const mqtt_proxy_host* host;
  struct rule* rules;
  size_t rule_count;
  int has_max_payload;
  size_t max_payload;
  int require_utf8;
  char* buf; /* the rewritten topic or filter, before host->set() copies it */
  size_t buf_cap;
  uint64_t rewritten;
  uint64_t refused;
};

static void say(const struct state* s, int level, const char* message) {
  if (s->host != NULL && s->host->log != NULL) s->host->log(s->host, level, message);
}

static void free_state(struct state* s) {
  size_t i;
  if (s == NULL) return;
  for (i = 0; i < s->rule_count; ++i) {
    free(s->rules[i].from);
    free(s->rules[i].to);
  }
  free(s->rules);
  free(s->buf);
  free(s);
}

static char* copy(const char* data, size_t len) {
  char* p = malloc(len + 1);
  if (p != NULL) {
    memcpy(p, data, len);
    p[len] = '\0';
  }
  return p;
}

/* A prefix is whole topic levels: not empty, no wildcards, no leading '$', no trailing '/'. */
static int valid_prefix(const char* p, size_t len) {
  return len > 0 && memchr(p, '+', len) == NULL && memchr(p, '#', len) == NULL && p[0] != '$' &&
         p[len - 1] != '/';
}

/* "FROM:TO" into a new rule; 0 on a malformed value. */
static int add_rule(struct state* s, const char* value) {
  const char* colon = strchr(value, ':');
  struct rule* grown;
  size_t from_len;
  size_t to_len;
  if (colon == NULL) return 0;
  from_len = (size_t)(colon - value);
  to_len = strlen(colon + 1);
  if (!valid_prefix(value, from_len) || !valid_prefix(colon + 1, to_len)) return 0;
  grown = realloc(s->rules, (s->rule_count + 1) * sizeof *grown);
  if (grown == NULL) return 0;
  s->rules = grown;
  grown[s->rule_count].from = copy(value, from_len);
  grown[s->rule_count].to = copy(colon + 1, to_len);
  grown[s->rule_count].from_len = from_len;
  grown[s->rule_count].to_len = to_len;
  ++s->rule_count; /* counted before the check, so free_state() frees a half-made rule */
  return grown[s->rule_count - 1].from != NULL && grown[s->rule_count - 1].to != NULL;
}

static int parse_size(const char* text, size_t* out) {
  char* end = NULL;
  unsigned long long v;
  if (text[0] < '0' || text[0] > '9') return 0;
  errno = 0;
  v = strtoull(text, &end, 10);
  if (errno != 0 || *end != '\0' || v > SIZE_MAX) return 0;
  *out = (size_t)v;
  return 1;
}

static void* rewrite_init(const mqtt_proxy_option* options, size_t option_count,
                          const mqtt_proxy_host* host, char* error, size_t error_len) {
  struct state* s = calloc(1, sizeof *s);
  size_t i;
  char line[160];
  if (s == NULL) {
    snprintf(error, error_len, "out of memory");
    return NULL;
  }
  s->host = host;
  for (i = 0; i < option_count; ++i) {
    const char* name = options[i].name;
    const char* value = options[i].value;
    if (strcmp(name, "prefix") == 0) {
      if (!add_rule(s, value)) {
        snprintf(error, error_len,
                 "prefix=%s: expected FROM:TO, each whole topic levels (no wildcards, no "
                 "leading '$' or trailing '/')",
                 value);
        free_state(s);
        return NULL;
      }
    } else if (strcmp(name, "max_payload") == 0) {
      if (!parse_size(value, &s->max_payload)) {
        snprintf(error, error_len, "max_payload=%s: expected a number of bytes", value);
        free_state(s);
        return NULL;
      }
      s->has_max_payload = 1;
    } else if (strcmp(name, "require_utf8") == 0) {
      if (strcmp(value, "1") != 0 && strcmp(value, "0") != 0) {
        snprintf(error, error_len, "require_utf8=%s: expected 1 or 0", value);
        free_state(s);
        return NULL;
      }
      s->require_utf8 = value[0] == '1';
    } else {
      snprintf(error, error_len, "unknown option \"%s\" (prefix, max_payload, require_utf8)", name);
      free_state(s);
      return NULL;
    }
  }
  snprintf(line, sizeof line, "%zu prefix rules, max_payload %s, require_utf8 %s", s->rule_count,
           s->has_max_payload ? "set" : "none", s->require_utf8 ? "on" : "off");
  say(s, MQTT_PROXY_LOG_INFO, line);
  return s;
}

static void rewrite_cleanup(void* self) {
  struct state* s = self;
  char line[128];
  snprintf(line, sizeof line, "rewrote %llu topics and filters, refused %llu payloads",
           (unsigned long long)s->rewritten, (unsigned long long)s->refused);
  say(s, MQTT_PROXY_LOG_INFO, line);
  free_state(s);
}

/* Well-formed UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static int is_utf8(const unsigned char* p, size_t n) {
  size_t i = 0;
  while (i < n) {
    const unsigned c = p[i];
    size_t len;
    size_t k;
    uint32_t cp;
    uint32_t min;
    if (c < 0x80) {
      ++i;
      continue;
    }
    if ((c & 0xe0) == 0xc0) {
      len = 2;
      cp = c & 0x1f;
      min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3;
      cp = c & 0x0f;
      min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4;
      cp = c & 0x07;
      min = 0x10000;
    } else {
      return 0;
    }
    if (n - i < len) return 0;
    for (k = 1; k < len; ++k) {
      if ((p[i + k] & 0xc0) != 0x80) return 0;
      cp = (cp << 6) | (p[i + k] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    i += len;
  }
  return 1;
}

/* The rule for a topic or filter starting at `t` (FROM itself or FROM/...), or NULL. */
static const struct rule* find_rule(const struct state* s, const char* t, size_t len) {
  size_t i;
  for (i = 0; i < s->rule_count; ++i) {
    const struct rule* r = &s->rules[i];
    if (len >= r->from_len && memcmp(t, r->from, r->from_len) == 0 &&
        (len == r->from_len || t[r->from_len] == '/'))
      return r;
  }
  return NULL;
}

/* Rewrites value[skip..] by the first rule that applies, keeping value[0..skip) as it is. A result
 * too long for an MQTT string is refused with `too_long` (0x90 for a topic, 0x8F for a filter:
 * each packet has its own reason codes). */
static int rewrite(struct state* s, mqtt_proxy_value* value, size_t skip, int too_long) {
  const struct rule* r = find_rule(s, value->data + skip, value->len - skip);
  size_t tail;
  size_t need;
  if (r == NULL) return MQTT_PROXY_OK;
  tail = value->len - skip - r->from_len;
  need = skip + r->to_len + tail;
  if (need > 65535) return too_long; /* no longer fits a UTF-8 string */
  if (need > s->buf_cap) {
    char* grown = realloc(s->buf, need);
    if (grown == NULL) return MQTT_PROXY_UNSPECIFIED_ERROR;
    s->buf = grown;
    s->buf_cap = need;
  }
  memcpy(s->buf, value->data, skip);
  memcpy(s->buf + skip, r->to, r->to_len);
  memcpy(s->buf + skip + r->to_len, value->data + skip + r->from_len, tail);
  s->host->set(value, s->buf, need);
  ++s->rewritten;
  return MQTT_PROXY_OK;
}

static int rewrite_auth_publish(void* self, const mqtt_proxy_client* client,
                                mqtt_proxy_value* topic, mqtt_proxy_value* payload, uint8_t qos,
                                int retain) {
  struct state* s = self;
  (void)client;
  (void)qos;
  (void)retain;
  if (s->has_max_payload && payload->len > s->max_payload) {
    ++s->refused;
    return MQTT_PROXY_QUOTA_EXCEEDED;
  }
  if (s->require_utf8 && !is_utf8((const unsigned char*)payload->data, payload->len)) {
    ++s->refused;
    return MQTT_PROXY_PAYLOAD_FORMAT_INVALID;
  }
  return rewrite(s, topic, 0, MQTT_PROXY_TOPIC_NAME_INVALID);
}

static int rewrite_auth_subscribe(void* self, const mqtt_proxy_client* client,
                                  mqtt_proxy_value* filter, uint8_t qos) {
  static const char kShare[] = "$share/";
  const size_t share_len = sizeof kShare - 1;
  size_t skip = 0;
  (void)client;
  (void)qos;
  /* "$share/GROUP/FILTER": FILTER is what is matched against topics. */
  if (filter->len > share_len && memcmp(filter->data, kShare, share_len) == 0) {
    const char* slash = memchr(filter->data + share_len, '/', filter->len - share_len);
    if (slash == NULL) return MQTT_PROXY_OK; /* malformed; the broker's to refuse */
    skip = (size_t)(slash - filter->data) + 1;
  }
  return rewrite(self, filter, skip, MQTT_PROXY_TOPIC_FILTER_INVALID);
}

static const mqtt_proxy_plugin kPlugin = {
    .api_version = MQTT_PROXY_PLUGIN_API_VERSION,
    .struct_size = sizeof(mqtt_proxy_plugin),
    .name = "topic_rewrite",
    .init = rewrite_init,
    .cleanup = rewrite_cleanup,
    .auth_publish = rewrite_auth_publish,
    .auth_subscribe = rewrite_auth_subscribe,
};

EXPORT const mqtt_proxy_plugin* mqtt_proxy_plugin_entry(void) {
  return &kPlugin;
}
