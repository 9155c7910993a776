import A2QCore
import HDF5Shim

/// Element types stored in a2q's HDF5 files.
public enum HDF5ElementType: Int32, Sendable {
    case float32 = 0, float64 = 1, int8 = 2, int16 = 3, int32 = 4, int64 = 5, uint8 = 6, uint64 = 7
}

extension HDF5ElementType {
    /// Whether the type holds integers (as opposed to floating-point numbers).
    public var isInteger: Bool { self != .float32 && self != .float64 }
    /// Bytes per element.
    public var byteWidth: Int {
        switch self {
        case .int8, .uint8: return 1
        case .int16: return 2
        case .float32, .int32: return 4
        case .float64, .int64, .uint64: return 8
        }
    }
}

/// A value that maps to one HDF5 element type.
public protocol HDF5Element: BitwiseCopyable {
    static var hdf5Type: HDF5ElementType { get }
}
extension Float: HDF5Element { public static var hdf5Type: HDF5ElementType { .float32 } }
extension Double: HDF5Element { public static var hdf5Type: HDF5ElementType { .float64 } }
extension Int8: HDF5Element { public static var hdf5Type: HDF5ElementType { .int8 } }
extension Int16: HDF5Element { public static var hdf5Type: HDF5ElementType { .int16 } }
extension Int32: HDF5Element { public static var hdf5Type: HDF5ElementType { .int32 } }
extension Int64: HDF5Element { public static var hdf5Type: HDF5ElementType { .int64 } }
extension UInt8: HDF5Element { public static var hdf5Type: HDF5ElementType { .uint8 } }
extension UInt64: HDF5Element { public static var hdf5Type: HDF5ElementType { .uint64 } }

/// The HDF5 library version, e.g. "1.10.8".
public var hdf5LibraryVersion: String {
    var major: UInt32 = 0, minor: UInt32 = 0, release: UInt32 = 0
    a2q_h5_version(&major, &minor, &release)
    return "\(major).\(minor).\(release)"
}

/// A group (or the root of a file) in an open HDF5 file. Errors name the file and object.
public class HDF5Group: @unchecked Sendable {
    let id: Int64
    /// The file's path (for messages).
    public let path: String
    /// This group's path inside the file.
    public let groupPath: String

    init(id: Int64, path: String, groupPath: String) {
        self.id = id
        self.path = path
        self.groupPath = groupPath
    }

    deinit { if !(self is HDF5File) { _ = a2q_h5_group_close(id) } }

    private func where_(_ name: String) -> String {
        "\(path):\(groupPath == "/" ? "" : groupPath)/\(name)"
    }

    /// Creates a child group (links are kept in creation order).
    public func createGroup(_ name: String) throws -> HDF5Group {
        let group = a2q_h5_group_create(id, name)
        guard group >= 0 else { throw A2QError("HDF5: cannot create group \(where_(name))") }
        return HDF5Group(id: group, path: path, groupPath: groupPath == "/" ? "/\(name)" : "\(groupPath)/\(name)")
    }

    /// Opens a child group.
    public func openGroup(_ name: String) throws -> HDF5Group {
        guard contains(name) else { throw A2QError("missing group \(where_(name))") }
        let group = a2q_h5_group_open(id, name)
        guard group >= 0 else { throw A2QError("cannot open group \(where_(name))") }
        return HDF5Group(id: group, path: path, groupPath: groupPath == "/" ? "/\(name)" : "\(groupPath)/\(name)")
    }

    /// Whether a link `name` exists here.
    public func contains(_ name: String) -> Bool { a2q_h5_exists(id, name) > 0 }

    /// Names of the links in this group, in creation order where tracked.
    public func childNames() throws -> [String] {
        let n = a2q_h5_child_count(id)
        guard n >= 0 else { throw A2QError("\(path): cannot list \(groupPath)") }
        var names: [String] = []
        var buffer = [CChar](repeating: 0, count: 1024)
        for i in 0..<n {
            guard a2q_h5_child_name(id, i, &buffer, Int32(buffer.count)) == 0 else {
                throw A2QError("\(path): cannot read link \(i) of \(groupPath)")
            }
            names.append(cString(buffer))
        }
        return names
    }

