import RealModule

/// He (Kaiming) initialization, for layers followed by ReLU: variance 2 / n_in.
public enum HeNormal: InitializerRule {
    public static let kind = ComponentKind("he_normal", doc: "normal, standard deviation sqrt(2 / n_in); suits ReLU")
    public static func fill<T: DLScalar>(_ w: Tensor<T>, fanIn: Int, fanOut: Int, rng: inout RandomGenerator) {
        fillNormal(w, std: Double.sqrt(2 / Double(fanIn)), rng: &rng)
    }
}

public enum HeUniform: InitializerRule {
    public static let kind = ComponentKind("he_uniform", doc: "uniform in +- sqrt(6 / n_in)")
    public static func fill<T: DLScalar>(_ w: Tensor<T>, fanIn: Int, fanOut: Int, rng: inout RandomGenerator) {
        fillUniform(w, bound: Double.sqrt(6 / Double(fanIn)), rng: &rng)
    }
}
