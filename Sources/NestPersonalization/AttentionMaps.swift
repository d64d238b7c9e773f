import Foundation
import NestEngine
import NestIO
import NestModels

/// Records, on one bound cross-attention layer, where each subject token is
/// attended (the outer attention a_s per query, averaged over heads and
/// steps) and, at the last step, which encoder tokens the strongest queries
/// pick in the nested attention — the material of the paper's figures.
public final class AttentionRecorder: AttentionProcessor {
    public let inner: AttentionProcessor
    public let path: String
    let subjects: [(token: String, subject: NestedSubject)]
    let tokenWeight: Float
    /// token → Σ over steps of a_s per query (cond batch item).
    public private(set) var outer: [String: [Float]] = [:]
    public private(set) var steps = 0
    /// token → (query index, nested distribution over the M encoder tokens) at the last step.
    public private(set) var nested: [String: [(query: Int, weights: [Float])]] = [:]
    public let queriesPerSubject: Int

    public init(inner: AttentionProcessor, path: String, subjects: [(token: String, subject: NestedSubject)],
                tokenWeight: Float = 1, queriesPerSubject: Int = 2) {
        self.inner = inner; self.path = path; self.subjects = subjects
        self.tokenWeight = tokenWeight; self.queriesPerSubject = queriesPerSubject
    }

    public func attend(_ layer: Attention, hidden: Tensor, context: Tensor?) -> Tensor {
        if let context { Autograd.noGrad { record(layer, hidden: hidden, context: context) } }
        return inner.attend(layer, hidden: hidden, context: context)
    }

    func record(_ layer: Attention, hidden: Tensor, context: Tensor) {
        let q = layer.to_q(hidden), k = layer.to_k(context)
        let (b, n, width) = (q.shape[0], q.shape[1], q.shape[2])
        let t = k.shape[1], heads = layer.heads, d = width / heads
        let scale = 1 / Float(d).squareRoot()
        let item = b - 1   // the conditional half comes last
        steps += 1
        let subjectTokens = Set(subjects.compactMap { $0.subject.tokenIndex[item] })
        for (token, subject) in subjects {
            guard let s = subject.tokenIndex[item] else { continue }
            var aS = [Float](repeating: 0, count: n)
            for i in 0..<n {
                for h in 0..<heads {
                    var logits = [Float](repeating: 0, count: t)
                    for j in 0..<t {
                        var dot: Float = 0
                        for c in 0..<d { dot += q.data[(item * n + i) * width + h * d + c] * k.data[(item * t + j) * width + h * d + c] }
                        logits[j] = dot * scale + (subjectTokens.contains(j) && tokenWeight != 1 ? log(tokenWeight) : 0)
                    }
                    let top = logits.max()!
                    let e = logits.map { exp($0 - top) }
                    aS[i] += e[s] / e.reduce(0, +) / Float(heads)
                }
            }
            outer[token] = zip(outer[token] ?? [Float](repeating: 0, count: n), aS).map { $0 + $1 }
            // Nested attention of the queries that attend the subject most.
            let keys = subject.keys.shape[0] == 1 ? subject.keys : subject.keys.slice(axis: 0, item..<(item + 1))
            let m = keys.shape[1]
            let strongest = aS.indices.sorted { aS[$0] > aS[$1] }.prefix(queriesPerSubject)
            nested[token] = strongest.map { i in
                var weights = [Float](repeating: 0, count: m)
                for h in 0..<heads {
                    var logits = [Float](repeating: 0, count: m)
                    for j in 0..<m {
                        var dot: Float = 0
                        for c in 0..<d { dot += q.data[(item * n + i) * width + h * d + c] * keys.data[j * width + h * d + c] }
                        logits[j] = dot * scale
                    }
                    let top = logits.max()!
                    let e = logits.map { exp($0 - top) }
                    let total = e.reduce(0, +)
                    for j in 0..<m { weights[j] += e[j] / total / Float(heads) }
                }
                return (i, weights)
            }
        }
    }
}

/// Heat colours for attention maps: dark blue → red → yellow.
func heatColor(_ v: Float) -> (Float, Float, Float) {
    let x = min(1, max(0, v))
    return (min(1, 2 * x), max(0, min(1, 2 * x - 0.6)), max(0, 0.5 - x))
}

