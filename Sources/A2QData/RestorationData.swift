import A2QCore
import Foundation

/// Where image-restoration (super-resolution) data comes from: a folder of PNG and JPEG images
/// in one of `ImageFolder`'s layouts, by default the photo set that `Launch/setup-images.sh`
/// builds from photographs shipped inside Debian and PyPI packages (README, "Images").
public enum RestorationData {
    /// The default photo set: `images/train` (16 photographs) and `images/test` (6), 8-bit RGB PNG.
    public static let defaultFolder = "/usr/local/share/a2q/photos"

    /// The decoded training and test images of `folder`.
    public static func load(folder: String = defaultFolder) throws -> (train: [ImageFile], test: [ImageFile]) {
        let split = try ImageFolder.split(folder)
        return (try ImageFolder.load(split.train), try ImageFolder.load(split.test))
    }

    /// The decoded test images of `folder` only (evaluation needs no training images).
    public static func loadTest(folder: String = defaultFolder) throws -> [ImageFile] {
        try ImageFolder.load(ImageFolder.split(folder).test)
    }
}
