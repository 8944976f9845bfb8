import ArgumentParser
import Foundation

/// One setting's sources, in order of precedence: flag, environment (`ACB_…`), config file, default.
struct Settings {
    private let file: [String: Any]

    /// Loads the optional JSON config file (an object whose keys are the long flag names).
    init(configPath: String?) throws {
        guard let configPath else {
            file = [:]
            return
        }
        guard let data = FileManager.default.contents(atPath: configPath) else {
            throw SettingError("config file \(configPath) cannot be read")
        }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw SettingError("config file \(configPath) is not a JSON object")
        }
        file = object
    }

    /// The value of setting `name` (its long flag name), as a string, if any source sets it.
    func string(_ name: String, flag: String?) -> String? {
        if let flag { return flag }
        let variable = "ACB_" + name.uppercased().replacingOccurrences(of: "-", with: "_")
        if let value = ProcessInfo.processInfo.environment[variable] { return value }
        return file[name].map { "\($0)" }
    }

    /// A comma-separated list (blanks around items dropped), empty when unset.
    func list(_ name: String, flag: String?) -> [String] {
        (string(name, flag: flag) ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
    }

    /// An integer setting within `range`, or `fallback` when no source sets it.
    func integer<T: FixedWidthInteger>(
        _ name: String, flag: String?, default fallback: T,
        in range: ClosedRange<T> = T.min...T.max
    ) throws -> T {
        guard let text = string(name, flag: flag) else { return fallback }
        guard let value = T(text), range.contains(value) else {
            throw SettingError("\(name) must be an integer in \(range.lowerBound)...\(range.upperBound), got '\(text)'")
        }
        return value
    }

    /// A decimal setting within `range`, or `fallback` when no source sets it.
    func number(_ name: String, flag: String?, default fallback: Double, in range: ClosedRange<Double>) throws -> Double
    {
        guard let text = string(name, flag: flag) else { return fallback }
        guard let value = Double(text), range.contains(value) else {
            throw SettingError("\(name) must be a number in \(range.lowerBound)...\(range.upperBound), got '\(text)'")
        }
        return value
    }

    /// A setting that names one of `T`'s cases by raw value, or `fallback` when no source sets it.
    func choice<T: RawRepresentable & CaseIterable>(_ name: String, flag: String?, default fallback: T) throws -> T
    where T.RawValue == String {
        guard let text = string(name, flag: flag) else { return fallback }
        guard let value = T(rawValue: text) else {
            let names = T.allCases.map(\.rawValue).joined(separator: ", ")
            throw SettingError("\(name) must be one of \(names); got '\(text)'")
        }
        return value
    }
}

/// A bad setting: printed as one line on stderr, exit code 2.
struct SettingError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension SettingError {
    /// Prints the error as `acb: <message>` and returns the exit code to throw.
    func exit() -> ExitCode {
        FileHandle.standardError.write(Data("acb: \(description)\n".utf8))
        return ExitCode(2)
    }
}
