// libzip (Debian: libzip-dev): reads and writes Keras's .keras archives.
#include <zip.h>
