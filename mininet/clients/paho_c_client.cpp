// A small client on the Eclipse Paho C library (libpaho-mqtt3c, synchronous API), for the
// end-to-end tests: a stock C library must work through the proxy in MQTT 3.1.1 and 5.0.
//
//   paho_c_client sub HOST TOPIC COUNT [options]   prints "ready", then one line per message:
//                                                 "<topic> <payload> retained=<0|1>" (with
//                                                 --show-qos: then " qos=<0|1|2>"); exit 0 once
//                                                 COUNT arrived, 1 on timeout or error
//   paho_c_client pub HOST TOPIC COUNT [options]   publishes "msg-0" .. "msg-<COUNT-1>"; exit 0
//   once
//                                                 every one completed its QoS handshake
// options: --version 4|5  --qos 0|1|2  --retain  --show-qos  --user U  --password P  --id ID
//          --timeout S
#include <MQTTClient.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

struct Args {
  std::string mode, host, topic;
  int count = 1;
  int version = 4;
  int qos = 0;
  bool retain = false;
  bool show_qos = false;
  std::string user, password, id;
  int timeout_s = 20;
};

int usage() {
  std::fprintf(stderr,
               "usage: paho_c_client sub|pub HOST TOPIC COUNT [--version 4|5] [--qos Q] "
               "[--retain] [--show-qos] [--user U] [--password P] [--id ID] [--timeout S]\n");
  return 2;
}

bool parse(int argc, char** argv, Args& a) {
  if (argc < 5) return false;
  a.mode = argv[1];
  a.host = argv[2];
  a.topic = argv[3];
  a.count = std::atoi(argv[4]);
  for (int i = 5; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--retain") {
      a.retain = true;
      continue;
    }
    if (k == "--show-qos") {
      a.show_qos = true;
      continue;
    }
    if (i + 1 >= argc) return false;
    const char* v = argv[++i];
    if (k == "--version") {
      a.version = std::atoi(v);
    } else if (k == "--qos") {
      a.qos = std::atoi(v);
    } else if (k == "--user") {
      a.user = v;
    } else if (k == "--password") {
      a.password = v;
    } else if (k == "--id") {
      a.id = v;
    } else if (k == "--timeout") {
      a.timeout_s = std::atoi(v);
    } else {
      return false;
    }
  }
  return (a.mode == "sub" || a.mode == "pub") && (a.version == 4 || a.version == 5) && a.qos >= 0 &&
         a.qos <= 2 && a.count > 0;
}

int fail(const char* what, int rc) {
  std::printf("error: %s: %d\n", what, rc);
  std::fflush(stdout);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!parse(argc, argv, a)) return usage();
  const bool v5 = a.version == 5;
  const std::string uri = "tcp://" + a.host + ":1883";
  if (a.id.empty()) a.id = "paho-c-" + a.mode + "-" + std::to_string(a.version);

  MQTTClient client;
  MQTTClient_createOptions create = MQTTClient_createOptions_initializer;
  create.MQTTVersion = v5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1;
  int rc = MQTTClient_createWithOptions(&client, uri.c_str(), a.id.c_str(),
                                        MQTTCLIENT_PERSISTENCE_NONE, nullptr, &create);
  if (rc != MQTTCLIENT_SUCCESS) return fail("create", rc);

  MQTTClient_connectOptions conn = MQTTClient_connectOptions_initializer;
  MQTTClient_connectOptions conn5 = MQTTClient_connectOptions_initializer5;
  MQTTClient_connectOptions& opts = v5 ? conn5 : conn;
  opts.keepAliveInterval = 20;
  if (v5) {
    opts.cleanstart = 1;
  } else {
    opts.cleansession = 1;
    opts.MQTTVersion = MQTTVERSION_3_1_1;
  }
  if (!a.user.empty()) opts.username = a.user.c_str();
  if (!a.password.empty()) opts.password = a.password.c_str();
  if (v5) {
    MQTTResponse r = MQTTClient_connect5(client, &opts, nullptr, nullptr);
    rc = r.reasonCode;
    MQTTResponse_free(r);
  } else {
    rc = MQTTClient_connect(client, &opts);
  }
  if (rc != MQTTCLIENT_SUCCESS) return fail("connect", rc);

  int status = 0;
  if (a.mode == "sub") {
    if (v5) {
      MQTTSubscribe_options so = MQTTSubscribe_options_initializer;
      MQTTResponse r = MQTTClient_subscribe5(client, a.topic.c_str(), a.qos, &so, nullptr);
      rc = r.reasonCode;  // granted QoS 0, 1 or 2 is success; 0x80 and above is not
      MQTTResponse_free(r);
      if (rc >= 0x80) return fail("subscribe", rc);
    } else {
      rc = MQTTClient_subscribe(client, a.topic.c_str(), a.qos);
      if (rc != MQTTCLIENT_SUCCESS) return fail("subscribe", rc);
    }
    std::printf("ready\n");
    std::fflush(stdout);
    int got = 0;
    for (int waited_ms = 0; got < a.count && waited_ms < a.timeout_s * 1000; waited_ms += 100) {
      char* topic = nullptr;
      int topic_len = 0;
      MQTTClient_message* m = nullptr;
      rc = MQTTClient_receive(client, &topic, &topic_len, &m, 100);
      if (rc != MQTTCLIENT_SUCCESS && rc != MQTTCLIENT_TOPICNAME_TRUNCATED) {
        return fail("receive", rc);
      }
      if (!m) continue;
      std::printf("%s %.*s retained=%d", topic, m->payloadlen, static_cast<char*>(m->payload),
                  m->retained);
      if (a.show_qos) std::printf(" qos=%d", m->qos);
      std::printf("\n");
      std::fflush(stdout);
      ++got;
      MQTTClient_freeMessage(&m);
      MQTTClient_free(topic);
    }
    if (got < a.count) status = fail("timeout, messages received", got);
  } else {
    for (int i = 0; i < a.count && status == 0; ++i) {
      std::string payload = "msg-" + std::to_string(i);
      MQTTClient_message msg = MQTTClient_message_initializer;
      msg.payload = payload.data();
      msg.payloadlen = static_cast<int>(payload.size());
      msg.qos = a.qos;
      msg.retained = a.retain ? 1 : 0;
      MQTTClient_deliveryToken token = 0;
      if (v5) {
        MQTTResponse r = MQTTClient_publishMessage5(client, a.topic.c_str(), &msg, &token);
        rc = r.reasonCode;
        MQTTResponse_free(r);
      } else {
        rc = MQTTClient_publishMessage(client, a.topic.c_str(), &msg, &token);
      }
      if (rc != MQTTCLIENT_SUCCESS) status = fail("publish", rc);
      // QoS 1 and 2: wait for PUBACK / PUBCOMP.
      if (status == 0) rc = MQTTClient_waitForCompletion(client, token, 10000);
      if (status == 0 && rc != MQTTCLIENT_SUCCESS) status = fail("publish completion", rc);
    }
  }
  if (v5) {
    MQTTClient_disconnect5(client, 1000, MQTTREASONCODE_SUCCESS, nullptr);
  } else {
    MQTTClient_disconnect(client, 1000);
  }
  MQTTClient_destroy(&client);
  return status;
}
