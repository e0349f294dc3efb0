/// All weights zero: for tests, since units that start equal stay equal.
public enum Zeros: InitializerRule {
    public static let kind = ComponentKind("zeros", doc: "all zero; for tests, since units that start equal stay equal")
    public static func fill<T: DLScalar>(_ w: Tensor<T>, fanIn: Int, fanOut: Int, rng: inout RandomGenerator) {
        w.zero()
    }
}
