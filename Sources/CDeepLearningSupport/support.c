#include "dl_support.h"

#include <string.h>

enum { DLX_MESSAGE_CAPACITY = 4096 };

static _Thread_local char dlx_message[DLX_MESSAGE_CAPACITY];

void dlx_set_error(const char *message) {
    if (message == NULL) {
        dlx_message[0] = '\0';
        return;
    }
    size_t n = strlen(message);
    if (n >= DLX_MESSAGE_CAPACITY) {
        n = DLX_MESSAGE_CAPACITY - 1;
        // Do not cut a UTF-8 sequence in half.
        while (n > 0 && ((unsigned char)message[n] & 0xC0) == 0x80) n--;
    }
    memcpy(dlx_message, message, n);
    dlx_message[n] = '\0';
}

void dlx_clear_error(void) { dlx_message[0] = '\0'; }

const char *dlx_last_error(void) { return dlx_message; }

static _Thread_local double dlx_accuracy_value = __builtin_nan("");

void dlx_set_accuracy(double accuracy) { dlx_accuracy_value = accuracy; }

double dlx_accuracy(void) { return dlx_accuracy_value; }