    /// Writes a dataset with the Fletcher32 checksum filter.
    public func write<T: HDF5Element>(_ name: String, _ values: [T], shape: [Int]) throws {
        precondition(shape.reduce(1, *) == values.count, "HDF5 write \(name): \(values.count) values for \(describe(shape))")
        let dims = shape.map(Int64.init)
        let rc = values.withUnsafeBytes { raw in
            a2q_h5_dataset_write(id, name, T.hdf5Type.rawValue, Int32(shape.count), dims, raw.baseAddress, 1)
        }
        guard rc == 0 else { throw A2QError("HDF5: cannot write dataset \(where_(name))") }
    }

    /// Shape and stored element type of a dataset.
    public func datasetInfo(_ name: String) throws -> (shape: [Int], type: HDF5ElementType?) {
        guard contains(name) else { throw A2QError("missing dataset \(where_(name))") }
        var type: Int32 = -1, rank: Int32 = 0
        var dims = [Int64](repeating: 0, count: 8)
        guard a2q_h5_dataset_info(id, name, &type, &rank, &dims) == 0 else {
            throw A2QError("\(where_(name)) is not a readable dataset")
        }
        return (dims.prefix(Int(rank)).map { Int($0) }, HDF5ElementType(rawValue: type))
    }

    /// Reads a whole dataset as `T`, after checking what the file declares against what the
    /// reader expects, so that nothing is allocated for a dataset that is not what it should be:
    ///
    /// - the stored element type is one a2q writes, of the same kind as `T` (integers are never
    ///   read from floating-point data, nor floats from integers);
    /// - the rank and dimensions equal `shape` when given (`nil` entries match any size), and
    ///   the element count is at most `maxElements`;
    /// - the file stores every declared element (a dataset that declares 2^40 elements in a
    ///   small file is refused instead of allocated);
    /// - the Fletcher32 checksum matches.
    public func read<T: HDF5Element>(_ name: String, as: T.Type = T.self, shape expected: [Int?]? = nil,
                                     maxElements: Int = HDF5Group.defaultMaxElements) throws -> (values: [T], shape: [Int]) {
        let info = try datasetInfo(name)
        guard let stored = info.type else {
            throw A2QError("\(where_(name)) has an element type a2q does not read",
                           remedy: "a2q files hold float32/float64 or integer datasets; the file was not written by a2q or was altered")
        }
        guard stored.isInteger == T.hdf5Type.isInteger else {
            throw A2QError("\(where_(name)) holds \(stored) values where \(T.hdf5Type) values belong",
                           remedy: "the file was altered or not written by a2q")
        }
        if let expected {
            let matches = expected.count == info.shape.count && zip(expected, info.shape).allSatisfy { $0 == nil || $0 == $1 }
            guard matches else {
                throw A2QError("\(where_(name)) has shape \(describe(info.shape)), expected \(describe(expected))",
                               remedy: "the file is of a different model, or it was altered")
            }
        }
        var count = 1
        for d in info.shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: d)
            guard d >= 0, !overflow, product <= maxElements else {
                throw A2QError("\(where_(name)) declares \(describe(info.shape)) elements, more than the \(maxElements) a2q reads",
                               remedy: "the file is damaged or was altered")
            }
            count = product
        }
        let stores = a2q_h5_dataset_storage_bytes(id, name)
        guard count == 0 || stores >= Int64(count * stored.byteWidth) else {
            throw A2QError("\(where_(name)) declares \(describe(info.shape)) values (\(count * stored.byteWidth) bytes) but the file stores only \(max(stores, 0)) bytes of them",
                           remedy: "the file is truncated, damaged or was altered; use another copy")
        }
        var values = [T](unsafeUninitializedCapacity: count) { _, initialized in initialized = count }
        let rc = values.withUnsafeMutableBytes { raw in
            a2q_h5_dataset_read(id, name, T.hdf5Type.rawValue, raw.baseAddress, Int64(count))
        }
        guard rc == 0 else {
            throw A2QError("cannot read dataset \(where_(name)) (corrupt data or checksum mismatch)",
                           remedy: "the file is damaged; use another copy")
        }
        return (values, info.shape)
    }

    /// The largest dataset a reader accepts unless it says otherwise (2^28 elements).
    public static let defaultMaxElements = 1 << 28

    public func setAttribute(_ name: String, _ value: String) throws {
        guard a2q_h5_attr_write_string(id, name, value) == 0 else { throw A2QError("HDF5: cannot write attribute \(where_(name))") }
    }
    public func setAttribute(_ name: String, _ value: Int) throws {
        guard a2q_h5_attr_write_i64(id, name, Int64(value)) == 0 else { throw A2QError("HDF5: cannot write attribute \(where_(name))") }
    }
    public func setAttribute(_ name: String, _ value: Bool) throws { try setAttribute(name, value ? 1 : 0) }
    public func setAttribute(_ name: String, _ value: Double) throws {
        guard a2q_h5_attr_write_f64(id, name, value) == 0 else { throw A2QError("HDF5: cannot write attribute \(where_(name))") }
    }

    public func hasAttribute(_ name: String) -> Bool { a2q_h5_attr_exists(id, name) > 0 }

    public func stringAttribute(_ name: String) throws -> String {
        let length = a2q_h5_attr_string_length(id, name)
        guard length >= 0 else { throw A2QError("missing or non-string attribute \(where_(name))") }
        var buffer = [CChar](repeating: 0, count: Int(length) + 1)
        guard a2q_h5_attr_read_string(id, name, &buffer, Int64(buffer.count)) == 0 else {
            throw A2QError("cannot read attribute \(where_(name))")
        }
        return cString(buffer)
    }
    public func intAttribute(_ name: String) throws -> Int {
        var value: Int64 = 0
        guard a2q_h5_attr_read_i64(id, name, &value) == 0 else {
            throw A2QError("missing or non-integer attribute \(where_(name))")
        }
        return Int(value)
    }
    /// An integer attribute that must lie in `range` (bit widths, counts, strides, ...).
    public func intAttribute(_ name: String, in range: ClosedRange<Int>) throws -> Int {
        let value = try intAttribute(name)
        guard range.contains(value) else {
            throw A2QError("attribute \(where_(name)) = \(value) is outside \(range.lowerBound)...\(range.upperBound)",
                           remedy: "the file is damaged or was altered")
        }
        return value
    }

    /// A floating-point attribute that must be finite.
    public func finiteAttribute(_ name: String) throws -> Double {
        let value = try doubleAttribute(name)
        guard value.isFinite else {
            throw A2QError("attribute \(where_(name)) is \(value), not a finite number", remedy: "the file is damaged or was altered")
        }
        return value
    }

    public func doubleAttribute(_ name: String) throws -> Double {
        var value: Double = 0
        guard a2q_h5_attr_read_f64(id, name, &value) == 0 else {
            throw A2QError("missing or non-numeric attribute \(where_(name))")
        }
        return value
    }
}

