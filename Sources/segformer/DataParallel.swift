import ArgumentParser
import Distributed
import Foundation
import GraphIR
import Runtime

/// `--distributed` and its timeout, taken by the commands that can run as one MPI job (`train`, `evaluate`).
struct DistributedOptions: ParsableArguments {
    @Flag(help: "Run as one process of an MPI job (on by itself under mpirun/srun). --batch-size is then per process.")
    var distributed = false
    @Option(help: "Seconds a process waits for the others in a collective before the job is aborted.")
    var collectiveTimeout: Double = 600

    func validate() throws {
        guard collectiveTimeout > 0 else { throw ValidationError("--collective-timeout must be positive, got \(collectiveTimeout)") }
    }

    /// Runs `body` alone (no MPI launcher and no --distributed: MPI is never initialised), or as one process
    /// of the MPI job. There an error on any process is printed with its rank and ends the whole job
    /// (MPI_Abort) with the error's exit code, so no process is left waiting in a collective.
    func run(threads: Int?, _ body: (MPIProcessGroup?, Int?) throws -> Void) throws {
        guard distributed || MPIProcessGroup.launchedByMPI else { return try body(nil, threads) }
        let group = try MPIProcessGroup(timeout: collectiveTimeout)
        // Processes sharing a machine share its cores unless told otherwise.
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let perProcess = threads ?? max(1, cores / max(1, group.localSize))
        do {
            try body(group, perProcess)   // the commands' bodies report their errors (reportingErrors) and throw ExitCode
        } catch {
            if !(error is ExitCode) { printErr("error: \(error)") }
            printErr("rank \(group.rank) of \(group.size) failed: aborting the job")
            group.abort(code: (error as? ExitCode)?.rawValue ?? 1)
        }
        group.finalize()
    }
}
