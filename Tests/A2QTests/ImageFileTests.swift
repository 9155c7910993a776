import A2QCore
import A2QData
import Foundation
import Testing

/// The references of `Tests/Python/image_reference.py` (Pillow and NumPy; never a2q's code).
enum ImageReferences {
    /// Runs the script; records an issue (naming Launch/setup-python.sh) if it fails. Its output
    /// goes through a file, not a pipe: reading a pipe while other tests start processes can be
    /// interrupted (EINTR) inside Foundation.
    static func run(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Python/image_reference.py").path
        let log = temporaryFolder("image-reference") + "/output.txt"
        guard FileManager.default.createFile(atPath: log, contents: nil), let handle = FileHandle(forWritingAtPath: log) else {
            Issue.record("cannot create \(log)", sourceLocation: sourceLocation)
            return ""
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script] + arguments
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        process.waitUntilExit()
        try handle.close()
        let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(process.terminationStatus == 0,
                "image_reference.py \(arguments.joined(separator: " ")): \(output) (Pillow and NumPy: Launch/setup-python.sh)",
                sourceLocation: sourceLocation)
        return output
    }

    /// A JSON file as a dictionary.
    static func json(_ path: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return (try JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:]
    }

    /// Raw interleaved RGB (height × width × 3) as an image.
    static func rawImage(_ path: String, width: Int, height: Int) throws -> Image {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(bytes.count == 3 * width * height, "\(path): \(bytes.count) bytes for \(width)×\(height)")
        return bytes.withUnsafeBufferPointer { Image(interleaved: $0, width: width, height: height) }
    }

    /// The largest level difference between two images of one size, and how many levels differ.
    static func difference(_ a: Image, _ b: Image) -> (maximum: Int, differing: Int) {
        precondition(a.width == b.width && a.height == b.height)
        var maximum = 0, differing = 0
        for (x, y) in zip(a.pixels, b.pixels) where x != y {
            maximum = max(maximum, abs(Int(x) - Int(y)))
            differing += 1
        }
        return (maximum, differing)
    }
}

@Suite("Image files: PNG and JPEG through libpng and libjpeg-turbo, against Pillow and NumPy")
struct ImageFileTests {
    @Test("every PNG colour type and bit depth (interlaced too), and JPEG 4:2:0/4:2:2/4:4:4, progressive, gray and CMYK decode to exactly the references' RGB; the format comes from the first bytes, not the name")
    func decodesLikeReferences() throws {
        let folder = temporaryFolder("image-codecs")
        _ = try ImageReferences.run(["codecs", folder])
        let files = try ImageReferences.json(folder + "/manifest.json")["files"] as? [[String: Any]] ?? []
        #expect(files.count >= 30, "the manifest lists \(files.count) files")
        var checked = 0
        for entry in files {
            guard let name = entry["file"] as? String, let width = entry["width"] as? Int, let height = entry["height"] as? Int,
                  let references = entry["references"] as? [String: String] else {
                Issue.record("bad manifest entry \(entry)")
                continue
            }
            let image = try Image.read(path: folder + "/" + name)
            #expect(image.width == width && image.height == height, "\(name): \(image.width)×\(image.height), expected \(width)×\(height)")
            for (kind, reference) in references.sorted(by: { $0.key < $1.key }) {
                let expected = try ImageReferences.rawImage(folder + "/" + reference, width: width, height: height)
                let (maximum, differing) = ImageReferences.difference(image, expected)
                #expect(differing == 0, "\(name) differs from \(kind)'s decoding in \(differing) levels (at most \(maximum))")
                checked += 1
            }
        }
        #expect(checked >= 38, "\(checked) comparisons")
    }

    @Test("a truncated PNG or JPEG (in the header, in the data, after the image data), a bad CRC, a header declaring 10^10 pixels, a text file named .png and an empty file: an error naming the file and what is wrong")
    func brokenFilesAreNamed() throws {
        let folder = temporaryFolder("image-broken")
        _ = try ImageReferences.run(["codecs", folder])
        let broken = try ImageReferences.json(folder + "/manifest.json")["broken"] as? [[String: String]] ?? []
        #expect(broken.count == 10)
        for entry in broken {
            guard let name = entry["file"], let expected = entry["expect"] else { continue }
            let path = folder + "/" + name
            do {
                let image = try Image.read(path: path)
                Issue.record("\(name) was read as a \(image.width)×\(image.height) image")
            } catch let error as A2QError {
                #expect(error.problem.contains(path), "\(name): \(error)")
                #expect(error.problem.contains(expected), "\(name): expected “\(expected)” in: \(error)")
                #expect(!error.remedy.isEmpty, "\(name): no remedy in \(error)")
            }
        }
        // A missing file and a folder.
        for path in [folder + "/missing.png", folder] {
            #expect(throws: A2QError.self) { try Image.read(path: path) }
            do { _ = try Image.read(path: path) } catch { #expect("\(error)".contains(path), "\(error)") }
        }
    }

    @Test("writePNG writes a PNG that reads back equal and that Pillow decodes to the same levels, through a temporary file that does not stay; a folder that does not exist is an error naming the path")
    func writesPNG() throws {
        let folder = temporaryFolder("image-write")
        var generator = Xoshiro256(seed: 7)
        let image = Image(width: 53, height: 31, pixels: (0..<(3 * 53 * 31)).map { _ in UInt8(truncatingIfNeeded: generator.next()) })
        let path = folder + "/written.png"
        try image.writePNG(path: path)
        try Image(width: 2, height: 2, repeating: 9).writePNG(path: folder + "/other.png")
        #expect(try Image.read(path: path) == image)
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder).sorted() == ["other.png", "written.png"])
        // Overwriting replaces the file whole.
        let second = Image(width: 5, height: 4, repeating: 200)
        try second.writePNG(path: path)
        #expect(try Image.read(path: path) == second)
        try image.writePNG(path: path)
        _ = try ImageReferences.run(["decode", path, folder + "/pillow.rgb"])
        #expect(try ImageReferences.rawImage(folder + "/pillow.rgb", width: 53, height: 31) == image)

        let nowhere = folder + "/no-such-folder/out.png"
        do {
            try image.writePNG(path: nowhere)
            Issue.record("wrote into a folder that does not exist")
        } catch {
            #expect("\(error)".contains(nowhere), "\(error)")
        }
    }

    @Test("planar layout: channel c, row y, column x is pixels[(c·H + y)·W + x]; interleaved() inverts init(interleaved:); crops and mod-crops")
    func layout() {
        let rgb: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]  // 2×2: (1,2,3) (4,5,6) / (7,8,9) (10,11,12)
        let image = rgb.withUnsafeBufferPointer { Image(interleaved: $0, width: 2, height: 2) }
        #expect(image.pixels == [1, 4, 7, 10, 2, 5, 8, 11, 3, 6, 9, 12])
        #expect(image[2, 1, 0] == 9 && image[0, 0, 1] == 4)
        #expect(image.interleaved() == rgb)
        #expect(image.cropped(x: 1, y: 1, width: 1, height: 1).pixels == [10, 11, 12])
        let odd = Image(width: 7, height: 5, repeating: 3)
        #expect(odd.croppedToMultiple(of: 3).width == 6 && odd.croppedToMultiple(of: 3).height == 3)
    }
}
