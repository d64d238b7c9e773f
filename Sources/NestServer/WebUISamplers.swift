import NestDiffusion

/// The web UI's sampler and schedule-type names for this project's schedulers.
public enum WebUISamplers {
    /// Web-UI name, its k-diffusion aliases, and the scheduler it selects.
    public static let table: [(name: String, aliases: [String], kind: SchedulerKind, karras: Bool?)] = [
        ("Euler a", ["k_euler_a", "k_euler_ancestral"], .eulerAncestral, nil),
        ("Euler", ["k_euler"], .euler, nil),
        ("DDIM", ["ddim"], .ddim, nil),
        ("DPM++ 2M", ["k_dpmpp_2m"], .dpmSolverMultistep, nil),
        ("DPM++ 2M Karras", ["k_dpmpp_2m_ka"], .dpmSolverMultistep, true),
    ]

    /// Schedule types (the web UI's `scheduler` field) and the Karras setting each means.
    public static let schedules: [(name: String, label: String, karras: Bool?)] = [
        ("automatic", "Automatic", nil), ("uniform", "Uniform", false), ("karras", "Karras", true),
    ]

    static func entry(named name: String) -> (name: String, aliases: [String], kind: SchedulerKind, karras: Bool?)? {
        let key = name.lowercased()
        return table.first { $0.name.lowercased() == key || $0.aliases.contains(key) || $0.kind.rawValue == key }
    }

    static func kind(named name: String, field: String) throws -> SchedulerKind {
        guard let entry = entry(named: name) else {
            throw RequestFieldError(field, "\"\(name)\" is not a sampler here; the samplers are " + table.map(\.name).joined(separator: ", "))
        }
        return entry.kind
    }

    /// Karras sigmas from a sampler name that implies them, else from the schedule type.
    static func karras(sampler: String?, schedule: String?) throws -> Bool? {
        let fromSampler = sampler.flatMap { entry(named: $0)?.karras }
        guard let schedule, !schedule.isEmpty else { return fromSampler }
        guard let known = schedules.first(where: { $0.name == schedule.lowercased() }) else {
            throw RequestFieldError("scheduler", "\"\(schedule)\" is not a schedule type here; they are "
                                    + schedules.map(\.label).joined(separator: ", "))
        }
        return known.karras ?? fromSampler
    }

    /// The web-UI name of what ran, for the `parameters` text and `info` (Karras sigmas
    /// are told by the schedule type, as the web UI does).
    static func name(kind: SchedulerKind) -> String {
        table.first { $0.kind == kind && $0.karras == nil }?.name ?? kind.rawValue
    }
}
