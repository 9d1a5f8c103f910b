import Foundation
import GraphIR

/// The one place that decides whether an output may be written: nothing the user owns is replaced
/// silently, and a result never replaces the file it was made from.
public enum OutputGuard {
    /// Refuses to replace an existing file unless `overwrite`, and refuses `input` (the model the
    /// output is computed from) even with `overwrite`.
    public static func requireWritable(_ path: String, overwrite: Bool, input: String? = nil) throws {
        if let input, resolved(path) == resolved(input) {
            throw SegFormerError.io("\(path) is the input model; choose another output path")
        }
        if !overwrite && FileManager.default.fileExists(atPath: path) {
            throw SegFormerError.io("\(path) already exists (use --overwrite to replace it)")
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
