import Foundation
import GraphIR

/// The one place that decides whether an output may be written: nothing the user owns is replaced
/// silently, and a result never replaces the file it was made from.
public enum OutputGuard {
    /// Refuses to replace an existing file unless `overwrite`, and refuses `input` (the model the
    /// output is computed from) even with `overwrite`.
    public static func requireWritable(_ path: String, overwrite: Bool, input: String? = nil) throws {
        try requireWritable([path], overwrite: overwrite, inputs: input.map { [$0] } ?? [])
    }

    /// The policy for every command's set of outputs, checked before any work starts: no two outputs
    /// are the same file (e.g. values `a/b` and `a_b` both written to `a_b.pb`; `names` say what each
    /// output holds, for that message), no output is one of `inputs` (even with `overwrite`), and
    /// outputs that exist are refused unless `overwrite`, all of them named in one error.
    public static func requireWritable(_ outputs: [String], names: [String]? = nil, overwrite: Bool,
                                       inputs: [String] = []) throws {
        var seen: [String: Int] = [:]
        for (i, path) in outputs.enumerated() {
            let key = resolved(path)
            if let j = seen[key] {
                let what = names.map { "\($0[j]) and \($0[i])" } ?? "two outputs"
                throw SegFormerError.invalid("\(what) would both be written to \(path); rename one of them")
            }
            seen[key] = i
            if let input = inputs.first(where: { resolved($0) == key }) {
                throw SegFormerError.io("\(path) is an input of this command (\(input)); an output never replaces an input")
            }
        }
        let existing = outputs.filter { FileManager.default.fileExists(atPath: $0) }
        if !overwrite && !existing.isEmpty {
            throw SegFormerError.io("\(existing.joined(separator: ", ")) already exist\(existing.count == 1 ? "s" : "") (use --overwrite to replace \(existing.count == 1 ? "it" : "them"))")
        }
    }

    /// Refuses an output folder that is a file, or that holds anything unless `overwrite`.
    /// Returns whether the folder holds something (which the caller then replaces).
    @discardableResult
    public static func requireEmptyFolder(_ folder: String, overwrite: Bool) throws -> Bool {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory) else { return false }
        guard isDirectory.boolValue else { throw SegFormerError.io("\(folder) exists and is not a folder") }
        let contents = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        if !contents.isEmpty && !overwrite {
            throw SegFormerError.io("\(folder) is not empty; choose another folder or use --overwrite")
        }
        return !contents.isEmpty
    }

    private static func resolved(_ path: String) -> String {
        URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
    }
}
