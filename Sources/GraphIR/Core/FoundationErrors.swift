import Foundation

extension SegFormerError {
    /// A Foundation file-system error as one `.io` line naming the file and the reason in words
    /// ("cannot access run/model.onnx: it already exists"), never the raw `NSCocoaErrorDomain Code=516`
    /// text. `path` names the file when the error itself does not.
    public static func fileSystem(_ error: Error, path: String? = nil) -> SegFormerError {
        if let e = error as? SegFormerError { return e }
        let ns = error as NSError
        let file = (ns.userInfo[NSFilePathErrorKey] as? String)
            ?? (ns.userInfo[NSURLErrorKey] as? URL)?.path ?? path ?? "a file"
        return .io("cannot access \(file): \(fileSystemReason(error))")
    }

    /// Why a file-system operation failed, in words ("no such file or folder", "permission denied", …).
    public static func fileSystemReason(_ error: Error) -> String {
        let ns = error as NSError
        if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
        guard let cocoa = error as? CocoaError else { return ns.localizedDescription }
        switch cocoa.code {
        case .fileWriteFileExists: return "it already exists"
        case .fileWriteNoPermission, .fileReadNoPermission: return "permission denied"
        case .fileNoSuchFile, .fileReadNoSuchFile: return "no such file or folder"
        case .fileWriteOutOfSpace: return "no space left on the device"
        case .fileWriteVolumeReadOnly: return "the volume is read-only"
        case .fileWriteInvalidFileName, .fileReadInvalidFileName: return "invalid file name"
        case .fileReadCorruptFile: return "corrupt file"
        default:
            if let posix = ns.userInfo[NSUnderlyingErrorKey] as? NSError, posix.domain == NSPOSIXErrorDomain {
                return String(cString: strerror(Int32(posix.code)))
            }
            return "file-system error \(cocoa.code.rawValue)"
        }
    }
}

extension SegFormerError {
    /// What a JSON parser or decoder found wrong, as " (…)" to append to a message ("" when it says
    /// nothing): the parser's own detail, or the key a `Decodable` missed — without Foundation's generic
    /// "The operation could not be completed" or Swift's `DecodingError.Context(…)` dump.
    public static func parseDetail(_ error: Error) -> String {
        if let decoding = error as? DecodingError {
            func key(_ path: [CodingKey]) -> String { path.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".") }
            switch decoding {
            case .keyNotFound(let missing, let context): return " (\"\(key(context.codingPath + [missing]))\" is missing)"
            case .typeMismatch(_, let context), .valueNotFound(_, let context):
                return " (\"\(key(context.codingPath))\" has the wrong type)"
            case .dataCorrupted(let context):
                return context.underlyingError.map(parseDetail) ?? " (\(context.debugDescription))"
            @unknown default: return ""
            }
        }
        return ((error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String).map { " (\($0))" } ?? ""
    }
}
