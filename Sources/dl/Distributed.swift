import CMPI
import DeepLearning
import Glibc

/// The MPI world of a `dl train` launched by mpirun (docs/distributed.md).
///
/// MPI is started only when a launcher set up this process (Open MPI's mpirun sets
/// OMPI_COMM_WORLD_SIZE, MPICH's and PMIx launchers PMI_SIZE or PMIX_RANK), so a plain
/// `dl train` never touches MPI. Every rank reads the data and trains its shard; rank 0
/// alone prints, writes the checkpoint, history and learning curve. An error on any rank
/// ends every rank (MPI_Abort) with that rank's message, so none is left waiting.
struct MPIWorld {
    let rank: Int
    let size: Int

    static var launched: Bool {
        let variables: [String] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"]
        return variables.contains { getenv($0) != nil }
    }

    /// The world when launched by mpirun with MPI built in; nil otherwise.
    static func start() throws(DLError) -> MPIWorld? {
        guard launched else { return nil }
        guard dlmpi_available() != 0 else {
            throw DLError(.unsupported, "launched by mpirun, but this dl was built without MPI (no mpi.h at build time): "
                          + "install libopenmpi-dev and rebuild, or run dl without mpirun")
        }
        var rank: Int32 = 0, size: Int32 = 0
        let rc = dlmpi_init(&rank, &size)
        guard rc == 0 else { throw DLError(.io, "MPI could not be initialised: \(message(rc))") }
        return MPIWorld(rank: Int(rank), size: Int(size))
    }

    /// Sums the packed buffer over MPI_COMM_WORLD in place.
    func reducer() throws(DLError) -> GradientReducer {
        let rank = self.rank
        return try GradientReducer(rank: rank, worldSize: size) { (buffer, count, double) throws(DLError) in
            let rc = dlmpi_allreduce_sum(buffer, count, double ? 1 : 0, nil)
            guard rc == 0 else { throw DLError(.io, "MPI_Allreduce failed on rank \(rank): \(MPIWorld.message(rc))") }
        }
    }

    /// Prints `text` as this rank's error and ends every rank.
    func abort(_ text: String) -> Never {
        printError("dl: error: rank \(rank) of \(size): \(text)")
        dlmpi_abort(1)
        exit(1)
    }

    func finish() { _ = dlmpi_finalize() }

    static func message(_ code: Int32) -> String {
        var buffer = [CChar](repeating: 0, count: 512)
        dlmpi_error_string(code, &buffer, 512)
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}
