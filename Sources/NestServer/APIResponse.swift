import Foundation
import Hummingbird

/// JSON and byte responses, and the error bodies every endpoint uses: `{"error": "...",
/// "detail": ...}`, with `field` and the web UI's `detail` list for a bad field.
enum APIResponse {
    static func bytes(_ data: Data, type: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: type, .cacheControl: "no-store"],
                 body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func json(_ object: Any, status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return bytes(data, type: "application/json", status: status)
    }

    static func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        json(["error": message, "detail": message], status: status)
    }

    /// 422 naming the field, in the shape of the web UI's validation errors too.
    static func fieldError(_ error: RequestFieldError) -> Response {
        let message = error.description
        return json(["error": message, "field": error.field,
                     "detail": [["loc": ["body", error.field], "msg": message, "type": "value_error"]]],
                    status: .unprocessableContent)
    }
}

/// The web page: static files shipped in the package, read once at start.
struct StaticPage {
    let files: [String: Data]

    static func load() throws -> StaticPage {
        guard let folder = Bundle.module.resourceURL?.appendingPathComponent("Page") else {
            throw RequestFieldError("page", "the web page's files are missing from this build")
        }
        var files: [String: Data] = [:]
        for name in ["index.html", "app.js", "style.css"] {
            files[name] = try Data(contentsOf: folder.appendingPathComponent(name))
        }
        return StaticPage(files: files)
    }

    func response(_ name: String) -> Response {
        guard let data = files[name] else { return APIResponse.error(.notFound, "no such page file") }
        let type = name.hasSuffix(".html") ? "text/html; charset=utf-8"
            : name.hasSuffix(".js") ? "text/javascript; charset=utf-8" : "text/css; charset=utf-8"
        return APIResponse.bytes(data, type: type)
    }
}