/// Writes the recorded maps as PNGs into `folder`.
///
/// - `<token>-<k>-outer.png`: the generated image under a heatmap of a_s for layer k;
/// - `<token>-<k>-query<j>.png`: the generated image with query j marked, beside the
///   reference photo under the nested attention of that query traced to its patches
///   (through the resampler's last attention).
public func writeAttentionMaps(_ recorders: [AttentionRecorder], image: RGBImage, references: [String: (photo: RGBImage, pixels: Tensor, patchAttention: [[Float]])],
                               to folder: URL, overwrite: Bool) throws {
    do { try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true) } catch {
        throw ModelConfigError("\(folder.path): cannot create the attention-map folder")
    }
    for (k, recorder) in recorders.enumerated() {
        for (token, sum) in recorder.outer {
            let n = sum.count
            let h = Int((Double(n) * Double(image.height) / Double(image.width)).squareRoot().rounded())
            let w = n / max(h, 1)
            guard h * w == n else { continue }
            let peak = max(sum.max() ?? 1, 1e-12)
            let grid = sum.map { $0 / peak }
            let safeToken = attentionMapStem(token)
            try ImageFile.writePNG(overlay(image, grid: grid, gridWidth: w, gridHeight: h),
                                   to: folder.appendingPathComponent("\(safeToken)-\(k)-outer.png").path,
                                   text: [("layer", recorder.path),
                                          // The mean and largest a_s per step: how much the layer listens to the token at all.
                                          ("subject attention", String(format: "mean %.4f, max %.4f", sum.reduce(0, +) / Float(n * max(recorder.steps, 1)),
                                                                       peak / Float(max(recorder.steps, 1))))],
                                   overwrite: overwrite)
            guard let reference = references[token], let picks = recorder.nested[token] else { continue }
            let patches = reference.patchAttention.first?.count ?? 0
            for (j, pick) in picks.enumerated() {
                // Σ_m nested[m] · attention of encoder token m over the patches (class token dropped).
                var trace = [Float](repeating: 0, count: max(patches - 1, 0))
                for (m, weight) in pick.weights.enumerated() where m < reference.patchAttention.count {
                    for p in 1..<patches { trace[p - 1] += weight * reference.patchAttention[m][p] }
                }
                let side = Int(Double(trace.count).squareRoot())
                guard side * side == trace.count, side > 0 else { continue }
                let peakTrace = max(trace.max() ?? 1, 1e-12)
                let seen = clipView(reference.pixels)
                let right = overlay(seen, grid: trace.map { $0 / peakTrace }, gridWidth: side, gridHeight: side)
                var left = image
                mark(&left, x: (pick.query % w) * image.width / w + image.width / (2 * w),
                     y: (pick.query / w) * image.height / h + image.height / (2 * h))
                try ImageFile.writePNG(sideBySide(left, right), to: folder.appendingPathComponent("\(safeToken)-\(k)-query\(j).png").path,
                                       text: [("layer", recorder.path), ("query", String(pick.query))], overwrite: overwrite)
            }
        }
    }
}

/// The file-name stem of a subject's maps: `<critter>` → `critter`.
func attentionMapStem(_ token: String) -> String { token.filter { $0.isLetter || $0.isNumber } }

/// Checks before any work that the maps of `tokens` can be written into `folder`:
/// the folder (or the nearest folder above it that exists) is a writable folder,
/// and unless `overwrite`, it holds no maps of these subjects from an earlier run.
public func checkAttentionMapFolder(_ folder: URL, tokens: [String], overwrite: Bool) throws {
    let fm = FileManager.default
    var isDirectory: ObjCBool = false
    var existing = folder.standardizedFileURL
    while !fm.fileExists(atPath: existing.path, isDirectory: &isDirectory) { existing.deleteLastPathComponent() }
    guard isDirectory.boolValue else { throw ModelConfigError("\(existing.path) is a file, not a folder for attention maps") }
    guard fm.isWritableFile(atPath: existing.path) else { throw ModelConfigError("\(existing.path): folder is not writable") }
    guard !overwrite, existing == folder.standardizedFileURL else { return }
    let names = (try? fm.contentsOfDirectory(atPath: folder.path)) ?? []
    for token in tokens {
        let stem = attentionMapStem(token) + "-"
        if let clash = names.sorted().first(where: { $0.hasPrefix(stem) && $0.hasSuffix(".png") }) {
            throw ModelConfigError("\(folder.path) already holds attention maps of \(token) (\(clash)); overwrite them or choose another folder")
        }
    }
}

/// The CLIP input as an image (undoing the normalization only approximately: min–max).
func clipView(_ pixels: Tensor) -> RGBImage {
    let s = pixels.shape[1]
    var lo = Float.infinity, hi = -Float.infinity
    for i in 0..<(s * s * 3) { lo = min(lo, pixels.data[i]); hi = max(hi, pixels.data[i]) }
    let floats = (0..<(s * s * 3)).map { (pixels.data[$0] - lo) / max(hi - lo, 1e-6) }
    return try! RGBImage(width: s, height: s, floats: floats)
}

func overlay(_ image: RGBImage, grid: [Float], gridWidth: Int, gridHeight: Int) -> RGBImage {
    var out = image
    for y in 0..<image.height {
        for x in 0..<image.width {
            let g = grid[min(gridHeight - 1, y * gridHeight / image.height) * gridWidth + min(gridWidth - 1, x * gridWidth / image.width)]
            let c = heatColor(g)
            let i = (y * image.width + x) * 3
            let a: Float = 0.55
            out.pixels[i] = UInt8(min(255, Float(image.pixels[i]) * (1 - a) + c.0 * 255 * a))
            out.pixels[i + 1] = UInt8(min(255, Float(image.pixels[i + 1]) * (1 - a) + c.1 * 255 * a))
            out.pixels[i + 2] = UInt8(min(255, Float(image.pixels[i + 2]) * (1 - a) + c.2 * 255 * a))
        }
    }
    return out
}

func mark(_ image: inout RGBImage, x: Int, y: Int) {
    let r = max(2, min(image.width, image.height) / 24)
    for dy in -r...r {
        for dx in -r...r where abs(dx) == r || abs(dy) == r {
            let px = x + dx, py = y + dy
            guard px >= 0, py >= 0, px < image.width, py < image.height else { continue }
            let i = (py * image.width + px) * 3
            image.pixels[i] = 0; image.pixels[i + 1] = 255; image.pixels[i + 2] = 0
        }
    }
}

func sideBySide(_ a: RGBImage, _ b: RGBImage) -> RGBImage {
    let h = max(a.height, b.height), w = a.width + b.width
    var pixels = [UInt8](repeating: 255, count: w * h * 3)
    for (image, x0) in [(a, 0), (b, a.width)] {
        for y in 0..<image.height {
            for x in 0..<image.width {
                for c in 0..<3 { pixels[(y * w + x0 + x) * 3 + c] = image.pixels[(y * image.width + x) * 3 + c] }
            }
        }
    }
    return try! RGBImage(width: w, height: h, pixels: pixels)
}
