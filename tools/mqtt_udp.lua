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
  local v5 = false
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
    -- The extension's DATA (kind 2) and DATA5 (kind 9) headers set the form of the PUBLISHes
    -- after them; the MQTT dissector reads them as 3.1.1, so a 5.0-form one is marked here.
    local first = tvb(offset, 1):uint()
    if first == 0xf0 and size >= i + 4 and tvb(offset + i, 3):uint() == 0x4d5001 then
      local kind = tvb(offset + i + 3, 1):uint()
      if kind == 2 then v5 = false elseif kind == 9 then v5 = true end
    elseif v5 and first >= 0x30 and first < 0x40 then
      tree:add(proto, tvb(offset, size),
               "MQTT 5.0 form (after DATA5): property length and properties follow the topic")
    end
    mqtt:call(tvb(offset, size):tvb(), pinfo, tree)
    offset = offset + size
  end
  pinfo.cols.protocol = "MQTT/UDP"
  return offset
end

DissectorTable.get("udp.port"):add(port, proto)
