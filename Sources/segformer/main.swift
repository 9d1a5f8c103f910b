import ArgumentParser
import Foundation
import GraphIR
import Runtime

/// The `segformer` tool: parses arguments and prints results; the work is done by the GraphIR, Runtime,
/// SegmentationData, SegformerModels, Training and Applications modules.
struct SegFormerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "segformer",
        abstract: "Import, run, check and benchmark SegFormer ONNX models on the CPU.",
        subcommands: [Inspect.self, Run.self, TestModel.self, Classify.self, Predict.self, Bench.self, Step.self, Init.self, Train.self, Evaluate.self, Export.self, ExportHF.self, DemoCommand.self])
}

/// Runs a command body, turning library errors into one clear line on stderr and a non-zero exit.
/// Exit codes (README): 1 invalid input or failed check, 3 unsupported model feature, 4 file errors
/// (Foundation's file-system errors included, in words); ArgumentParser itself exits with 64 on a usage
/// error (unknown option, or a bad value refused by a command's `validate()`).
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as SegFormerError {
        try exit(reporting: e)
    } catch let e as CocoaError {
        try exit(reporting: .fileSystem(e))
    } catch let e where (e as NSError).domain == NSPOSIXErrorDomain {
        try exit(reporting: .fileSystem(e))
    } catch let e where !(e is ExitCode) {
        FileHandle.standardError.write(Data("error: \(e)\n".utf8))
        throw ExitCode(1)
    }
}

private func exit(reporting e: SegFormerError) throws -> Never {
    FileHandle.standardError.write(Data("error: \(e)\n".utf8))
    switch e {
    case .unsupported: throw ExitCode(3)
    case .io: throw ExitCode(4)
    case .invalid: throw ExitCode(1)
    }
}

func printErr(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }

/// Whether stdout is a terminal (progress bars) or a pipe/file (plain lines).
var stdoutIsTerminal: Bool { isatty(STDOUT_FILENO) == 1 }

/// `--threads`, `--gemm`, `--max-memory` and `--max-work`, taken by every command that runs a model.
struct ThreadOptions: ParsableArguments {
    @Option(help: "Intra-op threads (default: all cores).") var threads: Int?
    @Option(help: ArgumentHelp("Float32 GEMM library: onednn (the default when libdnnl.so.2 is installed) or openblas.", valueName: "library"))
    var gemm: GEMMLibrary?
    @Option(help: ArgumentHelp("Memory budget for a run, e.g. 4G or 512M (default: the available memory, at least 512M). A plan or image above it is an error naming what needs the memory.", valueName: "size"))
    var maxMemory: String?
    @Option(help: ArgumentHelp("Work budget for a run in multiply-adds, e.g. 500G or 2T (default: none). A plan above it is an error naming the node that does the most.", valueName: "count"))
    var maxWork: String?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
        if let maxMemory {
            guard let bytes = MemoryBudget.parse(maxMemory) else {
                throw ValidationError("--max-memory must be a positive size such as 4G, 512M or 300000 (bytes), got '\(maxMemory)'")
            }
            // The budget is process-wide (the planner and image decoding read it); validation runs once,
            // before the command, so this is where the option takes effect.
            MemoryBudget.setLimit(bytes)
        }
        if let maxWork {
            guard let count = parseQuantity(maxWork, base: 1000) else {
                throw ValidationError("--max-work must be a positive count such as 500G, 2T or 1000000 (multiply-adds), got '\(maxWork)'")
            }
            WorkBudget.setLimit(Double(count))
        }
        // Process-wide like the budget (and like the libraries' own thread pools).
        if let gemm {
            do { try GEMMLibrary.use(gemm) } catch { throw ValidationError("--gemm \(gemm.rawValue): \(error)") }
        }
    }
}

extension GEMMLibrary: ExpressibleByArgument {}

/// `--threads`, `--no-optimize` and `--no-pack-weights`: how the inference commands (`run`, `bench`,
/// `test-model`) compile and run a model.
struct SessionFlags: ParsableArguments {
    @OptionGroup var threadOptions: ThreadOptions
    @Flag(help: "Skip the optimizing passes (constants are still folded), for A/B comparisons.") var noOptimize = false
    @Flag(help: "Do not pack constant GEMM weights once for oneDNN (every product packs them, as dnnl_sgemm does), for A/B comparisons.")
    var noPackWeights = false

    var threads: Int? { threadOptions.threads }
    var sessionOptions: SessionOptions {
        SessionOptions(threads: threadOptions.threads, optimizingPasses: !noOptimize, packWeights: !noPackWeights)
    }
}

SegFormerCommand.main()
