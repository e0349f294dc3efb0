/// The library's version, as `dl_version()` and `dl --version` report it.
///
/// Its one source is the DL_VERSION_* macros of Include/deeplearning.h; SwiftPM has no
/// configure step to read them, so this copies them, and the ctest install_versions
/// (cmake/test_install.sh) fails when the two differ.
public enum Version {
    public static let major = 0
    public static let minor = 1
    public static let patch = 0
    /// MAJOR * 10000 + MINOR * 100 + PATCH, as DL_VERSION_NUMBER.
    public static let number = major * 10000 + minor * 100 + patch
    public static let string: StaticString = "0.1.0"
}
