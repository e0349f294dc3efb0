// swift-tools-version:6.0
//
// swift-mnist: the tutorial's MNIST example as a Swift program that depends on the
// deeplearning package by version, as any other package would (docs/tutorial-swift.md).
//
// DEEPLEARNING_PACKAGE_URL names the repository; by default it is the one this example
// lives in (a local git URL), which must then carry a version tag (git tag 0.1.0).
import PackageDescription

let deeplearning = Context.environment["DEEPLEARNING_PACKAGE_URL"]
    ?? "file://\(Context.packageDirectory)/../.."

let package = Package(
    name: "swift-mnist",
    dependencies: [
        .package(url: deeplearning, from: "0.1.0"),
    ],
    targets: [
        .executableTarget(name: "swift-mnist",
                          dependencies: [.product(name: "DeepLearning", package: "deeplearning")]),
    ]
)
