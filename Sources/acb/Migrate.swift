import ArgumentParser
import Persistence

/// `acb migrate`: brings the database's schema up to this build's.
struct Migrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply the database migrations that have not been applied yet.",
        discussion: """
            Each file of the migrations folder (NNNN_name.sql) is applied once, in order, in a \
            transaction, and recorded in the schema_migrations table. Running it again changes nothing.
            """
    )

    @Option(help: "PostgreSQL URI. Default: ACB_POSTGRES_URL, else the --config file's postgres-url.")
    var postgresUrl: String?
    @Option(help: "JSON file with settings, keyed by flag name.") var config: String?
    @Option(help: "Folder of the migrations.") var migrations = "migrations"

    func run() throws {
        let settings = try Settings(configPath: config)
        guard let url = settings.string("postgres-url", flag: postgresUrl) else {
            throw SettingError("postgres-url is required (flag, ACB_POSTGRES_URL or config)").exit()
        }
        do {
            let migrator = try Migrator(directory: migrations)
            let applied = try migrator.apply(url: url)
            if applied.isEmpty {
                print("schema is up to date at version \(migrator.latestVersion)")
            } else {
                for migration in applied { print("applied \(migration.name)") }
                print("schema is at version \(migrator.latestVersion)")
            }
        } catch {
            throw SettingError("migrate failed: \(error)").exit()
        }
    }
}
