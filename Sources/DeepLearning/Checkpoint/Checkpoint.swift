import CDeepLearningHDF5
import Glibc

/// HDF5 checkpoints: a model's spec, parameters, optimizer state, random generator and
/// training counters in one self-describing file (layout in docs/checkpoint-format.md).
public enum Checkpoint {
    /// The value of the root attribute "format".
    public static let formatName = "deeplearning-checkpoint"
    /// The layout version this library writes; it reads this and every older one.
    /// Version 2 stores its strings (attributes and model_spec) with a fixed length, so
    /// that reading a file needs no variable-length data (libhdf5's global heap, where
    /// crafted files crash or hang it); version 1 used variable-length strings.
    public static let formatVersion: Int64 = 2

    /// Largest value a checkpoint's counters (optimizer step, epoch, samples seen) may hold:
    /// 2^53, exact as a double and far from overflowing however long training goes on.
    public static let maxCounter: Int64 = 1 << 53

    /// Parameters a checkpoint's model may have beyond the values its file stores (4 MiB
    /// of float32): the model is built before its values are checked one by one.
    static let parameterAllowance = 1 << 20

    /// Largest learning rate a checkpoint may hold: the spec's limit for "lr".
    public static let maxLearningRate = 1e6

    /// Sets the base of the deadline within which a load of an HDF5 file (checkpoint or
    /// data set) must finish: `milliseconds` plus 1 ms per 8 KiB of the file. 0 restores
    /// the default, 10 000 ms (or the environment variable DL_HDF5_TIMEOUT_MS).
    public static func setLoadTimeout(milliseconds: Int) {
        dlh5i_set_timeout_ms(Int64(clamping: milliseconds))
    }
}

extension Model {
    /// Saves the model to `path`, atomically: the file is written beside the target,
    /// flushed to disk, then renamed over it. An existing checkpoint is never left
    /// half-written; on failure nothing new remains.
    ///
    /// The file is written under a temporary name `<path>.dltmp-<pid>-<random>`; a save
    /// first removes the temporary files in its folder left by saves whose process no
    /// longer exists (killed mid-write). (An unnamed O_TMPFILE file would leave nothing at
    /// all, but libhdf5 1.10 cannot create a file through /proc/self/fd: it resolves the
    /// link to the "(deleted)" name and fails.)
    public func save(to path: String) throws(DLError) {
        try save(to: path, formatVersion: Checkpoint.formatVersion)
    }

    /// `save(to:)` writing layout `formatVersion` (1 or 2; tests write version 1 files).
    func save(to path: String, formatVersion: Int64) throws(DLError) {
        guard !path.isEmpty else { throw .invalid("checkpoint path is empty") }
        guard formatVersion == 1 || formatVersion == 2 else { throw .invalid("checkpoint format_version \(formatVersion) cannot be written") }
        let folder = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        let directory = folder.isEmpty ? "/" : folder
        guard access(directory, W_OK) == 0 else {
            throw DLError(.io, "\(path): cannot write into folder \(directory) (\(String(cString: strerror(errno))))")
        }
        try HDF5File.locked { () throws(DLError) in
            removeStaleTemporaries(directory)
            let temporary = "\(path).dltmp-\(getpid())-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
            do throws(DLError) {
                let file = try HDF5File.create(temporary, variableLengthStrings: formatVersion == 1)
                try write(file, formatVersion: formatVersion)
                file.close()
                try flushToDisk(temporary)
                try replace(temporary, path)
            } catch {
                unlink(temporary)
                throw error
            }
        }
    }

