import Foundation

/// Inference timesteps per diffusers class. The classes agree on the idea
/// (linspace: evenly over [0, T-1]; leading: multiples of T/n from 0 plus
/// `steps_offset`; trailing: multiples of T/n down from T, minus 1) but not on
/// the arithmetic, which decides the exact integers, so each is its own function.
enum Spacing {
    /// Euler and Euler ancestral: float32 timesteps, returned as exact float64 values.
    static func euler(_ spacing: TimestepSpacing, trainSteps: Int, count: Int, offset: Int) -> [Double] {
        let values: [Float]
        switch spacing {
        case .linspace:
            values = NumPy.linspace(0, Double(trainSteps - 1), count).reversed().map { Float($0) }
        case .leading:
            let ratio = trainSteps / count
            values = (0..<count).reversed().map { Float($0 * ratio) + Float(offset) }
        case .trailing:
            let ratio = Double(trainSteps) / Double(count)
            values = NumPy.arange(Double(trainSteps), 0, -ratio).map { Float(NumPy.round($0)) - 1 }
        }
        return values.map(Double.init)
    }

    /// DDIM: integer timesteps (linspace rounds half to even).
    static func ddim(_ spacing: TimestepSpacing, trainSteps: Int, count: Int, offset: Int) -> [Int] {
        switch spacing {
        case .linspace:
            return NumPy.linspace(0, Double(trainSteps - 1), count).reversed().map { Int(NumPy.round($0)) }
        case .leading:
            let ratio = trainSteps / count
            return (0..<count).reversed().map { $0 * ratio + offset }
        case .trailing:
            let ratio = Double(trainSteps) / Double(count)
            return NumPy.arange(Double(trainSteps), 0, -ratio).map { Int(NumPy.round($0)) - 1 }
        }
    }

    /// DPM-Solver: spaces `count + 1` points and drops the last (linspace,
    /// leading); `lastTimestep` is T unless `lambda_min_clipped` cuts the tail.
    static func dpmSolver(_ spacing: TimestepSpacing, trainSteps: Int, lastTimestep: Int, count: Int,
                          offset: Int) -> [Int] {
        switch spacing {
        case .linspace:
            let points = NumPy.linspace(0, Double(lastTimestep - 1), count + 1)
            return points.reversed().dropLast().map { Int(NumPy.round($0)) }
        case .leading:
            let ratio = lastTimestep / (count + 1)
            return (1...count).reversed().map { $0 * ratio + offset }
        case .trailing:
            let ratio = Double(trainSteps) / Double(count)
            return NumPy.arange(Double(lastTimestep), 0, -ratio).map { Int(NumPy.round($0)) - 1 }
        }
    }
}
