/// The library's version; Include/deeplearning.h repeats it in DL_VERSION_* macros.
public enum Version {
    public static let major = 0
    public static let minor = 1
    public static let patch = 0
    /// MAJOR * 10000 + MINOR * 100 + PATCH, as DL_VERSION_NUMBER.
    public static let number = major * 10000 + minor * 100 + patch
    public static let string: StaticString = "0.1.0"
}
