import Foundation

/// An SVG chart of latency by percentile, one line per server, both axes logarithmic so the
/// median and the tail read on one picture.
public enum LatencyChart {
    private static let (width, height, margin) = (720.0, 420.0, 60.0)
    private static let colours: [ServerUnderTest.Kind: String] = [
        .acb: "#1f77b4", .nats: "#ff7f0e", .acbTLS: "#2ca02c",
    ]
    /// The x axis ends at 99.999%.
    private static let nines = 5.0

    /// The chart of `results` (one scenario, any servers), or nil when none has latencies.
    public static func svg(title: String, _ results: [ScenarioResult]) -> String? {
        let drawn = results.filter { !$0.curve.isEmpty }
        guard !drawn.isEmpty else { return nil }
        let values = drawn.flatMap { $0.curve.map(\.micros) }.filter { $0 > 0 }
        let low = pow(10, floor(log10(values.min() ?? 1)))
        let high = pow(10, ceil(log10(max(values.max() ?? 10, low * 10))))
        func x(_ percentile: Double) -> Double {
            let level = min(log10(100 / max(100 - percentile, 1e-9)), nines)
            return margin + level / nines * (width - 2 * margin)
        }
        func y(_ micros: Double) -> Double {
            height - margin - log10(max(micros, low) / low) / log10(high / low) * (height - 2 * margin)
        }
        var svg = [
            #"<svg xmlns="http://www.w3.org/2000/svg" width="\#(Int(width))" height="\#(Int(height))" font-family="sans-serif" font-size="12">"#,
            #"<rect width="100%" height="100%" fill="white"/>"#,
            #"<text x="\#(Int(width / 2))" y="24" text-anchor="middle" font-size="15">\#(escape(title))</text>"#,
        ]
        for (label, percentile) in [
            ("0%", 0.0), ("90%", 90), ("99%", 99), ("99.9%", 99.9), ("99.99%", 99.99), ("99.999%", 99.999),
        ] {
            let at = x(percentile)
            svg.append(line(at, margin, at, height - margin, "#ddd"))
            svg.append(
                #"<text x="\#(fmt(at))" y="\#(fmt(height - margin + 18))" text-anchor="middle">\#(label)</text>"#)
        }
        var tick = low
        while tick <= high {
            svg.append(line(margin, y(tick), width - margin, y(tick), "#ddd"))
            svg.append(
                #"<text x="\#(fmt(margin - 6))" y="\#(fmt(y(tick) + 4))" text-anchor="end">\#(Report.number(tick))</text>"#
            )
            tick *= 10
        }
        svg.append(#"<text x="\#(Int(width / 2))" y="\#(Int(height - 16))" text-anchor="middle">percentile</text>"#)
        svg.append(
            #"<text x="16" y="\#(Int(height / 2))" transform="rotate(-90 16 \#(Int(height / 2)))" text-anchor="middle">latency (µs)</text>"#
        )
        for (index, result) in drawn.enumerated() {
            let colour = colours[result.server] ?? "black"
            let points = result.curve.map { "\(fmt(x($0.percentile))),\(fmt(y($0.micros)))" }.joined(separator: " ")
            svg.append(#"<polyline fill="none" stroke="\#(colour)" stroke-width="2" points="\#(points)"/>"#)
            let legend = 48 + Double(index) * 18
            svg.append(line(width - 190, legend - 4, width - 170, legend - 4, colour))
            svg.append(
                #"<text x="\#(fmt(width - 164))" y="\#(fmt(legend))">\#(result.server.rawValue) (p50 \#(Report.number(result.latency?.p50 ?? 0)) µs)</text>"#
            )
        }
        svg.append("</svg>")
        return svg.joined(separator: "\n") + "\n"
    }

    private static func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, _ colour: String) -> String {
        #"<line x1="\#(fmt(x1))" y1="\#(fmt(y1))" x2="\#(fmt(x2))" y2="\#(fmt(y2))" stroke="\#(colour)"/>"#
    }

    private static func fmt(_ value: Double) -> String { String(format: "%.1f", value) }

    private static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
    }
}