/// An open HDF5 file (its root group). Closed on deinit or `close()`.
public final class HDF5File: HDF5Group, @unchecked Sendable {
    private var open = true

    private init(id: Int64, path: String) { super.init(id: id, path: path, groupPath: "/") }

    /// Creates (truncating) a file. Write to a temporary name and rename for crash safety.
    public static func create(_ path: String) throws -> HDF5File {
        a2q_h5_print_errors(0)
        let id = a2q_h5_file_create(path)
        guard id >= 0 else { throw A2QError("cannot create HDF5 file \(path)", remedy: "check that the folder exists and is writable") }
        return HDF5File(id: id, path: path)
    }

    /// Opens a file read-only; says clearly if it is missing or not HDF5.
    public static func openForReading(_ path: String) throws -> HDF5File {
        a2q_h5_print_errors(0)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw A2QError("\(path): no such file")
        }
        guard !isDirectory.boolValue else { throw A2QError("\(path) is a folder, not an HDF5 file") }
        guard a2q_h5_is_hdf5(path) > 0 else {
            throw A2QError("\(path) is not an HDF5 file (or it is truncated or corrupt)")
        }
        let id = a2q_h5_file_open_read(path)
        guard id >= 0 else { throw A2QError("\(path): cannot open (truncated or corrupt HDF5 file?)") }
        return HDF5File(id: id, path: path)
    }

    /// Flushes HDF5's buffers to the OS.
    public func flush() throws {
        guard a2q_h5_file_flush(id) >= 0 else { throw A2QError("\(path): flush failed (disk full?)") }
    }

    /// Closes the file; errors (e.g. a full disk on the final write) are reported.
    public func close() throws {
        guard open else { return }
        open = false
        guard a2q_h5_file_close(id) >= 0 else { throw A2QError("\(path): close failed (disk full?)") }
    }

    deinit { if open { _ = a2q_h5_file_close(id) } }
}

func cString(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

import Foundation

/// `[64, *]`: an expected shape, `*` where any size is accepted.
func describe(_ shape: [Int?]) -> String {
    "[" + shape.map { $0.map(String.init) ?? "*" }.joined(separator: ", ") + "]"
}
