// swift-tools-version:6.0
//
// deeplearning: a deep-learning-from-scratch library with a Swift core and a C ABI.
//
// Products
//   DeepLearning   the Swift core, for Swift programs
//   deeplearning   libdeeplearning.so, the C ABI declared in Include/deeplearning.h
//   dl             the command-line tool
import PackageDescription

// MARK: - System libraries (found through pkg-config)
//
// Each folder holds a module.modulemap and a shim.h. The shims exist because
// Swift cannot import function-like or expression macros (H5T_NATIVE_FLOAT,
// H5F_ACC_TRUNC, ...); they re-export them as static inline functions.
let systemLibraries: [Target] = [
    .systemLibrary(name: "CJSONC", pkgConfig: "json-c",
                   providers: [.apt(["libjson-c-dev"])]),
    .systemLibrary(name: "CHDF5", pkgConfig: "hdf5",
                   providers: [.apt(["libhdf5-dev"])]),
    .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas",
                   providers: [.apt(["libopenblas-dev"])]),
    .systemLibrary(name: "CZlib", pkgConfig: "zlib",
                   providers: [.apt(["zlib1g-dev"])]),
    // protobuf-c's runtime, for the ONNX model format (CONNXProto, Sources/DeepLearning/ONNX).
    .systemLibrary(name: "CProtobufC", pkgConfig: "libprotobuf-c",
                   providers: [.apt(["libprotobuf-c-dev"])]),
    // libzip, for Keras's .keras archives (a zip of config.json and model.weights.h5).
    .systemLibrary(name: "CZip", pkgConfig: "libzip",
                   providers: [.apt(["libzip-dev"])]),
    // MPI, optional: data-parallel training under mpirun (docs/distributed.md). Without
    // Open MPI's pkg-config file SwiftPM only warns, the shim finds no mpi.h and compiles to
    // stubs, and nothing is linked.
    .systemLibrary(name: "CMPI", pkgConfig: "ompi-c",
                   providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
]

/// Absolute folder of this package (the linker runs elsewhere).
let packageRoot = String(#filePath.dropLast("/Package.swift".count))

// MARK: - Targets
let targets: [Target] = systemLibraries + [
    // The per-thread error buffer of the C ABI (C11 _Thread_local).
    .target(name: "CDeepLearningSupport"),
    // Float32 kernels for sparse input batches, with AVX2/FMA versions chosen at run time.
    .target(name: "CDeepLearningKernels"),
    // ONNX's onnx.proto compiled by protoc-c, generated once and committed
    // (scripts/gen_onnx_proto.sh); the proto file itself is kept beside it for reference.
    .target(name: "CONNXProto", dependencies: ["CProtobufC"], exclude: ["onnx.proto"]),
    // Untrusted HDF5 files are read by a forked child process running only this C code
    // (a crafted file can crash or hang libhdf5); it also holds the process-wide HDF5 lock.
    .target(name: "CDeepLearningHDF5", dependencies: ["CHDF5"]),
    // The core: tensors, kernels, layers, losses, optimizers, models, specs,
    // checkpoints, data loading. No Foundation.
    .target(name: "DeepLearning",
            dependencies: ["CJSONC", "CHDF5", "COpenBLAS", "CZlib", "CDeepLearningKernels", "CDeepLearningHDF5",
                           "CProtobufC", "CONNXProto", "CZip",
                           .product(name: "RealModule", package: "swift-numerics")]),
    // The C ABI: @_cdecl exports only; validates every argument. The linker version
    // script keeps libdeeplearning.so's exports to the dl_* functions of the header
    // (the CMake build uses the same script).
    .target(name: "DeepLearningC",
            dependencies: ["DeepLearning", "CDeepLearningSupport"],
            linkerSettings: [.unsafeFlags(["-Xlinker", "--version-script=\(packageRoot)/cmake/deeplearning.map"])]),
    .executableTarget(name: "dl",
                      dependencies: ["DeepLearning", "CMPI",
                                     .product(name: "ArgumentParser", package: "swift-argument-parser")]),
    .testTarget(name: "DeepLearningTests", dependencies: ["DeepLearning", "CDeepLearningKernels", "CHDF5", "CZlib"],
                exclude: ["BadSpecs"]),  // malformed specs, read by path from the tests
]

// MARK: - Package
let package = Package(
    name: "deeplearning",
    products: [
        .library(name: "DeepLearning", targets: ["DeepLearning"]),
        .library(name: "deeplearning", type: .dynamic, targets: ["DeepLearningC"]),
        .executable(name: "dl", targets: ["dl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-numerics", from: "1.1.1"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: targets
)
