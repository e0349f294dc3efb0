import RealModule

/// Xavier (Glorot) initialization, for tanh and sigmoid layers: variance 2 / (n_in + n_out).
public enum XavierNormal: InitializerRule {
    public static let kind = ComponentKind("xavier_normal",
                                           doc: "normal, standard deviation sqrt(2 / (n_in + n_out)); suits tanh and sigmoid")
    public static func fill<T: DLScalar>(_ w: Tensor<T>, fanIn: Int, fanOut: Int, rng: inout RandomGenerator) {
        fillNormal(w, std: Double.sqrt(2 / Double(fanIn + fanOut)), rng: &rng)
    }
}

public enum XavierUniform: InitializerRule {
    public static let kind = ComponentKind("xavier_uniform", doc: "uniform in +- sqrt(6 / (n_in + n_out))")
    public static func fill<T: DLScalar>(_ w: Tensor<T>, fanIn: Int, fanOut: Int, rng: inout RandomGenerator) {
        fillUniform(w, bound: Double.sqrt(6 / Double(fanIn + fanOut)), rng: &rng)
    }
}
