// Framing, decoding and encoding of MQTT 3.1, 3.1.1 and 5.0 packets: everything the codec offers,
// for callers that use most of it. Each job has its own header.
#pragma once

#include "mqtt_proxy/mqtt/decode.hpp"      // DecodeError, decode_client_packet
#include "mqtt_proxy/mqtt/encode.hpp"      // encode_*
#include "mqtt_proxy/mqtt/frame.hpp"       // FrameSplitter, parse_frame, Remaining Length
#include "mqtt_proxy/mqtt/properties.hpp"  // property ids, PropertyWriter
