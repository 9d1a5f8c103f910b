import Foundation

/// How much memory a run may use, checked before the memory is taken: the planner compares a plan's
/// activation peak with it (naming the op and tensor at the peak), the executor checks outputs whose
/// size only a run reveals, and image decoding checks a header's pixel count. Over budget is one
/// error ("… needs 42.0 GB, above the memory budget of 3.1 GB"), never an allocation failure's abort.
///
/// The budget is process-wide (`segformer --max-memory`); by default it is the memory available when
/// it is first needed (/proc/meminfo's MemAvailable), but at least `minimumDefault`.
public enum MemoryBudget {
    /// The default never goes below this, so a busy machine still runs small models.
    public static let minimumDefault = 512 << 20
    /// Constant folding (at compile and plan time) never computes a result larger than this; bigger
    /// constants are computed when the model runs, under the budget like any activation.
    public static let foldLimitBytes = 32 << 20

    nonisolated(unsafe) private static var explicitLimit: Int?
    private static let lock = NSLock()
    nonisolated(unsafe) private static var defaultLimit: Int?

    /// The budget in bytes. Setting it overrides the default (nil restores it).
    public static var limit: Int {
        get {
            lock.lock(); defer { lock.unlock() }
            if let explicitLimit { return explicitLimit }
            if defaultLimit == nil { defaultLimit = max(availableBytes() ?? Int.max, minimumDefault) }
            return defaultLimit!
        }
    }

    public static func setLimit(_ bytes: Int?) {
        lock.lock(); defer { lock.unlock() }
        explicitLimit = bytes
    }

    /// MemAvailable from /proc/meminfo, in bytes (nil where there is none).
    public static func availableBytes() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
            let fields = line.split(separator: " ")
            if fields.count >= 2, let kb = Int(fields[1]) { return kb * 1024 }
        }
        return nil
    }

    /// Throws when `bytes` (nil: too large to count) is above the budget. `what` names the thing
    /// needing it, e.g. "node 'conv1' (Conv) producing 'y' float32[1×64×8192×8192]".
    public static func require(_ bytes: Int?, for what: @autoclosure () -> String) throws {
        let budget = limit
        guard let bytes, bytes <= budget else {
            let needed = bytes.map { formatBytes($0) } ?? "more bytes than can be counted"
            throw SegFormerError.invalid("\(what()) needs \(needed), above the memory budget of \(formatBytes(budget)) (--max-memory)")
        }
    }

    /// Parses a size such as `4G`, `512M`, `1.5GB`, `300000` (bytes); units are powers of 1024.
    public static func parse(_ text: String) -> Int? { parseQuantity(text, base: 1024, allowByteSuffix: true) }
}

/// A positive count with an optional K/M/G/T suffix (powers of `base`; `KB`… too when
/// `allowByteSuffix`), e.g. `4G`, `1.5T`, `300000`; nil when malformed, not positive or ≥ 2⁶².
/// `--max-memory` (base 1024) and `--max-work` (base 1000) read their values with it.
public func parseQuantity(_ text: String, base: Double, allowByteSuffix: Bool = false) -> Int? {
    let t = text.trimmingCharacters(in: .whitespaces).uppercased()
    var units: [(String, Double)] = [("T", pow(base, 4)), ("G", pow(base, 3)), ("M", pow(base, 2)), ("K", base)]
    if allowByteSuffix { units = units.map { ($0.0 + "B", $0.1) } + units + [("B", 1)] }
    var number = Substring(t), scale = 1.0
    for (suffix, s) in units where t.hasSuffix(suffix) {
        number = t.dropLast(suffix.count)
        scale = s
        break
    }
    guard let v = Double(number.trimmingCharacters(in: .whitespaces)), v.isFinite, v > 0 else { return nil }
    let count = v * scale
    guard count >= 1, count < 0x1p62 else { return nil }
    return Int(count)
}

extension Tensor {
    /// The element count of `shape`, or nil when it overflows `Int` (a hostile or broken model's dims)
    /// or a dimension is negative.
    public static func checkedElementCount(_ shape: [Int]) -> Int? {
        var n = 1
        for d in shape {
            guard d >= 0 else { return nil }
            let (p, overflow) = n.multipliedReportingOverflow(by: d)
            if overflow { return nil }
            n = p
        }
        return n
    }

    /// Bytes of a tensor of this shape and element type, or nil when the count overflows.
    public static func checkedByteCount(_ shape: [Int], _ dataType: DataType) -> Int? {
        guard let n = checkedElementCount(shape) else { return nil }
        let (b, overflow) = n.multipliedReportingOverflow(by: dataType.byteSize ?? 8)
        return overflow ? nil : b
    }
}

/// `bytes` as B, KB, MB or GB (powers of 1024), for reports.
public func formatBytes(_ bytes: Int) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"]
    var v = Double(bytes), u = 0
    while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
    return u == 0 ? "\(bytes) B" : String(format: "%.1f %@", v, units[u])
}
