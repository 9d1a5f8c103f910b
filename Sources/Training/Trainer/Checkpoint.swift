import Foundation
import GraphIR

/// Everything needed to continue training exactly: the parameters, the optimizer's state, the step,
/// and opaque state of the data pipeline (RNG and loader position), stored as a folder:
///
///     NAME/parameters.onnx   node-less ONNX bundle, initializers named by parameter
///     NAME/optimizer.onnx    optimizer slots as `<slot>/<parameter>` initializers
///     NAME/state.json        step, optimizer kind, data-pipeline state, free-form metadata
///     NAME/manifest.json     every file's size and checksum, every tensor's shape, the run's options
///                            (`CheckpointManifest`, verified by `read`)
///
/// A checkpoint is written into a temporary sibling folder and renamed into place, so a crash (even
/// kill -9) leaves either the previous checkpoint or the new one, never a half-written one.
public struct Checkpoint: Sendable {
    public var step: Int
    public var parameters: [String: Tensor]
    public var optimizer: OptimizerState
    /// Opaque pipeline state, e.g. RNG words and the loader's epoch/position.
    public var pipelineState: [String: [UInt64]]
    public var metadata: [String: String]
    /// The options of the run that wrote it, by command-line name (kept in the manifest).
    public var options: [String: String]
    /// The manifest it was read with (nil for a checkpoint written before manifests, or not yet written).
    public internal(set) var manifest: CheckpointManifest?

    public init(step: Int, parameters: [String: Tensor], optimizer: OptimizerState,
                pipelineState: [String: [UInt64]] = [:], metadata: [String: String] = [:], options: [String: String] = [:]) {
        self.step = step
        self.parameters = parameters
        self.optimizer = optimizer
        self.pipelineState = pipelineState
        self.metadata = metadata
        self.options = options
    }

    struct StateFile: Codable {
        var formatVersion: Int
        var step: Int
        var optimizerStep: Int
        /// UInt64 words as decimal strings: JSON numbers lose precision above 2^53.
        var pipelineState: [String: [String]]
        var metadata: [String: String]
    }

    /// Writes the checkpoint to `folder` atomically (replacing an older checkpoint there).
    public func write(to folder: String) throws {
        let fm = FileManager.default
        let parent = (folder as NSString).deletingLastPathComponent
        try fm.createDirectory(atPath: parent.isEmpty ? "." : parent, withIntermediateDirectories: true)
        let temp = folder + ".tmp-\(getpid())"
        try? fm.removeItem(atPath: temp)
        try fm.createDirectory(atPath: temp, withIntermediateDirectories: true)

        var params = Graph(name: "parameters")
        for name in parameters.keys.sorted() { params.setInitializer(name, parameters[name]!) }
        try ONNXExporter.write(Model(graph: params), to: temp + "/parameters.onnx")
        var slots = Graph(name: "optimizer")
        for name in optimizer.slots.keys.sorted() {
            for (slot, t) in optimizer.slots[name]!.sorted(by: { $0.key < $1.key }) { slots.setInitializer("\(slot)/\(name)", t) }
        }
        try ONNXExporter.write(Model(graph: slots), to: temp + "/optimizer.onnx")
        let state = StateFile(formatVersion: 1, step: step, optimizerStep: optimizer.step,
                              pipelineState: pipelineState.mapValues { $0.map(String.init) }, metadata: metadata)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try ONNXExporter.writeAtomically([UInt8](try encoder.encode(state)), to: temp + "/state.json")
        let manifest = try CheckpointManifest.describing(folder: temp, checkpoint: self)
        try ONNXExporter.writeAtomically([UInt8](try encoder.encode(manifest)), to: temp + "/" + CheckpointManifest.fileName)

        // Swap: old → .old, temp → folder, drop .old. A crash between the renames leaves `.old`,
        // which `read` falls back to.
        let old = folder + ".old"
        try? fm.removeItem(atPath: old)
        if fm.fileExists(atPath: folder) { try fm.moveItem(atPath: folder, toPath: old) }
        try fm.moveItem(atPath: temp, toPath: folder)
        try? fm.removeItem(atPath: old)
    }

    /// Reads a checkpoint folder (or its `.old` twin left by an interrupted write), verifying its
    /// manifest when it has one: a missing, extra or corrupt file or tensor is an error naming it.
    public static func read(from folder: String) throws -> Checkpoint {
        let fm = FileManager.default
        var dir = folder
        if !fm.fileExists(atPath: dir + "/state.json"), fm.fileExists(atPath: folder + ".old/state.json") { dir = folder + ".old" }
        var isFolder: ObjCBool = false
        guard fm.fileExists(atPath: dir, isDirectory: &isFolder) else {
            throw SegFormerError.io("\(folder): no checkpoint here (the folder does not exist)")
        }
        guard isFolder.boolValue else { throw SegFormerError.io("\(folder) is a file, not a checkpoint folder") }
        let manifest = try CheckpointManifest.verifyFiles(in: dir)
        guard let data = fm.contents(atPath: dir + "/state.json") else {
            throw SegFormerError.io("\(folder): no checkpoint here (state.json missing)")
        }
        let state: StateFile
        do { state = try JSONDecoder().decode(StateFile.self, from: data) } catch {
            throw SegFormerError.invalid("\(dir)/state.json: not a checkpoint state file\(SegFormerError.parseDetail(error))")
        }
        guard state.formatVersion == 1 else {
            throw SegFormerError.unsupported("\(dir): checkpoint format \(state.formatVersion)")
        }
        guard state.step >= 0, state.optimizerStep >= 0, state.optimizerStep <= state.step else {
            throw SegFormerError.invalid("\(dir)/state.json: step \(state.step) with optimizer step \(state.optimizerStep) (needs 0 ≤ optimizer step ≤ step)")
        }
        let params = try ONNXImporter.load(contentsOf: dir + "/parameters.onnx").graph.initializers
        var slots: [String: [String: Tensor]] = [:]
        for (key, t) in try ONNXImporter.load(contentsOf: dir + "/optimizer.onnx").graph.initializers {
            guard let slash = key.firstIndex(of: "/") else {
                throw SegFormerError.invalid("\(dir)/optimizer.onnx: tensor '\(key)' is not named SLOT/PARAMETER")
            }
            slots[String(key[key.index(after: slash)...]), default: [:]][String(key[..<slash])] = t
        }
        var pipeline: [String: [UInt64]] = [:]
        for (k, words) in state.pipelineState {
            pipeline[k] = try words.map { w in
                guard let v = UInt64(w) else { throw SegFormerError.invalid("\(dir)/state.json: bad state word '\(w)'") }
                return v
            }
        }
        var checkpoint = Checkpoint(step: state.step, parameters: params,
                                    optimizer: OptimizerState(step: state.optimizerStep, slots: slots),
                                    pipelineState: pipeline, metadata: state.metadata, options: manifest?.options ?? [:])
        try manifest?.verifyTensors(of: checkpoint, folder: dir)
        checkpoint.manifest = manifest
        return checkpoint
    }
}
