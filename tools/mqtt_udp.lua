-- Wireshark/tshark dissector for mqtt_proxy's peer protocol: MQTT control packets carried in UDP
-- datagrams (docs/peering.md). Wireshark's MQTT dissector is registered for TCP only, so this hands
-- each packet in a datagram to it.
--   tshark -X lua_script:tools/mqtt_udp.lua -r capture.pcap -Y mqtt
-- The peer port defaults to 1883; override with -X lua_script1:PORT.

local port = tonumber((...) or "") or 1883
local mqtt = Dissector.get("mqtt")
local proto = Proto("mqtt_udp", "MQTT over UDP (mqtt_proxy peering)")

function proto.dissector(tvb, pinfo, tree)
  local offset = 0
  local len = tvb:len()
  while offset + 2 <= len do
    -- Remaining length: at most four bytes of 7 bits each.
    local remaining, multiplier, i = 0, 1, 1
    repeat
      if offset + i >= len or i > 4 then return offset end
      local b = tvb(offset + i, 1):uint()
      remaining = remaining + (b % 128) * multiplier
      multiplier = multiplier * 128
      i = i + 1
    until b < 128
    local size = i + remaining
    if offset + size > len then return offset end
    mqtt:call(tvb(offset, size):tvb(), pinfo, tree)
    offset = offset + size
  end
  pinfo.cols.protocol = "MQTT/UDP"
  return offset
end

DissectorTable.get("udp.port"):add(port, proto)