    /// Renames `temporary` over `path`; removes `temporary` if that fails.
    private func replace(_ temporary: String, _ path: String) throws(DLError) {
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw DLError(.io, "\(path): cannot replace the file (\(reason))")
        }
    }

    private func write(_ f: HDF5File, formatVersion: Int64) throws(DLError) {
        try f.setAttribute("/", "format", string: Checkpoint.formatName)
        try f.setAttribute("/", "format_version", int: formatVersion)
        try f.setAttribute("/", "library_version", string: Version.string.description)
        try f.setAttribute("/", "dtype", string: T.dtypeName)
        try f.write("model_spec", string: spec.json)
        try f.createGroup("parameters")
        for p in parameters { try write(f, "parameters/\(p.name)", p, p.value) }
        try f.createGroup("buffers")
        for b in buffers { try write(f, "buffers/\(b.name)", b, b.value) }
        try f.createGroup("optimizer")
        try f.setAttribute("optimizer", "type", string: optimizer.type)
        try f.setAttribute("optimizer", "learning_rate", double: optimizer.learningRate)
        try f.setAttribute("optimizer", "base_learning_rate", double: optimizer.baseLearningRate)
        try f.setAttribute("optimizer", "step", int: Int64(optimizer.step))
        for (s, slot) in optimizer.slotNames.enumerated() {
            try f.createGroup("optimizer/\(slot)")
            for (p, state) in zip(parameters, optimizer.slots) {
                try write(f, "optimizer/\(slot)/\(p.name)", p, state[s])
            }
        }
        try f.createGroup("training")
        try f.setAttribute("training", "samples_seen", int: Int64(samplesSeen))
        try f.setAttribute("training", "epoch", int: Int64(epoch))
        let r = rng.state
        try f.write("training/rng_state", values: [r.0, r.1, r.2, r.3])
    }

    /// Fills this freshly built model from a checkpoint whose spec it was built from,
    /// checking every dataset's presence, shape, type and values.
    func restore(from f: HDF5Image) throws(DLError) {
        try readTensors(f, group: "parameters", parameters.map { ($0, $0.value) })
        try readTensors(f, group: "buffers", buffers.map { ($0, $0.value) })
        let type = try f.attributeString("optimizer", "type")
        guard type == optimizer.type else {
            throw DLError(.format, "\(f.path): optimizer/type is \"\(type)\" but the stored spec names \"\(optimizer.type)\"")
        }
        let lr = try f.attributeDouble("optimizer", "learning_rate")
        // Files written before schedules have no base rate: there the stored rate is it,
        // unless lr_decay was decaying it, from the spec's lr.
        let base = try f.hasAttribute("optimizer", "base_learning_rate") ? f.attributeDouble("optimizer", "base_learning_rate")
            : optimizer.schedule.rule is ConstantRate ? lr : optimizer.baseLearningRate
        let step = try f.attributeInt("optimizer", "step")
        let maxRate = Checkpoint.maxLearningRate
        guard lr.isFinite, lr >= 0, lr <= maxRate, base.isFinite, base >= 0, base <= maxRate else {
            throw DLError(.format, "\(f.path): optimizer learning_rate \(lr) or base_learning_rate \(base) is outside 0...\(maxRate)")
        }
        try checkCounter(f, "optimizer@step", step)
        for (s, slot) in optimizer.slotNames.enumerated() {
            try readTensors(f, group: "optimizer/\(slot)", zip(parameters, optimizer.slots).map { ($0, $1[s]) })
        }
        let seen = try f.attributeInt("training", "samples_seen")
        let epochs = try f.attributeInt("training", "epoch")
        try checkCounter(f, "training@samples_seen", seen)
        try checkCounter(f, "training@epoch", epochs)
        let shape = try f.describe("training/rng_state")
        guard shape.shape == [4], !shape.isFloat, shape.typeClass == "integer" else {
            throw DLError(.format, "\(f.path): training/rng_state must be 4 unsigned 64-bit integers, found \(shape.typeClass) \(shape.shape)")
        }
        let r = try f.readUInt64("training/rng_state", count: 4)
        guard r != [0, 0, 0, 0] else { throw DLError(.format, "\(f.path): training/rng_state is all zeros (not a valid generator state)") }
        optimizer.restore(step: Int(step), epoch: Int(epochs), baseLearningRate: base)
        samplesSeen = Int(seen)
        rng = RandomGenerator(state: (r[0], r[1], r[2], r[3]))
    }

    /// A counter must lie in 0...Checkpoint.maxCounter, so that training can go on counting.
    private func checkCounter(_ f: HDF5Image, _ what: String, _ value: Int64) throws(DLError) {
        guard value >= 0, value <= Checkpoint.maxCounter else {
            throw DLError(.format, "\(f.path): \(what) is \(value), outside 0...\(Checkpoint.maxCounter)")
        }
    }

    /// Writes `t` (the value of `p`, or optimizer state kept beside it) in shape order.
    private func write(_ f: HDF5File, _ name: String, _ p: Parameter<T>, _ t: Tensor<T>) throws(DLError) {
        try p.values(of: t).withUnsafeBufferPointer { (b) throws(DLError) in try f.write(name, shape: t.shape, b.baseAddress!) }
    }

    /// Reads `group`'s datasets, named after the parameters, into their tensors (values or
    /// optimizer state), requiring exactly those names, each with the tensor's shape, a
    /// floating-point type and finite values.
    private func readTensors(_ f: HDF5Image, group: String, _ tensors: [(Parameter<T>, Tensor<T>)]) throws(DLError) {
        if tensors.isEmpty && !f.exists(group) { return }
        guard f.exists(group) else { throw DLError(.format, "\(f.path): missing group \(group)") }
        let names = tensors.map(\.0.name), expected = Set(names)
        for name in try f.members(group) where !expected.contains(name) {
            throw DLError(.format, "\(f.path): \(group)/\(name) does not belong to the stored spec's model (it has \(names.joined(separator: ", ")))")
        }
        for (p, t) in tensors {
            let dataset = "\(group)/\(p.name)"
            let d = try f.describe(dataset)
            guard d.isFloat else {
                throw DLError(.format, "\(f.path): \(dataset) holds \(d.typeClass) values, expected floating point")
            }
            guard d.shape == t.shape else {
                throw DLError(.format, "\(f.path): \(dataset) has shape \(d.shape), but the stored spec gives \(t.shape)")
            }
            // Files hold values in shape order; the parameter may keep them in another.
            // The tensor exists already (the model was built within what the file holds),
            // so this scratch copy is of a size the file was checked to contain.
            guard let scratch = malloc(max(t.count, 1) * MemoryLayout<T>.stride) else {
                throw DLError(.noMemory, "\(f.path): out of memory reading \(dataset)")
            }
            defer { free(scratch) }
            let b = scratch.bindMemory(to: T.self, capacity: max(t.count, 1))
            try f.read(dataset, into: b, count: t.count)
            guard Kernels.allFinite(b, t.count) else {
                throw DLError(.format, "\(f.path): \(dataset) contains NaN or infinite values")
            }
            if group.hasPrefix("optimizer/"), ["v", "square_avg"].contains(group.dropFirst("optimizer/".count)) {
                // Running averages of squared gradients: a negative one would make the
                // optimizer take the square root of a negative number.
                for i in 0..<t.count where b[i] < 0 {
                    throw DLError(.format, "\(f.path): \(dataset) holds \(b[i]) at element \(i); averages of squares cannot be negative")
                }
            }
            p.write(t, from: b)
        }
    }
}

