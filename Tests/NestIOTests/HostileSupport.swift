import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
import NestTestSupport
#endif

/// Runs `body` (which should fail fast on `fifo`) on its own thread and waits at
/// most `seconds`. If it blocks, a writer opens the FIFO so the blocked reader
/// sees end of file and the test process can go on to report the failure.
func errorWithin(_ seconds: Double, unblocking fifo: String, _ body: @escaping @Sendable () throws -> Void,
                 file: StaticString = #filePath, line: UInt = #line) -> String? {
    final class Box: @unchecked Sendable { var message: String? }
    let box = Box()
    let done = DispatchSemaphore(value: 0)
    Thread.detachNewThread {
        do { try body() } catch { box.message = String(describing: error) }
        done.signal()
    }
    if done.wait(timeout: .now() + seconds) == .timedOut {
        XCTFail("still blocked after \(seconds) s on \(fifo)", file: file, line: line)
        let writer = open(fifo, O_WRONLY | O_NONBLOCK)
        if writer >= 0 { close(writer) }
        _ = done.wait(timeout: .now() + 5)
        return nil
    }
    return box.message
}

/// A FIFO in a fresh temporary folder; the folder is removed by `cleanup`.
func makeFIFO(named name: String) throws -> (path: String, cleanup: () -> Void) {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("nest-fifo-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    let path = folder.appendingPathComponent(name).path
    guard mkfifo(path, 0o600) == 0 else { throw NSError(domain: "mkfifo", code: Int(errno)) }
    return (path, { try? FileManager.default.removeItem(at: folder) })
}

func assertOneLine(_ message: String?, mentions needle: String, file: StaticString = #filePath, line: UInt = #line) {
    guard let message else { return XCTFail("no error", file: file, line: line) }
    XCTAssertFalse(message.isEmpty, file: file, line: line)
    XCTAssertFalse(message.contains("\n"), "more than one line: \(message)", file: file, line: line)
    XCTAssertTrue(message.contains(needle), "\(message) does not mention \(needle)", file: file, line: line)
}

/// CRC-32 as PNG chunks use it, so tests can forge headers libpng accepts.
func crc32(_ bytes: some Sequence<UInt8>) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    }
    return ~crc
}

/// `png` with its IHDR size replaced by `width`×`height` (CRC fixed up).
func pngClaiming(width: UInt32, height: UInt32, _ png: Data) -> Data {
    var b = [UInt8](png)
    for (i, v) in [width, height].enumerated() {
        for k in 0..<4 { b[16 + 4 * i + k] = UInt8(truncatingIfNeeded: v >> (24 - 8 * k)) }
    }
    let crc = crc32(b[12..<29])
    for k in 0..<4 { b[29 + k] = UInt8(truncatingIfNeeded: crc >> (24 - 8 * k)) }
    return Data(b)
}

/// `jpeg` with its frame header (SOF0/SOF2) size replaced by `width`×`height`.
func jpegClaiming(width: UInt16, height: UInt16, _ jpeg: Data) -> Data {
    var b = [UInt8](jpeg)
    var i = 2
    while i + 9 < b.count {
        let marker = b[i + 1], length = Int(b[i + 2]) << 8 | Int(b[i + 3])
        if marker == 0xC0 || marker == 0xC2 {
            b[i + 5] = UInt8(height >> 8); b[i + 6] = UInt8(height & 0xFF)
            b[i + 7] = UInt8(width >> 8); b[i + 8] = UInt8(width & 0xFF)
            break
        }
        i += 2 + length
    }
    return Data(b)
}

/// How many cases a fuzz test runs: `base` × NEST_FUZZ_SCALE (default 1).
func fuzzCases(_ base: Int) -> Int {
    let scale = ProcessInfo.processInfo.environment["NEST_FUZZ_SCALE"].flatMap(Int.init) ?? 1
    return base * max(scale, 1)
}
