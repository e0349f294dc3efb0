// The C ABI of the registries and of training schedules: dl_registry_json, dl_model_end_epoch.
import DeepLearning
import Glibc

/// The registry as JSON, made once (Swift runs a global's initializer once, thread-safely)
/// and never changed or freed: callers keep its address for the life of the process.
private let registryText = RegistryText()

private final class RegistryText: Sendable {
    let address: Int

    init() { address = Int(bitPattern: strdup(SpecDocs.registryJSON())) }
}

@_cdecl("dl_registry_json")
public func dl_registry_json() -> UnsafePointer<CChar> {
    UnsafePointer(bitPattern: registryText.address)
        ?? UnsafeRawPointer(("{}" as StaticString).utf8Start).assumingMemoryBound(to: CChar.self)
}

@_cdecl("dl_model_end_epoch")
public func dl_model_end_epoch(_ model: OpaquePointer?) -> Int32 {
    withModel(model) { (box) throws(DLError) in
        // A counter loaded from a checkpoint may be anything up to Int.max.
        let (next, overflow) = box.value.epoch.addingReportingOverflow(1)
        guard !overflow else { throw .invalid("the epoch counter is at its largest value (\(box.value.epoch)) and cannot advance") }
        box.value.epoch = next
    }
}