/// Loads a model saved by `save(to:)` (or written by another program following
/// docs/checkpoint-format.md).
public func loadModel(from path: String) throws(DLError) -> any AnyModel {
    // The file is read by a child process (HDF5Image): libhdf5 never follows a possibly
    // crafted file's pointers in this process, and the HDF5 lock is not held meanwhile.
    let f = try HDF5Image(path: path, roots: ["/"], recursive: true)
    let format: String
    do throws(DLError) { format = try f.attributeString("/", "format") } catch {
        throw DLError(.format, "\(path): not a deeplearning checkpoint (no \"format\" attribute)")
    }
    guard format == Checkpoint.formatName else {
        throw DLError(.format, "\(path): format is \"\(format)\", expected \"\(Checkpoint.formatName)\"")
    }
    let version = try f.attributeInt("/", "format_version")
    guard version >= 1 else { throw DLError(.format, "\(path): checkpoint format_version \(version) is invalid") }
    guard version <= Checkpoint.formatVersion else {
        throw DLError(.format, "\(path): checkpoint format_version \(version) is newer than this library reads (\(Checkpoint.formatVersion)); upgrade deeplearning")
    }
    let json = try f.readString("model_spec")
    let spec: ModelSpec
    do throws(DLError) { spec = try SpecParser.parse(json: json, source: "\(path):/model_spec") } catch {
        throw DLError(.format, error.message)
    }
    // The model may have no more parameters than the file holds values for (plus a
    // small allowance, so that a small model missing a parameter gets restore's precise
    // message): a small file naming a huge model is refused before it allocates anything.
    var stored = 0
    for name in f.groups["parameters"] ?? [] {
        if let d = f.datasets["parameters/\(name)"] { stored = min(stored + d.count, Limits.maxModelParameters) }
    }
    let budget = min(stored + Checkpoint.parameterAllowance, Limits.maxModelParameters)
    let model: any AnyModel
    do throws(DLError) { model = try makeModel(spec: spec, parameterBudget: budget) } catch {
        if error.kind == .noMemory && budget < Limits.maxModelParameters {
            throw DLError(.format, "\(path): the stored spec's model needs more parameters than the file stores values for (\(stored))")
        }
        throw DLError(.format, error.message)
    }
    switch model {
    case let m as Model<Float>: try m.restore(from: f)
    case let m as Model<Double>: try m.restore(from: f)
    default: throw DLError(.internal, "\(path): unexpected model type")
    }
    return model
}

