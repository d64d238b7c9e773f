import Foundation
import NestDiffusion

/// Step, it/s and ETA on one redrawn line when stderr is a terminal; plain
/// lines every few steps otherwise (logs, pipes).
final class ProgressBar {
    let total: Int
    let start = Date()
    let interactive = isatty(2) != 0
    var lastPrinted = 0
    /// A bar is drawn and its line not yet ended.
    var lineOpen = false

    init(total: Int) { self.total = total }

    func update(_ step: Int, suffix: String = "") {
        let elapsed = Date().timeIntervalSince(start)
        let rate = Double(step) / max(elapsed, 1e-9)
        let eta = Double(total - step) / max(rate, 1e-9)
        if interactive {
            let width = 30, filled = width * step / max(total, 1)
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
            let line = String(format: "\r%@ %d/%d  %.2f it/s  ETA %.0f s  ", bar, step, total, rate, eta) + suffix + " "
            FileHandle.standardError.write(line.data(using: .utf8)!)
            lineOpen = true
        } else if step == total || step - lastPrinted >= max(1, total / 10) {
            lastPrinted = step
            note(String(format: "step %d/%d  %.2f it/s  ETA %.0f s  ", step, total, rate, eta) + suffix)
        }
    }

    func finish() {
        if lineOpen { FileHandle.standardError.write("\n".data(using: .utf8)!) }
        lineOpen = false
    }
}

func note(_ message: String) { FileHandle.standardError.write((message + "\n").data(using: .utf8)!) }
func warn(_ message: String) { FileHandle.standardError.write(("nest: warning: " + message + "\n").data(using: .utf8)!) }

/// Loading progress on one redrawn line, drawn only on a terminal and only
/// once loading has taken more than a second (a warm load stays silent).
/// The library reports from the loading thread, one call at a time.
final class LoadProgressLine: @unchecked Sendable {
    let start = Date()
    let interactive = isatty(2) != 0
    var lineOpen = false

    func update(_ p: PipelineLoadProgress) {
        guard interactive, Date().timeIntervalSince(start) > 1 else { return }
        let percent = 100 * p.loadedBytes / max(p.totalBytes, 1)
        let line = String(format: "\rloading %@ %3d%% (%.2f of %.2f GB)  ", p.component, percent,
                          Double(p.loadedBytes) / 1e9, Double(p.totalBytes) / 1e9)
        FileHandle.standardError.write(line.data(using: .utf8)!)
        lineOpen = true
    }

    func finish() {
        if lineOpen { FileHandle.standardError.write("\r\u{1B}[K".data(using: .utf8)!) }
        lineOpen = false
    }
}
