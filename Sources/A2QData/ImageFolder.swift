import A2QCore
import Foundation

/// A decoded image and the file it came from (named in every later message about it).
public struct ImageFile: Sendable {
    public let path: String
    public let image: Image

    public init(path: String, image: Image) {
        self.path = path
        self.image = image
    }

    /// Reads and decodes `path` (`Image.read(path:)`).
    public init(reading path: String) throws {
        self.init(path: path, image: try Image.read(path: path))
    }
}

/// A folder of PNG and JPEG images split into training and test images, in one of two layouts:
///
/// - **BSD300's**: `images/train/` and `images/test/` under the folder (the layout of the
///   Berkeley segmentation set's BSDS300 folder, and of a2q's default photo set);
/// - **flat**: the images directly in the folder, sorted by file name (Unicode scalar order),
///   every `testEvery`-th one from the first (positions 0, 5, 10, … in that order, 20%) going to
///   the test split and the others to training; it needs at least 2 images.
///
/// Files count as images by their extension, `.png`, `.jpg` or `.jpeg` in any case (their
/// format is then told by their first bytes); hidden files and subfolders are skipped.
public enum ImageFolder {
    /// The flat layout's split: every `testEvery`-th image in name order is a test image.
    public static let testEvery = 5

    /// Which layout a folder has.
    public enum Layout: String, Sendable {
        case bsd300 = "images/train + images/test"
        case flat = "flat, every 5th image in name order to test"
    }

    /// The image files of a folder's two splits, sorted by name.
    public struct Split: Sendable {
        public let layout: Layout
        public let train: [String]
        public let test: [String]
    }

    /// The image files directly in `folder`, sorted by name (full paths).
    public static func imageFiles(in folder: String) throws -> [String] {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: folder) } catch {
            throw A2QError("cannot list the image folder \(folder): \(error.localizedDescription)")
        }
        return names.filter { !$0.hasPrefix(".") && ImageFormat.hasImageExtension($0) }
            .sorted { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) }
            .map { (folder as NSString).appendingPathComponent($0) }
            .filter { !isFolder($0) }
    }

    /// The two splits of `folder` (see the type's description for the layouts). Throws when the
    /// folder is missing, a split is empty, or no images are found.
    public static func split(_ folder: String) throws -> Split {
        guard isFolder(folder) else {
            throw A2QError("the image folder \(folder) does not exist", remedy: remedy(for: folder))
        }
        let train = (folder as NSString).appendingPathComponent("images/train")
        let test = (folder as NSString).appendingPathComponent("images/test")
        if isFolder(train) || isFolder(test) {
            guard isFolder(train), isFolder(test) else {
                throw A2QError("\(folder) has \(isFolder(train) ? "images/train but no images/test" : "images/test but no images/train")",
                               remedy: "a BSD300-style folder needs both images/train and images/test")
            }
            let trainFiles = try imageFiles(in: train), testFiles = try imageFiles(in: test)
            for (path, files) in [(train, trainFiles), (test, testFiles)] where files.isEmpty {
                throw A2QError("\(path) holds no .png, .jpg or .jpeg images", remedy: remedy(for: folder))
            }
            return Split(layout: .bsd300, train: trainFiles, test: testFiles)
        }
        let files = try imageFiles(in: folder)
        guard !files.isEmpty else {
            throw A2QError("\(folder) holds no .png, .jpg or .jpeg images (and no images/train, images/test folders)",
                           remedy: remedy(for: folder))
        }
        guard files.count >= 2 else {
            throw A2QError("\(folder) holds one image; a flat folder needs at least 2 (every \(testEvery)th, from the first, is a test image)",
                           remedy: "add images, or lay the folder out as images/train and images/test")
        }
        let indexed = files.enumerated()
        return Split(layout: .flat, train: indexed.filter { $0.offset % testEvery != 0 }.map(\.element),
                     test: indexed.filter { $0.offset % testEvery == 0 }.map(\.element))
    }

    /// Reads and decodes every file (the first bad one throws, naming it).
    public static func load(_ paths: [String]) throws -> [ImageFile] {
        try paths.map { try ImageFile(reading: $0) }
    }

    static func isFolder(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
    }

    static func remedy(for folder: String) -> String {
        folder == RestorationData.defaultFolder
            ? "make the default photo set with Launch/setup-images.sh (Launch/setup.sh runs it), or pass --data DIR"
            : "pass --data with a folder of PNG/JPEG images: images/train and images/test, or a flat folder"
    }
}
