#pragma once
#include "mqtt_proxy/beta/b.hpp"
