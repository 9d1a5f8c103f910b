import COneDNN
import Foundation
import GraphIR

/// The library that runs float32 GEMMs (`BLAS.gemm`). OpenBLAS is linked and always there; oneDNN
/// (`libdnnl.so.2`, Debian's libdnnl2) is faster on the skinny products that dominate SegFormer's
/// encoder (M = tokens, N and K = 32…256) and is used when it loads. float64 stays on OpenBLAS
/// (oneDNN has no dgemm). Process-wide, like both libraries' thread pools.
public enum GEMMLibrary: String, CaseIterable, Sendable {
    case openBLAS = "openblas"
    case oneDNN = "onednn"

    /// The library in use: oneDNN when it loads, else OpenBLAS, until `use` picks one.
    public static var current: GEMMLibrary {
        lock.lock(); defer { lock.unlock() }
        return selected ?? (OneDNN.shared != nil ? .oneDNN : .openBLAS)
    }

    /// Makes `library` run every later float32 GEMM. oneDNN that cannot be loaded is an error saying
    /// how to install it.
    public static func use(_ library: GEMMLibrary) throws {
        if library == .oneDNN, OneDNN.shared == nil {
            throw SegFormerError.unsupported("GEMM library onednn: cannot load \(OneDNN.libraryName) (\(OneDNN.loadError ?? "unknown error")); install Debian's libdnnl2 or use openblas")
        }
        lock.lock(); defer { lock.unlock() }
        selected = library
    }

    /// Whether oneDNN can be used (the library loads).
    public static var oneDNNAvailable: Bool { OneDNN.shared != nil }

    private nonisolated(unsafe) static var selected: GEMMLibrary?
    private static let lock = NSLock()
}

/// oneDNN's row-major `dnnl_sgemm`, loaded at first use with dlopen rather than linked: the library
/// stays optional (OpenBLAS is the design's default), and its OpenMP runtime (libgomp) is loaded only
/// then, after `GOMP_SPINCOUNT` is set. libgomp reads its environment once, when it loads; its
/// default lets a worker spin for ~300,000 rounds after each parallel region, which on a machine with
/// as many threads as cores takes a core from our own loops (Dispatch) running the next kernel.
/// A user's own OMP_WAIT_POLICY / GOMP_SPINCOUNT win.
struct OneDNN {
    typealias SGEMM = @convention(c) (CChar, CChar, Int64, Int64, Int64, Float, UnsafePointer<Float>?, Int64,
                                      UnsafePointer<Float>?, Int64, Float, UnsafeMutablePointer<Float>?, Int64) -> Int32
    typealias SetThreads = @convention(c) (Int32) -> Void
    typealias GetThreads = @convention(c) () -> Int32

    static let libraryName = "libdnnl.so.2"
    /// The spin count set before libgomp loads (unless the user set one): short enough that an idle
    /// worker yields its core within tens of microseconds.
    static let spinCount = "10000"

    let sgemm: SGEMM
    /// OpenMP's per-thread team size (`omp_set_num_threads` / `omp_get_max_threads`): dnnl_sgemm uses
    /// the calling thread's, so `BLAS.gemm` sets it to the caller's `ExecutionContext.threads`.
    let setThreads: SetThreads
    let maxThreads: GetThreads
    /// Whether the matmul primitive's API bound too (`PackedWeights`; oneDNN 2.x), else sgemm alone.
    let packsWeights: Bool

    nonisolated(unsafe) static var loadError: String?
    static let shared: OneDNN? = load()

    private static func load() -> OneDNN? {
        if getenv("OMP_WAIT_POLICY") == nil && getenv("GOMP_SPINCOUNT") == nil { setenv("GOMP_SPINCOUNT", spinCount, 0) }
        guard let handle = dlopen(libraryName, RTLD_NOW | RTLD_LOCAL) else {
            loadError = dlerror().map { String(cString: $0) }
            return nil
        }
        // dlsym on the handle searches its dependencies too (libgomp for the omp_* calls).
        guard let sgemm = dlsym(handle, "dnnl_sgemm"), let set = dlsym(handle, "omp_set_num_threads"),
              let get = dlsym(handle, "omp_get_max_threads") else {
            loadError = "missing dnnl_sgemm / omp_set_num_threads / omp_get_max_threads"
            return nil
        }
        return OneDNN(sgemm: unsafeBitCast(sgemm, to: SGEMM.self), setThreads: unsafeBitCast(set, to: SetThreads.self),
                      maxThreads: unsafeBitCast(get, to: GetThreads.self), packsWeights: odnn_bind(handle) == nil)
    }
}
