import Foundation

extension SegFormerError {
    /// A Foundation file-system error as one `.io` line naming the file and the reason in words
    /// ("cannot write run/model.onnx: it already exists"), never the raw `NSCocoaErrorDomain Code=516`
    /// text. `path` names the file when the error itself does not.
    public static func fileSystem(_ error: Error, path: String? = nil) -> SegFormerError {
        if let e = error as? SegFormerError { return e }
        let ns = error as NSError
        let file = (ns.userInfo[NSFilePathErrorKey] as? String)
            ?? (ns.userInfo[NSURLErrorKey] as? URL)?.path ?? path ?? "a file"
        if ns.domain == NSPOSIXErrorDomain {
            return .io("cannot access \(file): \(String(cString: strerror(Int32(ns.code))))")
        }
        guard let cocoa = error as? CocoaError else { return .io("\(file): \(ns.localizedDescription)") }
        switch cocoa.code {
        case .fileWriteFileExists: return .io("cannot write \(file): it already exists")
        case .fileWriteNoPermission: return .io("cannot write \(file): permission denied")
        case .fileReadNoPermission: return .io("cannot read \(file): permission denied")
        case .fileNoSuchFile, .fileReadNoSuchFile: return .io("\(file): no such file or folder")
        case .fileWriteOutOfSpace: return .io("cannot write \(file): no space left on the device")
        case .fileWriteVolumeReadOnly: return .io("cannot write \(file): the volume is read-only")
        case .fileWriteInvalidFileName, .fileReadInvalidFileName: return .io("\(file): invalid file name")
        case .fileReadCorruptFile: return .io("cannot read \(file): corrupt file")
        default:
            if let posix = ns.userInfo[NSUnderlyingErrorKey] as? NSError, posix.domain == NSPOSIXErrorDomain {
                return .io("cannot access \(file): \(String(cString: strerror(Int32(posix.code))))")
            }
            return .io("cannot access \(file) (file-system error \(cocoa.code.rawValue))")
        }
    }
}
