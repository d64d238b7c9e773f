import Foundation

/// The numpy routines diffusers builds schedules with, reproduced operation by
/// operation in float64 so timesteps and sigmas round to the same float32
/// values (numpy never fuses a multiply-add; its ufuncs round every step).
enum NumPy {
    /// `np.linspace(start, stop, count)`: `i * step + start`, the last value set to `stop`.
    static func linspace(_ start: Double, _ stop: Double, _ count: Int) -> [Double] {
        guard count > 1 else { return count == 1 ? [start] : [] }
        let step = (stop - start) / Double(count - 1)
        var values = (0..<count).map { Double($0) * step + start }
        values[count - 1] = stop
        return values
    }

    /// `np.arange(start, stop, step)` for a float step: the length is
    /// `ceil((stop - start) / step)` and values past the second are
    /// `start + i * delta`, with delta measured between the first two.
    static func arange(_ start: Double, _ stop: Double, _ step: Double) -> [Double] {
        let length = Int(((stop - start) / step).rounded(.up))
        guard length > 0 else { return [] }
        let second = start + step
        let delta = second - start
        return (0..<length).map { i in i == 0 ? start : i == 1 ? second : start + Double(i) * delta }
    }

    /// `np.round`: halves go to the even neighbour.
    static func round(_ x: Double) -> Double { x.rounded(.toNearestOrEven) }

    /// `np.interp(x, arange(len(table)), table)`.
    static func interp(_ x: Double, _ table: [Float]) -> Double {
        let last = table.count - 1
        if x >= Double(last) { return Double(table[last]) }
        if x <= 0 { return Double(table[0]) }
        let j = Int(x.rounded(.down))
        if Double(j) == x { return Double(table[j]) }
        let low = Double(table[j]), slope = Double(table[j + 1]) - low  // the x spacing is 1
        return slope * (x - Double(j)) + low
    }

    /// diffusers' `_sigma_to_t`: the fractional training timestep whose
    /// log-sigma brackets `log(sigma)`, interpolated linearly. `logSigmas` is
    /// float32 as in diffusers (`np.log` of a float32 array); `low - high`
    /// is then a float32 difference while the rest runs in float64.
    static func sigmaToT(_ sigma: Double, logSigmas: [Float]) -> Double {
        let logSigma = Foundation.log(max(sigma, 1e-10))
        var lowIndex = 0
        for (k, value) in logSigmas.enumerated() where logSigma - Double(value) >= 0 { lowIndex = k }
        lowIndex = min(lowIndex, logSigmas.count - 2)
        let low = logSigmas[lowIndex], high = logSigmas[lowIndex + 1]
        var w = (Double(low) - logSigma) / Double(low - high)
        w = min(max(w, 0), 1)
        return (1 - w) * Double(lowIndex) + w * Double(lowIndex + 1)
    }

    /// Karras et al. (2022) sigmas, rho = 7, from `sigmaMax` down to `sigmaMin`.
    static func karrasSigmas(min sigmaMin: Double, max sigmaMax: Double, count: Int) -> [Double] {
        let rho = 7.0
        let minInvRho = pow(sigmaMin, 1 / rho), maxInvRho = pow(sigmaMax, 1 / rho)
        return linspace(0, 1, count).map { ramp in pow(maxInvRho + ramp * (minInvRho - maxInvRho), rho) }
    }

    /// Sigmas evenly spaced in log space, from `sigmaMax` down to `sigmaMin`.
    static func exponentialSigmas(min sigmaMin: Double, max sigmaMax: Double, count: Int) -> [Double] {
        linspace(Foundation.log(sigmaMax), Foundation.log(sigmaMin), count).map { exp($0) }
    }
}

/// torch CPU float32 routines with their exact rounding.
enum Torch {
    /// `torch.linspace(start, end, count, dtype=float32)`: the first half
    /// counts up from `start`, the second half down from `end`, each value one
    /// fused multiply-add in float32 (the x86 kernels are built with FMA).
    static func linspace(_ start: Float, _ end: Float, _ count: Int) -> [Float] {
        guard count > 1 else { return count == 1 ? [start] : [] }
        let step = (end - start) / Float(count - 1)
        let halfway = count / 2
        return (0..<count).map { i in
            i < halfway ? start.addingProduct(step, Float(i)) : end.addingProduct(-step, Float(count - i - 1))
        }
    }

    /// `torch.cumprod` of a float32 vector: the running product is kept in
    /// float64 and each element rounded to float32.
    static func cumprod(_ values: [Float]) -> [Float] {
        var product = 1.0
        return values.map { value in
            product *= Double(value)
            return Float(product)
        }
    }
}
