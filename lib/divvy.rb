# frozen_string_literal: true

require 'rbconfig'
require 'divvy/version'
require 'divvy/errors'

# Load the native core that belongs to this copy of divvy, by its path, so
# that RubyGems need not search every installed gem for it (nor find another
# divvy's): the build for this Ruby's version in divvy/X.Y/ (a precompiled
# gem carries one per version; `rake compile` writes one there), the build
# RubyGems made at install time (in divvy/, or in the gem's extension
# directory).
ruby_abi = RUBY_VERSION[/\A\d+\.\d+/]
root = File.expand_path('..', __dir__)
places = [File.join(__dir__, 'divvy', ruby_abi, 'divvy'), File.join(__dir__, 'divvy', 'divvy')]
installed = Gem.loaded_specs['divvy'] if defined?(Gem)
places << File.join(installed.extension_dir, 'divvy', 'divvy') if installed&.full_gem_path == root
library = places.find { |place| File.exist?("#{place}.#{RbConfig::CONFIG['DLEXT']}") }
unless library
  # One line, with no backtrace: a precompiled gem without a build for
  # this Ruby, or a checkout (or a Bundler `path:` source) whose extension
  # was never compiled.
  built = Dir.glob('*/divvy.*', base: File.join(__dir__, 'divvy')).map { |file| File.dirname(file) }.sort
  fix = if built.empty?
          "the native extension is not compiled: run `rake compile` in #{root}"
        else
          "this build has the native extension for Ruby #{built.join(', ')} only: " \
            'install the source gem instead (gem install divvy --platform ruby)'
        end
  raise LoadError, "divvy: Ruby #{ruby_abi}: #{fix}", []
end
require library

require 'divvy/processors'
require 'divvy/parallelizable'
require 'divvy/map'
require 'divvy/load'
require 'divvy/shard'

# A forking parallel task runner. See Divvy::Parallelizable for the task
# interface, Divvy::Master for running one, Divvy.load, Divvy.map and
# Divvy.each.
module Divvy; end
