# frozen_string_literal: true

require_relative 'lib/divvy/version'

Gem::Specification.new do |spec|
  spec.name = 'divvy'
  spec.version = Divvy::VERSION
  spec.summary = 'A forking parallel task runner for Ruby with a Rust core'
  spec.description = <<~TEXT
    divvy runs the work items of a Ruby task on a pool of forked worker
    processes: define #dispatch to yield items and #perform to handle one.
    Items travel as Marshal dumps over pipes, failures are reported, dead
    workers are replaced. No Redis, no queue server.
  TEXT
  spec.authors = ['divvy developers']
  spec.license = 'MIT'
  spec.homepage = 'https://rubygems.org/gems/divvy'
  spec.required_ruby_version = '>= 3.1'

  # What compiling needs, the signatures and the docs: no target/, specs or
  # build products.
  spec.files = Dir['Cargo.toml', 'Cargo.lock', 'ext/**/*.{rs,toml,rb}', 'lib/**/*.rb', 'exe/*',
                   'sig/**/*.rbs', 'README.md', 'LICENSE', 'CHANGELOG.md', 'docs/*.md']
  spec.bindir = 'exe'
  spec.executables = ['divvy']
  spec.require_paths = ['lib']
  spec.extensions = ['ext/divvy/extconf.rb']
  spec.metadata['rubygems_mfa_required'] = 'true'
end
