import Foundation
import NestDiffusion

/// The web UI's informational endpoints: progress, models, samplers, options.
enum WebUIStatus {
    static func progress(_ p: QueueProgress) -> [String: Any] {
        let state: [String: Any] = [
            "skipped": false, "interrupted": p.interrupted, "stopping_generation": false,
            "job": p.running ? "job(\(p.jobNumber))" : "", "job_count": p.jobCount, "job_no": p.jobNumber,
            "job_timestamp": p.startedAt.map(WebUIResponse.timestampFormat) ?? "0",
            "sampling_step": p.step, "sampling_steps": p.totalSteps,
        ]
        return ["progress": p.running ? p.fraction : 0, "eta_relative": p.running ? p.eta : 0, "state": state,
                "current_image": NSNull(), "textinfo": NSNull()]
    }

    static func models(name: String) -> [[String: Any]] {
        [["title": name, "model_name": name, "hash": NSNull(), "sha256": NSNull(), "filename": name, "config": NSNull()]]
    }

    static var samplers: [[String: Any]] {
        WebUISamplers.table.map { ["name": $0.name, "aliases": $0.aliases, "options": [String: String]()] }
    }

    static var schedules: [[String: Any]] {
        WebUISamplers.schedules.map { ["name": $0.name, "label": $0.label, "aliases": NSNull(),
                                       "default_rho": -1, "need_inner_model": false] }
    }

    static func options(name: String) -> [String: Any] {
        ["sd_model_checkpoint": name, "sd_checkpoint_hash": NSNull(), "samples_format": "png"]
    }
}
