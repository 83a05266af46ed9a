# frozen_string_literal: true

require_relative 'lib/divvy/version'

# The source gem by default (compiled at install time with cargo); with
# DIVVY_NATIVE_RUBIES=3.1,3.3 (as `rake native` sets it), the precompiled
# x86_64-linux gem carrying lib/divvy/X.Y/divvy.so for each of those Ruby
# versions and no extension to compile.
native_rubies = ENV.fetch('DIVVY_NATIVE_RUBIES', '').split(',').sort_by { |version| Gem::Version.new(version) }
# The precompiled gem: from the oldest Ruby built for to just before the
# minor version after the newest (lib/divvy.rb says in one line when one in
# between, 3.2, has no build).
newest = Gem::Version.new(native_rubies.last || '0.0').segments
required_ruby = native_rubies.empty? ? '>= 3.1' : [">= #{native_rubies.first}", "< #{newest[0]}.#{newest[1] + 1}.dev"]

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
  spec.required_ruby_version = required_ruby

  # What running needs, the signatures and the docs; the source gem adds
  # what compiling needs. No target/, specs or build products.
  spec.files = Dir['lib/**/*.rb', 'exe/*', 'sig/**/*.rbs', 'README.md', 'LICENSE', 'CHANGELOG.md', 'docs/*.md']
  if native_rubies.empty?
    spec.files += Dir['Cargo.toml', 'Cargo.lock', 'ext/**/*.{rs,toml,rb}']
    spec.extensions = ['ext/divvy/extconf.rb']
  else
    spec.platform = 'x86_64-linux'
    spec.files += native_rubies.map { |version| "lib/divvy/#{version}/divvy.so" }
  end
  spec.bindir = 'exe'
  spec.executables = ['divvy']
  spec.require_paths = ['lib']
  spec.metadata['rubygems_mfa_required'] = 'true'
end
