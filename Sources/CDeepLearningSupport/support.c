#include "dl_support.h"
