import Foundation

/// The OpenVINO columns of `compare --openvino`: `tools/bench_openvino.py`,
/// one child per case and precision (the same models converted from PyTorch,
/// compiled for the CPU plugin with the same thread count).
struct OpenVINOSide {
    let python: String
    let pythonArguments: [String]
    let threads: String
    let script = benchRoot.appendingPathComponent("tools/bench_openvino.py").path

    /// Whether the Python runs `import openvino`; without it the columns show "—".
    var importable: Bool {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = pythonArguments + ["-c", "import openvino"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return false }
        process.waitUntilExit()
        return process.terminationStatus == 0
    }

    /// A "-bf16" case is the float32 row's model under the bf16 hint: only that run.
    func run(_ name: String, repeats: String) -> OpenVINOResults {
        func child(_ precision: String) -> CaseResult? {
            runChild(python, pythonArguments + [script, name, "--repeats", repeats, "--threads", threads, "--precision", precision],
                     environment: ["HF_HUB_OFFLINE": "1"])
        }
        let bf16Row = name.hasSuffix("-bf16")
        // OpenVINO is an inference runtime: training steps have no OpenVINO side.
        if name.hasPrefix("train-") { return OpenVINOResults(f32: nil, bf16: nil, bf16Row: bf16Row) }
        return OpenVINOResults(f32: bf16Row ? nil : child("f32"), bf16: child("bf16"), bf16Row: bf16Row)
    }
}

struct OpenVINOResults {
    let f32: CaseResult?
    let bf16: CaseResult?
    /// The row is a bfloat16 case: the Swift time compares with the bf16 run.
    let bf16Row: Bool
    var matching: CaseResult? { bf16Row ? bf16 : f32 }
}

/// The printed table: fixed-width columns, the case name left-aligned.
struct CompareTable {
    let openvino: Bool

    private var columns: [(title: String, width: Int)] {
        let torch = [("case", 22), ("swift s", 9), ("torch s", 9), ("ratio", 6)]
        let memory = [("swift MiB", 9), ("torch MiB", 9)]
        guard openvino else { return torch + memory }
        // "ran as": the precision the bf16 run's compiled model reports (f32 without native bfloat16).
        return torch + [("ov f32 s", 9), ("ov bf16 s", 9), ("ran as", 6), ("swift/ov", 8)] + memory + [("ov MiB", 7)]
    }

    var header: String { line(columns.map(\.title)) }

    func row(_ name: String, swift: CaseResult?, torch: CaseResult?, ov: OpenVINOResults?) -> String {
        func f(_ x: Double?, _ format: String) -> String { x.map { String(format: format, $0) } ?? "—" }
        let ratio = swift.flatMap { s in torch.map { s.seconds / $0.seconds } }
        var cells = [name, f(swift?.seconds, "%.3f"), f(torch?.seconds, "%.3f"), f(ratio, "%.2fx")]
        if openvino {
            let ovRatio = swift.flatMap { s in ov?.matching.map { s.seconds / $0.seconds } }
            cells += [f(ov?.f32?.seconds, "%.3f"), f(ov?.bf16?.seconds, "%.3f"), ov?.bf16?.precision ?? "—", f(ovRatio, "%.2fx")]
        }
        cells += [f(swift?.peak_rss_mib, "%.0f"), f(torch?.peak_rss_mib, "%.0f")]
        if openvino { cells.append(f(ov?.matching?.peak_rss_mib, "%.0f")) }
        var text = line(cells)
        if let s = swift, let flops = s.flops, flops > 0 {
            text += String(format: "   %.0f GFLOP: %.0f", flops / 1e9, flops / 1e9 / s.seconds)
            if let t = torch { text += String(format: " vs %.0f GFLOP/s", flops / 1e9 / t.seconds) }
        }
        // The OpenVINO outputs against PyTorch's float32 one (a correctness check, not only timing).
        let checks = [("f32", ov?.f32), ("bf16", ov?.bf16)].compactMap { label, result in
            result?.rel_l2_vs_torch.map { "\(label) " + String(format: "%.1e", $0) }
        }
        if !checks.isEmpty { text += "   ov rel-L2 " + checks.joined(separator: ", ") }
        return text
    }

    private func line(_ cells: [String]) -> String {
        zip(cells, columns).enumerated().map { i, pair in
            let (cell, width) = (pair.0, pair.1.width)
            return i == 0 ? cell.padding(toLength: width, withPad: " ", startingAt: 0)
                          : String(repeating: " ", count: max(0, width - cell.count)) + cell
        }.joined(separator: " ")
    }
}