/// Removes the temporary files of saves in `folder` whose process no longer exists:
/// `<name>.dltmp-<pid>-<hex>` (and `<name>.tmp-<pid>-<digits>`, the names of earlier
/// versions). Runs under the HDF5 lock, which every save holds, so a temporary file of
/// this process is never one in progress either.
func removeStaleTemporaries(_ folder: String) {
    guard let dir = opendir(folder) else { return }
    defer { closedir(dir) }
    let me = getpid()
    while let entry = readdir(dir) {
        // A record is only as long as its name: read the name in place, never copy the
        // whole d_name array (that would read past the record).
        let name = String(cString: (UnsafeRawPointer(entry) + MemoryLayout<dirent>.offset(of: \dirent.d_name)!)
            .assumingMemoryBound(to: CChar.self))
        guard let pid = temporaryOwner(name) else { continue }
        if pid == me || (kill(pid, 0) != 0 && errno == ESRCH) {
            unlink(folder == "/" ? "/\(name)" : "\(folder)/\(name)")
        }
    }
}

/// The process id in a save's temporary file name, or nil for any other name.
func temporaryOwner(_ name: String) -> pid_t? {
    let parts = name.split(separator: ".", omittingEmptySubsequences: false)
    guard parts.count >= 2, let last = parts.last else { return nil }
    let fields = last.split(separator: "-", omittingEmptySubsequences: false)
    guard fields.count == 3, !fields[1].isEmpty, !fields[2].isEmpty, fields[1].utf8.count <= 10,
          fields[1].utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
    switch fields[0] {
    case "dltmp": guard fields[2].utf8.count <= 8, UInt32(fields[2], radix: 16) != nil else { return nil }
    case "tmp": guard fields[2].utf8.count <= 10, UInt32(fields[2]) != nil else { return nil }
    default: return nil
    }
    guard let pid = Int32(fields[1]), pid > 0 else { return nil }
    return pid
}

/// fsync()s a file so a rename after it cannot expose a half-written file after a crash.
private func flushToDisk(_ path: String) throws(DLError) {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw DLError(.io, "\(path): cannot reopen to flush (\(String(cString: strerror(errno))))") }
    defer { close(fd) }
    guard fsync(fd) == 0 else { throw DLError(.io, "\(path): fsync failed (\(String(cString: strerror(errno))))") }
}
