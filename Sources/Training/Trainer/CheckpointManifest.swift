import Foundation
import GraphIR

/// What a checkpoint folder holds, written last into it (`manifest.json`): every file with its size
/// and checksum, every tensor with its shape, and the options of the run that wrote it. Reading a
/// checkpoint verifies it, so a missing, extra, truncated or bit-flipped file or tensor is an error
/// naming it, never a silently different resume.
///
/// Checkpoints written before manifests existed have none; they are read with the structural checks
/// alone (every tensor against the model, the step against the run), not the per-file checksums.
public struct CheckpointManifest: Codable, Equatable, Sendable {
    public struct FileEntry: Codable, Equatable, Sendable {
        public var bytes: Int
        /// FNV-1a 64 of the file's bytes, hex: any single changed byte changes it.
        public var checksum: String
    }

    public var formatVersion = 1
    /// File name (inside the checkpoint folder) → size and checksum.
    public var files: [String: FileEntry]
    /// Parameter name → shape.
    public var parameters: [String: [Int]]
    /// `SLOT/PARAMETER` (as in optimizer.onnx) → shape.
    public var optimizerSlots: [String: [Int]]
    /// The run's options, by command-line name (what `--resume` compares with the new run's).
    public var options: [String: String]

    public static let fileName = "manifest.json"

    /// The manifest of the checkpoint files already written in `folder`.
    static func describing(folder: String, checkpoint: Checkpoint) throws -> CheckpointManifest {
        var files: [String: FileEntry] = [:]
        for name in try contents(of: folder) where name != fileName {
            let bytes = try read(folder + "/" + name)
            files[name] = FileEntry(bytes: bytes.count, checksum: checksum(bytes))
        }
        var slots: [String: [Int]] = [:]
        for (parameter, named) in checkpoint.optimizer.slots {
            for (slot, t) in named { slots["\(slot)/\(parameter)"] = t.shape }
        }
        return CheckpointManifest(files: files, parameters: checkpoint.parameters.mapValues(\.shape),
                                  optimizerSlots: slots, options: checkpoint.options)
    }

    /// Reads `folder`'s manifest (nil when the checkpoint predates manifests) and checks its files:
    /// each one listed is present with its size and checksum, and none is unlisted.
    static func verifyFiles(in folder: String) throws -> CheckpointManifest? {
        let path = folder + "/" + fileName
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let manifest: CheckpointManifest
        do { manifest = try JSONDecoder().decode(CheckpointManifest.self, from: Data(try read(path))) } catch let e as SegFormerError {
            throw e
        } catch {
            throw SegFormerError.invalid("\(path): not a checkpoint manifest\(SegFormerError.parseDetail(error))")
        }
        guard manifest.formatVersion == 1 else {
            throw SegFormerError.unsupported("\(path): manifest format \(manifest.formatVersion)")
        }
        for (name, entry) in manifest.files.sorted(by: { $0.key < $1.key }) {
            let file = folder + "/" + name
            guard FileManager.default.fileExists(atPath: file) else {
                throw SegFormerError.invalid("checkpoint \(folder): \(name) is missing (listed in \(fileName))")
            }
            let bytes = try read(file)
            guard bytes.count == entry.bytes, checksum(bytes) == entry.checksum else {
                throw SegFormerError.invalid("checkpoint \(folder): \(name) is corrupt (its \(bytes.count) bytes do not match the checksum in \(fileName))")
            }
        }
        for name in try contents(of: folder) where name != fileName && manifest.files[name] == nil {
            throw SegFormerError.invalid("checkpoint \(folder): unexpected file \(name) (not in \(fileName))")
        }
        return manifest
    }

    /// Checks that the tensors read are exactly the ones the manifest lists, with their shapes.
    func verifyTensors(of checkpoint: Checkpoint, folder: String) throws {
        var slots: [String: [Int]] = [:]
        for (parameter, named) in checkpoint.optimizer.slots {
            for (slot, t) in named { slots["\(slot)/\(parameter)"] = t.shape }
        }
        try CheckpointManifest.compare(checkpoint.parameters.mapValues(\.shape), listed: parameters,
                                       file: "\(folder)/parameters.onnx", what: "parameter")
        try CheckpointManifest.compare(slots, listed: optimizerSlots, file: "\(folder)/optimizer.onnx", what: "optimizer slot")
    }

    private static func compare(_ found: [String: [Int]], listed: [String: [Int]], file: String, what: String) throws {
        if let name = listed.keys.sorted().first(where: { found[$0] == nil }) {
            throw SegFormerError.invalid("\(file): \(what) '\(name)' is missing (listed in \(fileName))")
        }
        if let name = found.keys.sorted().first(where: { listed[$0] == nil }) {
            throw SegFormerError.invalid("\(file): unexpected \(what) '\(name)' (not in \(fileName))")
        }
        if let name = found.keys.sorted().first(where: { found[$0] != listed[$0] }) {
            throw SegFormerError.invalid("\(file): \(what) '\(name)' has shape \(found[name]!) but \(fileName) says \(listed[name]!)")
        }
    }

    /// FNV-1a, 64 bits.
    static func checksum(_ bytes: [UInt8]) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        return String(h, radix: 16)
    }

    private static func read(_ path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else { throw SegFormerError.io("cannot read \(path)") }
        return [UInt8](data)
    }

    private static func contents(of folder: String) throws -> [String] {
        do { return try FileManager.default.contentsOfDirectory(atPath: folder).sorted() } catch {
            throw SegFormerError.fileSystem(error, path: folder)
        }
    }
}
