// protobuf-c's runtime (Debian: libprotobuf-c-dev), for the generated ONNX code in
// CONNXProto and for the ONNX reader and writer in the core (protobuf_c_message_free_unpacked).
#include <protobuf-c/protobuf-c.h>
