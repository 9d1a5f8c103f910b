import GraphIR
import Runtime

/// A batch, height or width asked for on the command line (`bench --batch/--height/--width`,
/// `predict/classify --size`). Such options bind the symbolic dimensions of a model's inputs; on a
/// dimension the export fixed they cannot apply, and an explicit value that differs from it is an
/// error saying the model's shape — never silently ignored.
public struct InputSizeRequest {
    public enum Axis: Sendable { case batch, height, width }

    /// How the request is named in errors (e.g. "--size").
    public var option: String
    public var axes: [Axis]
    public var value: Int

    public init(option: String, axes: [Axis], value: Int) {
        self.option = option
        self.axes = axes
        self.value = value
    }

    /// Throws when a request meets a fixed dimension of another size in one of `inputs` (axis 0 is the
    /// batch, the last two are height and width, as `BenchmarkInputs.shape` binds them).
    public static func check(_ requests: [InputSizeRequest], against inputs: [ValueInfo]) throws {
        for input in inputs {
            guard let dims = input.type.shape, dims.count >= 2 else { continue }
            for request in requests {
                for axis in request.axes {
                    let index = axis == .batch ? 0 : (axis == .height ? dims.count - 2 : dims.count - 1)
                    guard let fixed = dims[index].value, fixed != request.value else { continue }
                    throw SegFormerError.invalid("\(request.option) \(request.value) cannot apply: the model's input '\(input.name)' has the fixed shape \(input.type) (its \(axis) is \(fixed); export the model with a symbolic \(axis) to choose it)")
                }
            }
        }
    }

    /// `predict/classify --size`, when given: the height and width of the pipeline's first input.
    public static func checkImageSize(_ size: Int?, option: String = "--size", for session: Session) throws {
        guard let size else { return }
        try check([InputSizeRequest(option: option, axes: [.height, .width], value: size)], against: Array(session.inputs.prefix(1)))
    }
}
