# frozen_string_literal: true
#
# migrun's manifest: the migrations `rails db:abort_if_pending_migrations`
# checks, as Rails itself finds them, written when the image is built so
# that `migrun wait` and `migrun run --skip-if-current` share Rails' view
# without booting Ruby. Run it from the app's root, next to
# assets:precompile:
#
#   bin/rails runner migrun-manifest.rb [OUTPUT]   # default db/migrun-manifest.json
#
# It makes no database connection (a placeholder DATABASE_URL is enough).
# When Rails would refuse the migrations (IllegalMigrationNameError,
# DuplicateMigrationNameError, DuplicateMigrationVersionError,
# InvalidMigrationTimestampError) it fails with Rails' error, so the build
# stops. Written for Rails 6.1 to 8.x; the comments name the Rails code
# each step follows (activerecord/lib/active_record/...).

require "digest"
require "json"
require "pathname"

module MigrunManifest
  FORMAT = 1

  # database.yml settings whose ERB makes the manifest depend on the
  # environment at build time.
  WATCHED = %w[migrations_paths schema_search_path schema_order search_path database_tasks replica].freeze

  # Stands in for MigrationContext's schema_migration and internal_metadata:
  # #migrations never uses them, and passing them keeps Rails 7.1+ from
  # building real ones, which want a connection.
  NOT_USED = Object.new.freeze

  module_function

  def run(output)
    root = Rails.root.expand_path
    env = ActiveRecord::Tasks::DatabaseTasks.env.to_s
    # db:load_config, which every db: task runs first (railties/databases.rake).
    ActiveRecord::Migrator.migrations_paths = ActiveRecord::Tasks::DatabaseTasks.migrations_paths
    # db:abort_if_pending_migrations' databases: configs_for(env_name:)
    # leaves out replicas, and from Rails 7.0 database_tasks: false.
    configs = ActiveRecord::Base.configurations.configs_for(env_name: env)
    if configs.empty?
      abort "migrun manifest: Rails sees no database for RAILS_ENV=#{env}; " \
            "set DATABASE_URL to a placeholder (no connection is made) or configure it in config/database.yml"
    end

    manifest = {
      format: FORMAT,
      generator: "migrun",
      rails_version: ActiveRecord.version.to_s,
      environment: env,
      root: root.to_s,
      databases: configs.map { |config| database(config, root) },
      dynamic_settings: dynamic_settings(root),
      config_files: config_files(root, env),
    }
    path = File.expand_path(output, root)
    tmp = "#{path}.tmp.#{Process.pid}"
    File.write(tmp, JSON.pretty_generate(manifest) + "\n")
    File.rename(tmp, path)
    count = manifest[:databases].sum { |d| d[:migrations].size }
    warn "migrun manifest: wrote #{path} (#{env}: #{manifest[:databases].size} database(s), #{count} migration(s))"
  rescue ActiveRecord::MigrationError => e
    abort "migrun manifest: Rails refuses the migrations: #{e.class}: #{e.message}"
  end

  def database(config, root)
    settings = config.configuration_hash
    # ConnectionAdapters::AbstractAdapter#migrations_paths (6.1, 7.0, 7.1),
    # ConnectionPool#migrations_paths (7.2+).
    configured = Array(settings[:migrations_paths] || ActiveRecord::Migrator.migrations_paths).map(&:to_s)
    if configured.any? { |p| !Pathname.new(p).absolute? } && File.realpath(Dir.pwd) != File.realpath(root.to_s)
      abort "migrun manifest: run it from the app's root (#{root}): Rails reads the relative migrations paths " \
            "#{configured.inspect} of database #{config.name} from the working directory"
    end
    migrations = migration_context(configured).migrations # MigrationContext#migrations: glob, names, timestamps
    ActiveRecord::Migrator.allocate.send(:validate, migrations) # Migrator#validate: duplicate names, versions
    # The search path as database.yml gives it, without the DATABASE_URL
    # of the build (the deploy's URL, which migrun reads, overrides it).
    yml = yml_settings(config.name)
    variables = yml["variables"].is_a?(Hash) ? yml["variables"].transform_keys(&:to_s) : {}
    {
      name: config.name,
      adapter: settings[:adapter]&.to_s,
      migrations_paths: configured.map do |p|
        full = File.expand_path(p)
        { configured: p, path: relative(full, root), directory: File.directory?(full) }
      end,
      schema_migrations_table: schema_migrations_table,
      # PostgreSQLAdapter#configure_connection: `self.schema_search_path =
      # @config[:schema_search_path] || @config[:schema_order]`, then each
      # of variables is SET, search_path included.
      schema_search_path: (yml["schema_search_path"] || yml["schema_order"])&.to_s,
      search_path_variable: variables["search_path"]&.to_s,
      migrations: migrations.map do |m|
        { version: m.version.to_s, name: m.name.to_s, scope: m.scope.to_s, file: relative(File.expand_path(m.filename), root) }
      end,
    }
  end

  # A database's settings in database.yml alone (ERB evaluated), string keys.
  def yml_settings(name)
    all = Rails.application.config.database_configuration || {}
    env = all[ActiveRecord::Tasks::DatabaseTasks.env.to_s]
    return {} unless env.is_a?(Hash)
    # DatabaseConfigurations#build_configs: three-tier when every value is a Hash.
    settings = env.all? { |_, v| v.is_a?(Hash) } ? env[name] : (name == "primary" ? env : nil)
    settings.is_a?(Hash) ? settings.transform_keys(&:to_s) : {}
  rescue RuntimeError
    {} # no database.yml: DATABASE_URL alone
  end

  def migration_context(paths)
    # 6.1: new(paths, schema_migration); 7.0: new(paths, schema_migration =
    # SchemaMigration); 7.1+: new(paths, schema_migration = nil,
    # internal_metadata = nil).
    arity = ActiveRecord::MigrationContext.instance_method(:initialize).parameters.size
    ActiveRecord::MigrationContext.new(*[paths, NOT_USED, NOT_USED].first(arity))
  end

  def schema_migrations_table
    if ActiveRecord::SchemaMigration.respond_to?(:table_name)
      ActiveRecord::SchemaMigration.table_name # 6.1, 7.0: a model
    else
      # 7.1+: SchemaMigration#table_name
      "#{ActiveRecord::Base.table_name_prefix}#{ActiveRecord::Base.schema_migrations_table_name}#{ActiveRecord::Base.table_name_suffix}"
    end
  end

  def relative(path, root)
    prefix = root.to_s.end_with?("/") ? root.to_s : "#{root}/"
    path.start_with?(prefix) ? path.delete_prefix(prefix) : path
  end

  # The files whose content decides what Rails sees (its configuration,
  # initializers and gems: a table name prefix, a migrations path, an
  # engine), with their SHA-256: migrun reads the manifest as stale when
  # any of them differs at deploy (rails/manifest.go, ConfigFiles).
  CONFIG_GLOBS = %w[Gemfile Gemfile.lock config/database.yml config/application.rb config/boot.rb
                    config/environment.rb config/initializers/**/*.rb].freeze

  def config_files(root, env)
    globs = CONFIG_GLOBS + ["config/environments/#{env}.rb"]
    Dir.chdir(root.to_s) do
      globs.flat_map { |g| Dir[g] }.select { |f| File.file?(f) }.uniq.sort.to_h do |f|
        [f, Digest::SHA256.file(f).hexdigest]
      end
    end
  end

  # The database.yml lines whose ERB may differ between the build and the
  # deploy: control flow, a tag spanning lines, output standing for keys,
  # or output in a setting that moves migrations or schema_migrations.
  def dynamic_settings(root)
    yml = Rails.application.config.paths["config/database"].existent.first
    return [] unless yml
    notes = []
    File.foreach(yml).with_index(1) do |line, number|
      next if line.lstrip.start_with?("#") || !line.include?("<%")
      tags = line.scan(/<%(.*?)%>/).flatten
      setting =
        if tags.any? { |t| !t.start_with?("=", "#") } || line.gsub(/<%.*?%>/, "").include?("<%")
          "erb"
        elsif line.strip.start_with?("<%") && line.gsub(/<%.*?%>/, "").strip.empty?
          "erb"
        else
          WATCHED.find { |w| line.include?(w) }
        end
      notes << { file: relative(File.expand_path(yml), root), line: number, setting: setting } if setting
    end
    notes
  end
end

MigrunManifest.run(ARGV[0] || "db/migrun-manifest.json")
