module Foo
  # Appends the engine's migrations to the app's, the way engines that ship
  # migrations commonly do instead of copying them with foo:install:migrations.
  class Engine < ::Rails::Engine
    initializer :append_migrations do |app|
      unless app.root.to_s == root.to_s
        config.paths["db/migrate"].expanded.each do |path|
          app.config.paths["db/migrate"] << path
        end
      end
    end
  end
end
