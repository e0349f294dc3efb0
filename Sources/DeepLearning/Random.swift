import RealModule

/// The model's random generator: xoshiro256** seeded through SplitMix64.
///
/// Every random draw of a model (initial weights, shuffles, dropout masks) comes from its
/// own generator, so one seed gives bit-identical results on every run. The four words of
/// `state` are the whole state; checkpoints store them.
public struct RandomGenerator: Sendable {
    public var state: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var s = seed
        func splitmix() -> UInt64 {
            s &+= 0x9E37_79B9_7F4A_7C15
            var z = s
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        state = (splitmix(), splitmix(), splitmix(), splitmix())
    }

    public init(state: (UInt64, UInt64, UInt64, UInt64)) { self.state = state }

    @inline(__always)
    private static func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 &- k)) }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        let result = RandomGenerator.rotl(state.1 &* 5, 7) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = RandomGenerator.rotl(state.3, 45)
        return result
    }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func uniform() -> Double {
        Double(next() >> 11) * 0x1.0p-53
    }

    /// Standard normal by Box-Muller (one draw per call; no cached spare, so the state stays
    /// four words).
    public mutating func normal() -> Double {
        let u1 = 1 - uniform()          // (0, 1]: log is finite
        let u2 = uniform()
        return Double.sqrt(-2 * Double.log(u1)) * Double.cos(2 * Double.pi * u2)
    }

    /// Uniform integer in [0, bound), unbiased (Lemire's method). `bound` must be > 0.
    public mutating func below(_ bound: Int) -> Int {
        let b = UInt64(bound)
        var m = next().multipliedFullWidth(by: b)
        if m.low < b {
            let threshold = (0 &- b) % b
            while m.low < threshold { m = next().multipliedFullWidth(by: b) }
        }
        return Int(m.high)
    }

    /// Fisher-Yates shuffle in place.
    public mutating func shuffle(_ a: UnsafeMutableBufferPointer<Int32>) {
        var i = a.count - 1
        while i > 0 {
            let j = below(i + 1)
            a.swapAt(i, j)
            i -= 1
        }
    }
}

/// A model's generator, shared by reference between the model and the layers that draw at
/// training time (dropout masks), so every draw comes from the one seeded stream.
///
/// `frozen` asks those layers to replay their previous draw instead of making a new one:
/// a gradient check perturbs parameters one at a time and needs the same mask each pass.
public final class RandomSource {
    public var generator: RandomGenerator
    public var frozen = false

    public init(_ generator: RandomGenerator) { self.generator = generator }
}
