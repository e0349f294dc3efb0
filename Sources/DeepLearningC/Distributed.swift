// The C ABI of data-parallel training (Include/deeplearning.h, "Data-parallel training"):
// a caller's reduction callback. libdeeplearning itself needs no MPI; the ready MPI
// reducer is the separate libdeeplearning_mpi (Sources/DeepLearningMPI), built when MPI
// is found.
import CDeepLearningSupport
import DeepLearning

/// The header's dl_reduce_fn.
public typealias CReduce = @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, Int, Int32) -> Int32

/// The data-parallel side of a model handle's model (every model type has it).
private func dataParallel(_ box: ModelBox) throws(DLError) -> any DataParallel {
    guard let model = box.value as? any DataParallel else {
        throw DLError(.internal, "a model of type \(type(of: box.value)) cannot train data-parallel")
    }
    return model
}

@_cdecl("dl_model_set_gradient_reducer")
public func dl_model_set_gradient_reducer(_ model: OpaquePointer?, _ rank: Int32, _ worldSize: Int32,
                                          _ function: CReduce?, _ userData: UnsafeMutableRawPointer?) -> Int32 {
    withModel(model) { (box) throws(DLError) in
        let target = try dataParallel(box)
        guard let function else {
            try target.setGradientReducer(nil)
            return
        }
        let reducer = try GradientReducer(rank: Int(rank), worldSize: Int(worldSize)) { (buffer, count, double) throws(DLError) in
            let rc = function(userData, buffer, count, double ? 1 : 0)
            guard rc == 0 else {
                throw DLError(.io, "the gradient reducer returned \(rc) on rank \(rank) of \(worldSize); nothing was changed")
            }
        }
        try target.setGradientReducer(reducer)
    }
}

@_cdecl("dl_model_reduce_count")
public func dl_model_reduce_count(_ model: OpaquePointer?, _ count: UnsafeMutablePointer<Int>?) -> Int32 {
    readingModel(model) { (box) throws(DLError) in
        let count = try required(count, "count")
        count.pointee = try dataParallel(box).reducedCount
    }
}
