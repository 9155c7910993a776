/// The image file formats a2q reads, told apart by a file's first bytes (never its name).
public enum ImageFormat: String, Sendable, CaseIterable {
    /// PNG: the 8-byte signature 89 50 4E 47 0D 0A 1A 0A.
    case png = "PNG"
    /// JPEG (JFIF, Exif, Adobe): the start-of-image marker FF D8 followed by another marker's FF.
    case jpeg = "JPEG"

    /// The file name extensions (lower case) that an image folder's listing takes.
    public static let fileExtensions: Set<String> = ["png", "jpg", "jpeg"]

    /// The format whose signature `bytes` start with, or nil.
    public init?(leadingBytes bytes: UnsafeRawBufferPointer) {
        let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        if bytes.count >= png.count, zip(bytes, png).allSatisfy({ $0 == $1 }) {
            self = .png
        } else if bytes.count >= 3, bytes[0] == 0xFF, bytes[1] == 0xD8, bytes[2] == 0xFF {
            self = .jpeg
        } else {
            return nil
        }
    }

    /// Whether `name` ends in `.png`, `.jpg` or `.jpeg` (any case).
    public static func hasImageExtension(_ name: String) -> Bool {
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return false }
        return fileExtensions.contains(name[name.index(after: dot)...].lowercased())
    }
}
