#include "mqtt_proxy/alpha/a.hpp"
