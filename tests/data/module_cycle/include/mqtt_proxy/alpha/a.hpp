#pragma once
#include "mqtt_proxy/gamma/g.hpp"
